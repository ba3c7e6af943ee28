"""The database side of hybrid retrieval for answers: manifests in, chunk rows out.

retrieval.hybrid never reads the database; this module gives it the collections' manifests, the query
embedder and chunk texts (for BM25 sidecars and the re-ranker), then turns its chunk ids into
app.search.SearchHit rows of ready documents only. All blocking work runs in threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from sqlmodel import select

from app.db import session_scope
from app.models import Chunk, Collection, DocStatus, Document, title_from_filename
from app.search import SearchHit, _embedder
from app.settings import settings

log = logging.getLogger(__name__)
DEFAULT_DEADLINE_MS = 300.0  # the stage budgets of retrieval.hybrid.Budget() are sized for this


def budget():
    """The configured deadline, with retrieval.hybrid's per-stage budgets scaled in proportion."""
    from retrieval.hybrid import Budget

    base, f = Budget(), settings.retrieval_deadline_ms / DEFAULT_DEADLINE_MS
    return Budget(
        deadline_ms=float(settings.retrieval_deadline_ms),
        embed_ms=base.embed_ms * f,
        dense_ms=base.dense_ms * f,
        bm25_ms=base.bm25_ms * f,
        rerank_ms=base.rerank_ms * f,
    )


def _texts_for_ids(ids: Sequence[int]) -> list[str]:
    from ingest.pipeline import lexical_texts

    return lexical_texts(ids)


_warned_spaces: set[tuple[int, str]] = set()


def _sources(collection_ids: list[int], space: dict | None = None):
    """The collections' index directories and manifests; with ``space`` (the query embedder's
    ``Embedder.space``) a collection whose vectors are of another embedding space is searched by BM25 alone
    (``Source.dense`` False; ``ingest.pipeline.embedding_conflict``), with a warning in the log once per
    process and collection, rather than by vectors the query's cannot be compared with."""
    from ingest.pipeline import collection_dir, embedding_conflict, load_manifest
    from retrieval.hybrid import Source

    out = []
    with session_scope() as s:
        for cid in collection_ids:
            conflict = embedding_conflict(s, cid, space) if space is not None else None
            if conflict and (cid, space["id"]) not in _warned_spaces:
                _warned_spaces.add((cid, space["id"]))
                log.warning("searching by words alone: %s", conflict)
            out.append(Source(collection_dir(cid), load_manifest(s, cid), dense=conflict is None))
    return out


def _rows(ranked: list[tuple[int, float]], collection_ids: list[int]) -> list[SearchHit]:
    scores = dict(ranked)
    with session_scope() as s:
        rows = s.exec(
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
            document_title=d.title or title_from_filename(d.filename),
            filename=d.filename,
            page=c.page,
            page_kind=c.page_kind,
            heading_path=list(c.heading_path or []),
            char_start=c.char_start,
            char_end=c.char_end,
            text=c.text,
        )
        for c, d in rows
    ]
    order = {cid: i for i, (cid, _) in enumerate(ranked)}
    return sorted(hits, key=lambda h: order[h.chunk_id])


async def hybrid_hits(query: str, collection_ids: list[int], k: int):
    """(hits of ready documents in rank order, retrieval.hybrid.HybridResult)."""
    from retrieval.hybrid import hybrid_search
    from retrieval.rerank import get_reranker

    embedder = await asyncio.to_thread(_embedder)
    reranker = await asyncio.to_thread(get_reranker, settings.reranker_model or None)
    for attempt in range(2):
        sources = await asyncio.to_thread(_sources, collection_ids, embedder.space)
        try:
            res = await hybrid_search(
                query,
                sources,
                embed_query=embedder.embed_query,
                texts_for_ids=_texts_for_ids,
                k=2 * k,  # over-fetch: rows of documents being deleted or replaced are dropped
                budget=budget(),
                reranker=reranker,
                dense_trust=embedder.trust(query),
            )
            break
        except FileNotFoundError:
            # Compaction removed a segment between our manifest read and the load: read the new one.
            if attempt:
                raise
    hits = await asyncio.to_thread(_rows, [(h.chunk_id, h.score) for h in res.hits], collection_ids)
    return hits[:k], res


def term_idf(terms: Iterable[str], document_ids: Iterable[int]) -> dict[str, float]:
    """The IDF of each term (``retrieval.lexical.idf``) over the chunks of the collections that hold these
    documents, from their BM25 sidecars (those retrieval just used: loaded already); {} while one is still to
    be built (a search that gave up on it goes on building it: not waited for). Blocking."""
    from retrieval.lexical import get_lexical_cache, idf

    terms, document_ids = set(terms), set(document_ids)
    if not terms or not document_ids:
        return {}
    with session_scope() as s:
        cids = sorted(set(s.exec(select(Document.collection_id).where(Document.id.in_(document_ids))).all()))
    sources = [(src.collection_dir, src.manifest) for src in _sources(cids) if src.manifest.segments]
    df, n = get_lexical_cache().doc_freqs(sources, terms, _texts_for_ids, build=False)
    return {t: float(idf(d, n)) for t, d in df.items()} if n else {}


def warm() -> None:
    """Server start-up, in a background thread: load the BM25 analyzer and build (or load) the BM25
    sidecars of every collection, so first queries do not spend their deadline on it."""
    from ingest.pipeline import collection_dir, load_manifest
    from retrieval import lexical
    from retrieval.hybrid import Source

    try:
        lexical.preload()
        with session_scope() as s:
            sources = [
                Source(collection_dir(c), load_manifest(s, c)) for c in s.exec(select(Collection.id)).all()
            ]
        for src in sources:
            lexical.warm(src.collection_dir, src.manifest, _texts_for_ids)
    except Exception:  # best effort: a query builds what is missing
        log.warning("retrieval warm-up stopped early", exc_info=True)
