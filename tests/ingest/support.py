"""What the ingestion tests that run the pipeline in-process share: a collection, a document added to it as an
upload adds one, and the collection's committed manifest."""

from __future__ import annotations

from app.db import session_scope
from app.models import Collection
from app.uploads import add_document
from ingest import pipeline
from retrieval.index import Manifest


def new_collection(name: str = "kb") -> int:
    with session_scope() as s:
        c = Collection(name=name)
        s.add(c)
        s.commit()
        return c.id


def add_file(cid: int, name: str, data: bytes) -> int:
    """A new (not duplicate) document of the collection, queued as an upload leaves it; returns its id."""
    with session_scope() as s:
        doc, new = add_document(s, cid, name, data, None)
        assert new
        s.commit()
        return doc.id


def manifest(cid: int) -> Manifest:
    with session_scope() as s:
        return pipeline.load_manifest(s, cid)
