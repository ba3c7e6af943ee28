"""Accepting uploaded files: name and size checks, type by content, blob store, dedupe and replacement.

The caller commits, then enqueues the new documents (never before the commit).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlmodel import Session, select

from app.models import DocStatus, Document, utcnow
from app.settings import settings
from ingest import storage


@dataclass
class Rejected(Exception):
    """A file refused before it became a document (HTTP status + a sentence a person can read)."""

    filename: str
    status_code: int
    detail: str


def clean_filename(name: str | None) -> str:
    """The name as given, if it is a plain file name; path parts or control characters are refused."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    bad = not name or name in (".", "..") or any(c in name for c in "/\\\x00") or len(name) > 255
    if bad or any(unicodedata.category(c) == "Cc" for c in name):
        raise Rejected(name or "(unnamed)", 400, "Invalid file name")
    return name


def too_large_detail() -> str:
    return f"File too large: the upload limit is {settings.max_upload_bytes} bytes"


def add_document(
    session: Session, collection_id: int, filename: str | None, data: bytes, user_id: int | None
) -> tuple[Document, bool]:
    """Store the file and return (document, needs_processing). Same content in the collection is stored once;
    a different content under an existing name becomes a new document that replaces the old one once ready."""
    from ingest.parsers import ParseError, UnsupportedFileType, detect_type

    name = clean_filename(filename)
    if len(data) > settings.max_upload_bytes:
        raise Rejected(name, 413, too_large_detail())
    if not data:
        raise Rejected(name, 422, "The file is empty.")
    try:
        detected = detect_type(data, name)
    except UnsupportedFileType as e:
        raise Rejected(name, 415, f"Unsupported file type: {e.reason}") from e
    except ParseError as e:
        raise Rejected(name, 422, e.reason) from e

    sha = storage.put_blob(data)
    same = session.exec(
        select(Document)
        .where(Document.collection_id == collection_id, Document.sha256 == sha)
        .order_by(Document.id.desc())
    ).first()
    if same is not None and same.status != DocStatus.deleting:
        if same.status != DocStatus.failed:
            return same, False
        # Same bytes failed before: try again (the failure may have been transient).
        same.status, same.stage, same.error, same.attempts = DocStatus.queued, "queued", None, 0
        same.progress, same.updated_at = 0.0, utcnow()
        session.add(same)
        return same, True

    previous = session.exec(
        select(Document)
        .where(
            Document.collection_id == collection_id,
            Document.filename == name,
            Document.status != DocStatus.deleting,
        )
        .order_by(Document.id.desc())
    ).first()
    doc = Document(
        collection_id=collection_id,
        filename=name,
        sha256=sha,
        size_bytes=len(data),
        detected_type=detected,
        uploaded_by=user_id,
        replaces_id=previous.id if previous is not None else None,
    )
    session.add(doc)
    session.flush()
    return doc, True
