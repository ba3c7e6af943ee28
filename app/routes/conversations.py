"""A user's conversations and feedback on answers: /api/conversations, /api/messages/{id}/feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field
from sqlmodel import select

from app import auth
from app.deps import CurrentUser, Id, SessionDep
from app.models import Chunk, Conversation, Document, Feedback, Message

router = APIRouter(prefix="/api", tags=["conversations"])
# In place of an answer drawn from documents the caller may no longer read (their group lost the collection)
WITHHELD = "This answer is hidden: it came from documents you can no longer read."


class ConversationSummary(BaseModel):
    """A row of the history list."""

    id: int
    title: str
    updated_at: datetime


class FeedbackBody(BaseModel):
    """POST /api/messages/{id}/feedback body."""

    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=4000)


class MessagePublic(BaseModel):
    """One turn; answers carry their sources, answer metadata and the caller's feedback."""

    id: int
    role: str
    content: str
    sources: list[dict] | None = None
    meta: dict | None = None
    feedback: FeedbackBody | None = None


class ConversationPublic(BaseModel):
    """A conversation with its turns, oldest first."""

    id: int
    title: str
    messages: list[MessagePublic]


def _own(session, user, conversation_id: int) -> Conversation:
    conv = session.get(Conversation, conversation_id)
    if conv is None or conv.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Conversation not found")
    return conv


@router.get("/conversations", response_model=list[ConversationSummary])
def list_conversations(session: SessionDep, user: CurrentUser) -> list[Conversation]:
    """The caller's conversations, most recent first."""
    return session.exec(
        select(Conversation)
        .where(Conversation.user_id == user.id)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    ).all()


@router.get("/conversations/{conversation_id}", response_model=ConversationPublic)
def get_conversation(conversation_id: Id, session: SessionDep, user: CurrentUser) -> ConversationPublic:
    """A conversation of the caller with every message."""
    conv = _own(session, user, conversation_id)
    rows = session.exec(
        select(Message, Feedback)
        .join(Feedback, Feedback.message_id == Message.id, isouter=True)
        .where(Message.conversation_id == conv.id)
        .order_by(Message.id)
    ).all()
    # Stored sources are shown only while the caller may still read their documents.
    current = current_sources(session, [m for m, _ in rows])
    visible, withheld = visible_documents(session, user, [m for m, _ in rows], current)
    messages = [
        MessagePublic(
            id=m.id,
            role=m.role,
            content=WITHHELD if m.id in withheld else m.content,
            sources=[src for src in current[m.id] if src["document_id"] in visible]
            if m.sources is not None
            else None,
            meta=m.meta,
            feedback=FeedbackBody(rating=f.rating, comment=f.comment) if f is not None else None,
        )
        for m, f in rows
    ]
    return ConversationPublic(id=conv.id, title=conv.title, messages=messages)


def current_sources(session, messages: list[Message]) -> dict[int, list[dict]]:
    """Each message's stored sources, those of a re-indexed document moved to its new copy: a source whose
    document was replaced (``Document.replaces_id``, followed to the newest copy) by one holding a passage with
    the same text at the same place now names that passage, so an earlier answer's [n] still opens it after a
    Re-index; a passage the new version changed stays with the old document (gone: not shown)."""
    out = {m.id: [dict(src) for src in m.sources or []] for m in messages}
    gone = {src["document_id"] for srcs in out.values() for src in srcs}
    gone -= set(session.exec(select(Document.id).where(Document.id.in_(gone))).all()) if gone else set()
    newest = {d: d for d in gone}
    frontier = set(gone)
    for _ in range(16):  # re-indexed again and again; bounded
        if not frontier:
            break
        found = select(Document.replaces_id, Document.id).where(Document.replaces_id.in_(frontier))
        nxt = {old: new for old, new in session.exec(found).all()}
        for old, new in newest.items():
            if new in nxt:
                newest[old] = nxt[new]
        frontier = set(nxt.values())
    moved = {old: new for old, new in newest.items() if new != old}
    if not moved:
        return out
    wanted = [src for srcs in out.values() for src in srcs if src["document_id"] in moved]
    places = {(moved[src["document_id"]], src.get("char_start"), src.get("char_end")) for src in wanted}
    rows = session.exec(
        select(Chunk.id, Chunk.document_id, Chunk.char_start, Chunk.char_end, Chunk.text).where(
            Chunk.document_id.in_({d for d, _, _ in places}), Chunk.char_start.in_({a for _, a, _ in places})
        )
    ).all()
    chunks = {(d, a, b): (cid, text) for cid, d, a, b, text in rows if (d, a, b) in places}
    for src in wanted:
        got = chunks.get((moved[src["document_id"]], src.get("char_start"), src.get("char_end")))
        if got is not None and got[1] == src.get("text"):
            src["chunk_id"], src["document_id"] = got[0], moved[src["document_id"]]
    return out


def visible_documents(
    session, user, messages: list[Message], sources: dict[int, list[dict]] | None = None
) -> tuple[set[int], set[int]]:
    """(ids of the stored sources' documents the user may read, ids of the answers to withhold: those with a
    source whose document still exists in a collection the user may no longer read). A document deleted or
    replaced since takes nothing away: the answer was read while it was readable. ``sources``: the messages'
    sources to judge instead of the stored ones (``current_sources``)."""
    sources = sources if sources is not None else {m.id: m.sources or [] for m in messages}
    doc_ids = {src["document_id"] for m in messages for src in sources[m.id]}
    if not doc_ids:
        return set(), set()
    readable = auth.readable_collection_ids(session, user)
    existing = dict(
        session.exec(select(Document.id, Document.collection_id).where(Document.id.in_(doc_ids))).all()
    )
    visible = {d for d, c in existing.items() if c in readable}
    hidden = set(existing) - visible
    withheld = {m.id for m in messages if any(src["document_id"] in hidden for src in sources[m.id])}
    return visible, withheld


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_conversation(conversation_id: Id, session: SessionDep, user: CurrentUser) -> Response:
    """Delete one of the caller's conversations."""
    session.delete(_own(session, user, conversation_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/messages/{message_id}/feedback")
def feedback(message_id: Id, body: FeedbackBody, session: SessionDep, user: CurrentUser) -> dict:
    """Thumbs up or down (with an optional comment) on an answer of the caller's; replaces earlier feedback."""
    msg = session.get(Message, message_id)
    conv = session.get(Conversation, msg.conversation_id) if msg is not None else None
    if msg is None or msg.role != "assistant" or conv is None or conv.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Message not found")
    row = session.get(Feedback, message_id) or Feedback(
        message_id=message_id, user_id=user.id, rating=body.rating
    )
    row.rating, row.comment = body.rating, body.comment
    session.add(row)
    session.commit()
    return {"message_id": message_id, "rating": row.rating, "comment": row.comment}
