"""Retrieval behind one function, so hybrid search (BM25 + fusion + rerank) can replace it in one place."""

from __future__ import annotations

import logging

from pydantic import BaseModel
from sqlmodel import Session, select

from app.models import Chunk, DocStatus, Document
from app.settings import settings
from ingest.pipeline import collection_dir, load_manifest

log = logging.getLogger(__name__)


class SearchHit(BaseModel):
    """One passage, with what a citation needs."""

    chunk_id: int
    score: float
    document_id: int
    collection_id: int
    document_title: str
    filename: str
    page: int | None
    heading_path: list[str]
    char_start: int
    char_end: int
    text: str


def _embedder():
    from retrieval.embeddings import get_embedder

    return get_embedder(settings.embedding_model or None, cache_path=settings.embed_cache_path)


def search(session: Session, query: str, collection_ids: list[int], k: int) -> list[SearchHit]:
    """Top-k passages of ready documents in the given collections (the caller checked the user may read them)."""
    if not collection_ids:
        return []
    q = _embedder().embed_query(query)  # (dim,)
    from retrieval.index import get_index_cache

    cache = get_index_cache()
    scored: list[tuple[int, float]] = []
    for cid in collection_ids:
        for attempt in range(2):
            manifest = load_manifest(session, cid)
            if not manifest.segments:
                break
            try:
                # Over-fetch: rows of documents being deleted or replaced are dropped below.
                scored += cache.search(collection_dir(cid), manifest, q, 2 * k)
                break
            except FileNotFoundError:
                # Compaction removed a segment between our manifest read and the load: read the new one.
                session.expire_all()
                if attempt:
                    raise
    scored.sort(key=lambda t: -t[1])
    scores = dict(scored)
    if not scores:
        return []
    rows = session.exec(
        select(Chunk, Document)
        .join(Document, Chunk.document_id == Document.id)
        .where(
            Chunk.id.in_(list(scores)),
            Document.status == DocStatus.ready,
            Document.collection_id.in_(collection_ids),
        )
    ).all()
    hits = [
        SearchHit(
            chunk_id=c.id,
            score=scores[c.id],
            document_id=d.id,
            collection_id=d.collection_id,
            document_title=d.title or d.filename,
            filename=d.filename,
            page=c.page,
            heading_path=list(c.heading_path or []),
            char_start=c.char_start,
            char_end=c.char_end,
            text=c.text,
        )
        for c, d in rows
    ]
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits[:k]
