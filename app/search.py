"""Retrieval behind one function, so hybrid search (BM25 + fusion + rerank) can replace it in one place."""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel
from sqlmodel import Session

from app.settings import settings

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
    # what page counts: "page", "slide"; None for one stored before the kind was kept (a page)
    page_kind: str | None = None


def _embedder():
    from retrieval.embeddings import get_embedder

    return get_embedder(
        settings.embedding_model or None,
        cache_path=settings.embed_cache_path,
        device=settings.embed_device,
    )


def search_with_meta(query: str, collection_ids: list[int], k: int):
    """(hits, retrieval.hybrid.HybridResult): hybrid search (dense + BM25, RRF, rerank when configured)
    under the configured deadline; `degraded`, `timed_out` and `timings_ms` say how it went."""
    from app.retrieve import hybrid_hits

    if not collection_ids:
        return [], None
    # NOTE: routes calling this are sync (FastAPI runs them in a worker thread), so no loop runs here.
    return asyncio.run(hybrid_hits(query, collection_ids, k))


def search(session: Session, query: str, collection_ids: list[int], k: int) -> list[SearchHit]:
    """Top-k passages of ready documents in the given collections (the caller checked the user may read them)."""
    return search_with_meta(query, collection_ids, k)[0]
