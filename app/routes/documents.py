"""Single documents: /api/documents/{id}."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from app import auth
from app.deps import AdminUser, CurrentUser, Id, SessionDep
from app.models import Document, DocumentPublic, DocumentText

router = APIRouter(prefix="/api/documents", tags=["documents"])


@router.get("/{document_id}", response_model=DocumentPublic)
def get_document(document_id: Id, session: SessionDep, user: CurrentUser) -> Document:
    """A document's status, progress and error reason."""
    doc = session.get(Document, document_id)
    if doc is None or doc.collection_id not in auth.readable_collection_ids(session, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Document not found")
    return doc


@router.get("/{document_id}/text")
def get_document_text(document_id: Id, session: SessionDep, user: CurrentUser) -> dict[str, str | int]:
    """The extracted text that chunk offsets (char_start, char_end) point into, for source previews."""
    doc = get_document(document_id, session, user)
    row = session.get(DocumentText, document_id)
    if row is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "Document is not ready")
    return {"document_id": doc.id, "text": row.text}


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_document(document_id: Id, session: SessionDep, _: AdminUser) -> Response:
    """Delete a document: it leaves search results at once; compaction reclaims the space later."""
    from ingest.pipeline import delete_document as delete

    session.close()  # the pipeline opens its own sessions and takes the collection lock
    if not delete(document_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Document not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
