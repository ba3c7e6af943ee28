"""Admin management beyond creation: API keys, user listing and deletion, group members, collection deletion and
document re-indexing and cancelling (/api/keys, /api/users, /api/groups/{id}/members, /api/collections/{id},
/api/documents/{id}/reindex, /api/documents/{id}/cancel)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlmodel import delete, select, update

from app import auth
from app.db import session_scope
from app.deps import AdminUser, Id, SessionDep
from app.models import (
    ApiKey,
    Collection,
    DocStatus,
    Document,
    DocumentPublic,
    Group,
    GroupMembership,
    User,
    utcnow,
)

router = APIRouter(prefix="/api", tags=["manage"])


class KeyCreate(BaseModel):
    """POST /api/keys body."""

    name: str = Field(min_length=1, max_length=200)


class KeyPublic(BaseModel):
    """A key as listed: never the key itself, only its first characters."""

    id: int
    name: str
    prefix: str
    created_at: datetime


class KeyCreated(BaseModel):
    """The new key, shown once."""

    id: int
    name: str
    key: str
    created_at: datetime


class UserRow(BaseModel):
    """A user as listed for admins."""

    id: int
    name: str
    role: str
    group_ids: list[int]
    has_password: bool


class MemberIds(BaseModel):
    """PUT /api/groups/{id}/members body."""

    user_ids: list[Id]


@router.get("/keys", response_model=list[KeyPublic])
def list_keys(session: SessionDep, user: AdminUser) -> list[ApiKey]:
    """The caller's API keys."""
    return session.exec(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)).all()


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_key(body: KeyCreate, session: SessionDep, user: AdminUser) -> KeyCreated:
    """A new API key for the caller; the key is in this response only."""
    key = auth.issue_key(session, user)
    session.flush()
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == auth.hash_key(key))).one()
    row.name = body.name
    session.add(row)
    session.commit()
    return KeyCreated(id=row.id, name=row.name, key=key, created_at=row.created_at)


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: Id, session: SessionDep, user: AdminUser) -> Response:
    """Revoke one of the caller's keys (effective at once)."""
    row = session.get(ApiKey, key_id)
    if row is None or row.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Key not found")
    session.delete(row)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users", response_model=list[UserRow])
def list_users(session: SessionDep, _: AdminUser) -> list[UserRow]:
    """Every user with their groups."""
    members: dict[int, list[int]] = {}
    for m in session.exec(select(GroupMembership).order_by(GroupMembership.group_id)):
        members.setdefault(m.user_id, []).append(m.group_id)
    return [
        UserRow(
            id=u.id,
            name=u.name,
            role=u.role,
            group_ids=members.get(u.id, []),
            has_password=bool(u.password_hash),
        )
        for u in session.exec(select(User).order_by(User.id))
    ]


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(user_id: Id, session: SessionDep, admin: AdminUser) -> Response:
    """Delete a user (someone who left): their API keys and browser sessions stop working at once, their
    group memberships and conversations go; documents they uploaded stay. Not oneself (409)."""
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")
    if user.id == admin.id:  # an admin deleting themselves could leave nobody to administer
        raise HTTPException(status.HTTP_409_CONFLICT, "You cannot delete yourself")
    # Keys, sessions, memberships, conversations and feedback go with it (ON DELETE CASCADE); uploads stay
    # (uploaded_by SET NULL).
    session.exec(delete(User).where(User.id == user_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/groups/{group_id}/members", response_model=MemberIds)
def set_members(group_id: Id, body: MemberIds, session: SessionDep, _: AdminUser) -> MemberIds:
    """Replace a group's members."""
    if session.get(Group, group_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Group not found")
    ids = sorted(set(body.user_ids))
    for uid in ids:
        if session.get(User, uid) is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"User {uid} not found")
    session.exec(delete(GroupMembership).where(GroupMembership.group_id == group_id))
    session.add_all(GroupMembership(user_id=uid, group_id=group_id) for uid in ids)
    session.commit()
    return MemberIds(user_ids=ids)


def _delete_collection(collection_id: int) -> bool:
    from ingest.locks import collection_lock
    from ingest.pipeline import _gc_blob, delete_collection_index

    with session_scope() as s:
        if s.get(Collection, collection_id) is None:
            return False
    with collection_lock(collection_id), session_scope() as s:
        shas = set(s.exec(select(Document.sha256).where(Document.collection_id == collection_id)).all())
        # Documents, chunks, texts, manifest and access rows go with it (ON DELETE CASCADE).
        s.exec(delete(Collection).where(Collection.id == collection_id))
        s.commit()
        delete_collection_index(collection_id)
    for sha in shas:
        _gc_blob(sha)
    return True


@router.delete("/collections/{collection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(collection_id: Id, _: AdminUser) -> Response:
    """Delete a collection with its documents and index."""
    if not await run_in_threadpool(_delete_collection, collection_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Collection not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/documents/{document_id}/reindex", status_code=status.HTTP_202_ACCEPTED, response_model=DocumentPublic
)
def reindex_document(document_id: Id, session: SessionDep, user: AdminUser) -> Document:
    """Process a document again. A failed or cancelled one is retried in place; a ready one is re-ingested as a new
    document that replaces it once ready (it stays searchable meanwhile). Returns the queued document."""
    from ingest.tasks import enqueue_document

    doc = session.get(Document, document_id)
    if doc is None or doc.status == DocStatus.deleting:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Document not found")
    if doc.status in (DocStatus.queued, DocStatus.processing):
        raise HTTPException(status.HTTP_409_CONFLICT, "Document is already being processed")
    if doc.status in (DocStatus.failed, DocStatus.cancelled):
        target = doc
        target.status, target.stage, target.progress, target.error = DocStatus.queued, "queued", 0.0, None
        target.retryable = None
        target.attempts, target.chunks_embedded, target.updated_at = 0, 0, utcnow()
    else:
        # NOTE: a second copy would become ready beside the first (the old one is gone by then): listed twice
        pending = session.exec(
            select(Document.id).where(
                Document.replaces_id == doc.id,
                Document.status.in_([DocStatus.queued, DocStatus.processing]),
            )
        ).first()
        if pending is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, "Document is already being re-indexed")
        fields = doc.model_dump(
            include={"filename", "title", "sha256", "size_bytes", "detected_type", "pages"}
        )
        target = Document(**fields, collection_id=doc.collection_id, replaces_id=doc.id, uploaded_by=user.id)
    session.add(target)
    session.commit()
    enqueue_document(target.id)  # after the commit: the worker must find the row
    return target


@router.post("/documents/{document_id}/cancel", response_model=DocumentPublic)
def cancel_document(document_id: Id, session: SessionDep, user: AdminUser) -> Document:
    """Stop a queued or processing document: it becomes cancelled at once and nothing of it reaches the
    index; a worker on it stops at its next check (between stages and embedding batches). Re-index restarts it.
    NOTE: its broker message is not revoked: the worker that receives it finds it cancelled and returns."""
    doc = session.get(Document, document_id)
    if doc is None or doc.status == DocStatus.deleting:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Document not found")
    # Conditional on the status, so a document that just became ready (the worker holds its row while it
    # commits) is not reported cancelled.
    cancelled = session.exec(
        update(Document)
        .where(Document.id == document_id, Document.status.in_([DocStatus.queued, DocStatus.processing]))
        .values(
            status=DocStatus.cancelled,
            stage="cancelled",
            error=f"Cancelled by {user.name}.",
            updated_at=utcnow(),
        )
    ).rowcount
    session.commit()
    if not cancelled:
        raise HTTPException(status.HTTP_409_CONFLICT, "Document is not being processed")
    session.refresh(doc)
    return doc
