"""POST /api/ask (JSON or server-sent events) and GET /api/chunks/{id}/preview."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlmodel import select

from app import answer as ans
from app import auth
from app.backpressure import retry_after_s
from app.db import session_scope
from app.deps import CurrentUser, Id, Query, SessionDep, refuse_empty_collections
from app.models import (
    Chunk,
    Conversation,
    DocStatus,
    Document,
    DocumentText,
    Message,
    User,
    title_from_filename,
    utcnow,
)
from app.routes.conversations import visible_documents
from app.security import count_question
from inference import EngineOverloaded

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["ask"])
PREVIEW_CONTEXT_CHARS = 600  # document text shown either side of a chunk
BUSY = "The answer engine is busy; please retry shortly"


class AskRequest(BaseModel):
    """Omitted collection_ids = every collection the caller may read; an empty list is a 422."""

    question: Query
    collection_ids: list[int] | None = None
    conversation_id: Id | None = None
    stream: bool = False


class Preview(BaseModel):
    """A window of the document text around a chunk; the highlight offsets are inside `text`."""

    chunk_id: int
    document_id: int
    title: str
    page: int | None
    heading_path: list[str]
    text: str
    highlight_start: int
    highlight_end: int
    # what page counts: "page", "slide"; None for one stored before the kind was kept (a page)
    page_kind: str | None = None


def _check_collections(user: User, requested: list[int] | None) -> list[int]:
    with session_scope() as s:
        readable = auth.readable_collection_ids(s, user)
    if requested is None:
        return sorted(readable)
    ids = sorted(set(requested))
    if any(i not in readable for i in ids):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Collection not found")  # as for one that is absent
    return ids


def _open_turn(user: User, question: str, conversation_id: int | None) -> tuple[int, int, list[dict]]:
    """Store the question and an empty answer row; returns (conversation id, answer message id, history)."""
    with session_scope() as s:
        if conversation_id is None:
            conv = Conversation(user_id=user.id, title=question.strip().splitlines()[0][:200])
            s.add(conv)
            s.flush()
            history = []
        else:
            conv = s.get(Conversation, conversation_id)
            if conv is None or conv.user_id != user.id:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "Conversation not found")
            rows = s.exec(
                select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)
            ).all()
            # an earlier answer from documents the user may no longer read is not carried on
            _, withheld = visible_documents(s, user, rows)
            # nor a reasoning checkpoint's note that it stopped before answering (not the model's words)
            history = [
                {"role": m.role, "content": m.content}
                for m in rows
                if m.content and m.id not in withheld and not (m.meta or {}).get("reasoning_unfinished")
            ]
        s.add(Message(conversation_id=conv.id, role="user", content=question))
        # Marked incomplete until _close_turn stores the answer: a stream cut off (client gone, server
        # killed or restarted) leaves an empty turn that says so, and later prompts skip it.
        msg = Message(conversation_id=conv.id, role="assistant", content="", meta={"incomplete": True})
        s.add(msg)
        conv.updated_at = utcnow()
        s.add(conv)
        s.commit()
        return conv.id, msg.id, history


def _close_turn(message_id: int, text: str, sources: list[ans.Source], meta: dict) -> None:
    with session_scope() as s:
        msg = s.get(Message, message_id)
        if msg is None:  # the conversation was deleted meanwhile
            return
        msg.content = text
        msg.sources = [src.public() for src in sources]
        msg.meta = meta
        s.add(msg)
        s.commit()


async def run_ask(body: AskRequest, user: User) -> AsyncIterator[tuple[str, dict]]:
    """Events (name, data): sources, token..., done; the turn is stored as it finishes."""
    t0 = time.perf_counter()
    ids = await run_in_threadpool(_check_collections, user, body.collection_ids)
    conv_id, msg_id, history = await run_in_threadpool(_open_turn, user, body.question, body.conversation_id)
    query = ans.standalone_query(body.question, history)
    got = await ans.retrieve(query, ids)
    try:
        sources, messages = ans.prepare(body.question, history, got.sources)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The question is too long for the model") from None
    yield (
        "sources",
        {"conversation_id": conv_id, "message_id": msg_id, "sources": [s.public() for s in sources]},
    )
    result: ans.Result | None = None
    async for piece in ans.answer(body.question, messages, sources, query):
        if isinstance(piece, ans.Result):
            result = piece
        elif isinstance(piece, ans.Thought):  # a reasoning checkpoint thinking: the page shows it is working
            yield "reasoning", {"text": piece}
        else:
            yield "token", {"text": piece}
    assert result is not None, "answer() ends with a Result"
    if not result.reasoning_done:  # no answer, only a half thought: say so instead
        result.answer = ans.REASONING_CUT if result.finish_reason == "length" else ans.REASONING_STOPPED
        yield "token", {"text": result.answer}
    done = {
        "conversation_id": conv_id,
        "message_id": msg_id,
        "cited": result.cited,
        "extractive": result.extractive,
        "generator": result.generator,
        "degraded": got.degraded,
        "timed_out": got.timed_out,
        "usage": result.usage,
        "timings": {
            "retrieval_ms": {k: round(v, 3) for k, v in got.retrieval_ms.items()},
            "ttft_ms": result.ttft_ms,
            "tokens_per_s": result.tokens_per_s,
            "total_ms": round((time.perf_counter() - t0) * 1000, 3),
        },
    }
    meta = {
        k: done[k] for k in ("cited", "extractive", "generator", "degraded", "timed_out", "usage", "timings")
    }
    if result.reasoning is not None:  # a reasoning checkpoint's thinking: kept apart from the answer
        done["reasoning"] = meta["reasoning"] = result.reasoning
        if not result.reasoning_done:
            done["reasoning_unfinished"] = meta["reasoning_unfinished"] = True
    await run_in_threadpool(_close_turn, msg_id, result.answer, sources, meta)
    # Sources carry their final `cited`/`highlight` flags here, for the non-stream body.
    done["_sources"] = [s.public() for s in sources]
    done["_answer"] = result.answer
    yield "done", done


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _sse_stream(events: AsyncIterator[tuple[str, dict]]) -> AsyncIterator[bytes]:
    try:
        async for name, data in events:
            if name == "done":
                # The final sources: `cited` and the extractive `highlight` offsets are known only now.
                data = {k: v for k, v in data.items() if not k.startswith("_")} | {
                    "sources": data["_sources"]
                }
            yield sse(name, data)
    except HTTPException as e:
        yield sse("error", {"detail": e.detail})
    except EngineOverloaded:
        yield sse("error", {"detail": BUSY, "retry_after": retry_after_s("ask")})
    except Exception:
        log.exception("ask failed")
        yield sse("error", {"detail": "The answer failed; please try again"})


@router.post("/ask")
async def ask(body: AskRequest, request: Request, user: CurrentUser):
    """Answer a question from the readable collections, with cited sources (JSON or SSE)."""
    refuse_empty_collections(body.collection_ids)
    count_question(request, user)  # only now: a body refused as malformed (422) asked nothing
    events = run_ask(body, user)
    if body.stream:
        # Fail before the stream starts for the caller's mistakes (unknown collection or conversation).
        first = await anext(events)
        rest = _prepend(first, events)
        return StreamingResponse(
            _sse_stream(rest),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    out: dict = {}
    try:
        async for name, data in events:
            if name == "sources":
                out.update(data)
            elif name == "done":
                sources, answer_text = data.pop("_sources"), data.pop("_answer")
                out.update(answer=answer_text, sources=sources, **data)
    except EngineOverloaded:
        retry = {"Retry-After": str(retry_after_s("ask"))}
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, BUSY, headers=retry) from None
    return out


async def _prepend(first, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item


@router.get("/chunks/{chunk_id}/preview", response_model=Preview)
def chunk_preview(chunk_id: Id, session: SessionDep, user: CurrentUser) -> Preview:
    """The document text around a chunk, for opening a citation (404 for chunks the caller may not read)."""
    row = session.exec(
        select(Chunk, Document).join(Document, Chunk.document_id == Document.id).where(Chunk.id == chunk_id)
    ).first()
    if row is None or row[1].collection_id not in auth.readable_collection_ids(session, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Chunk not found")
    chunk, doc = row
    if doc.status == DocStatus.deleting:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Chunk not found")
    full = session.get(DocumentText, doc.id)
    if full is None or full.text[chunk.char_start : chunk.char_end].strip() != chunk.text.strip():
        # No stored text (or offsets from another version): the chunk alone.
        text, start, end = chunk.text, 0, len(chunk.text)
    else:
        lo = max(0, chunk.char_start - PREVIEW_CONTEXT_CHARS)
        hi = min(len(full.text), chunk.char_end + PREVIEW_CONTEXT_CHARS)
        text, start, end = full.text[lo:hi], chunk.char_start - lo, chunk.char_end - lo
    return Preview(
        chunk_id=chunk.id,
        document_id=doc.id,
        title=doc.title or title_from_filename(doc.filename),
        page=chunk.page,
        page_kind=chunk.page_kind,
        heading_path=list(chunk.heading_path or []),
        text=text,
        highlight_start=start,
        highlight_end=end,
    )
