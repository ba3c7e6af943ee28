"""Collections and their documents: /api/collections."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile, status
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, select

from app import auth, uploads
from app.deps import MAX_ID, AdminUser, CurrentUser, Id, SessionDep
from app.models import (
    Collection,
    CollectionAccess,
    CollectionCreate,
    CollectionPublic,
    Document,
    DocumentPublic,
    Group,
)
from app.settings import settings

router = APIRouter(prefix="/api/collections", tags=["collections"])


class GroupIds(BaseModel):
    """PUT /api/collections/{id}/groups body."""

    group_ids: list[Id]


class UploadedDocument(DocumentPublic):
    """A document the upload created, or (duplicate) the existing one holding the same content."""

    duplicate: bool = False
    # The name the file was uploaded under: a duplicate's own `filename` is the existing document's.
    uploaded_filename: str


class RejectedFile(BaseModel):
    """A file refused before it became a document."""

    filename: str
    status_code: int
    detail: str


class UploadResult(BaseModel):
    """POST /api/collections/{id}/documents response."""

    documents: list[UploadedDocument]
    rejected: list[RejectedFile]


def _public(session: Session, c: Collection) -> CollectionPublic:
    count = session.exec(select(func.count(Document.id)).where(Document.collection_id == c.id)).one()
    groups = session.exec(
        select(CollectionAccess.group_id).where(CollectionAccess.collection_id == c.id)
    ).all()
    return CollectionPublic(**c.model_dump(), document_count=count, group_ids=sorted(groups))


def readable_collection(session: Session, user, collection_id: int) -> Collection:
    """The collection if the user may read it; otherwise 404, the same answer as for one that does not exist."""
    c = session.get(Collection, collection_id)
    if c is None or collection_id not in auth.readable_collection_ids(session, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Collection not found")
    return c


def _set_groups(session: Session, collection_id: int, group_ids: list[int]) -> None:
    for gid in set(group_ids):
        if not 1 <= gid <= MAX_ID or session.get(Group, gid) is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Group {gid} not found")
    for row in session.exec(select(CollectionAccess).where(CollectionAccess.collection_id == collection_id)):
        session.delete(row)
    session.flush()
    for gid in sorted(set(group_ids)):
        session.add(CollectionAccess(collection_id=collection_id, group_id=gid))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CollectionPublic)
def create_collection(body: CollectionCreate, session: SessionDep, _: AdminUser) -> CollectionPublic:
    """Create a collection readable by the given groups."""
    if session.exec(select(Collection).where(Collection.name == body.name)).first() is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "Collection name already exists")
    c = Collection(name=body.name, description=body.description)
    session.add(c)
    session.flush()
    _set_groups(session, c.id, body.group_ids)
    session.commit()
    return _public(session, c)


@router.get("", response_model=list[CollectionPublic])
def list_collections(session: SessionDep, user: CurrentUser) -> list[CollectionPublic]:
    """Collections the caller may read."""
    ids = auth.readable_collection_ids(session, user)
    rows = session.exec(select(Collection).where(Collection.id.in_(ids)).order_by(Collection.id)).all()
    return [_public(session, c) for c in rows]


@router.put("/{collection_id}/groups", response_model=CollectionPublic)
def set_collection_groups(
    collection_id: Id, body: GroupIds, session: SessionDep, _: AdminUser
) -> CollectionPublic:
    """Replace the groups that may read a collection."""
    c = session.get(Collection, collection_id)
    if c is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Collection not found")
    _set_groups(session, collection_id, body.group_ids)
    session.commit()
    return _public(session, c)


@router.get("/{collection_id}/documents", response_model=list[DocumentPublic])
def list_documents(collection_id: Id, session: SessionDep, user: CurrentUser) -> list[Document]:
    """Documents of a collection with their status and progress."""
    readable_collection(session, user, collection_id)
    return session.exec(
        select(Document).where(Document.collection_id == collection_id).order_by(Document.id)
    ).all()


@router.post("/{collection_id}/documents", status_code=status.HTTP_202_ACCEPTED, response_model=UploadResult)
def upload_documents(
    collection_id: Id, files: Annotated[list[UploadFile], File()], session: SessionDep, user: AdminUser
) -> UploadResult:
    """Upload one or more files; each is queued for ingestion (or refused with a reason)."""
    from ingest.tasks import enqueue_document

    if session.get(Collection, collection_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Collection not found")
    if len(files) > settings.upload_max_files:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, uploads.too_many_files_detail())
    accepted: list[UploadedDocument] = []
    rejected: list[RejectedFile] = []
    to_enqueue: list[int] = []
    for f in files:
        # Read one byte past the limit: enough to know it is too large without holding more.
        # NOTE: a sync route runs in the threadpool, so reading and storing files never blocks the event loop.
        data = f.file.read(settings.max_upload_bytes + 1)
        f.file.close()
        try:  # a plain ZIP archive stands for its files, read one at a time (uploads.unpack)
            items = (
                uploads.unpack(f.filename, data)
                if len(data) <= settings.max_upload_bytes
                else iter([(f.filename, data)])
            )
        except uploads.Rejected as r:
            rejected.append(RejectedFile(filename=r.filename, status_code=r.status_code, detail=r.detail))
            continue
        for item in items:
            try:
                if isinstance(item, uploads.Rejected):
                    raise item
                doc, new = uploads.add_document(session, collection_id, item[0], item[1], user.id)
            except uploads.Rejected as r:
                rejected.append(RejectedFile(filename=r.filename, status_code=r.status_code, detail=r.detail))
                continue
            if new:
                to_enqueue.append(doc.id)
            shown = uploads.clean_filename(item[0])  # as add_document stored it (it refused a bad one)
            accepted.append(UploadedDocument(**doc.model_dump(), duplicate=not new, uploaded_filename=shown))
    session.commit()
    for doc_id in to_enqueue:  # only after the commit: a worker must find the row
        enqueue_document(doc_id)
    if not accepted and rejected:
        first = rejected[0]
        raise HTTPException(first.status_code, first.detail)
    return UploadResult(documents=accepted, rejected=rejected)
