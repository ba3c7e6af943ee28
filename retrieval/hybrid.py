"""Hybrid search under a deadline: query embedding -> dense FAISS, BM25 in parallel, fusion, optional rerank.

    embed ──> dense ──┐
    bm25 ─────────────┴──> fuse (convex or RRF) ──> rerank (head of the fused list, when a reranker is set)

Every stage runs in a thread pool (FAISS, bm25s and torch release the GIL for their heavy parts), so an
asyncio caller never blocks. Each stage gets min(its own budget, what is left of the request deadline).
A stage that overruns is abandoned: we stop waiting, its thread finishes in the background and its result
is dropped, and the answer is built from the stages that finished, with ``degraded=True`` and the stage
named in ``timed_out``. Stages that could not start because an earlier one was abandoned (dense after
embed) are listed in ``skipped``. A bounded pool means a burst of slow stages makes later requests degrade
rather than pile up threads.

Errors other than a timeout (a missing segment after compaction, a bad query vector) propagate: the caller
decides whether to retry with a fresh manifest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.fusion import RRF_K, convex, rrf
from retrieval.index import IndexCache, Manifest, get_index_cache
from retrieval.lexical import LexicalCache, TextsForIds, get_lexical_cache
from retrieval.rerank import Reranker

logger = logging.getLogger(__name__)

STAGES = ("embed", "dense", "bm25", "rerank")
FUSIONS = ("convex", "rrf")
# NOTE: convex fusion with equal weights and the paper's score floors (no tuning). On our Python-docs
# benchmark RRF (k=60) lost to BM25 alone at recall@1: it only sees ranks, so a chunk BM25 is sure about
# lost to one both retrievers rank second. benchmarks/retrieval_quality.py reports both.
DEFAULT_FUSION = "convex"
DEFAULT_CONVEX_WEIGHTS = {"dense": 0.5, "bm25": 0.5}
_POOL_THREADS = 32
_POOL = ThreadPoolExecutor(max_workers=_POOL_THREADS, thread_name_prefix="retrieval")
# NOTE: an abandoned stage keeps its thread until it finishes, and the executor's own queue is unbounded;
# past this many queued or running stage jobs a new stage is refused (reported as timed out), so a burst
# of slow stages degrades answers instead of building an ever longer backlog.
MAX_PENDING_STAGES = 4 * _POOL_THREADS
_pending = threading.BoundedSemaphore(MAX_PENDING_STAGES)


@dataclass(frozen=True)
class Budget:
    """Request deadline and per-stage budgets, in milliseconds (embed -> dense runs beside bm25)."""

    deadline_ms: float = 300.0
    embed_ms: float = 120.0
    dense_ms: float = 80.0
    bm25_ms: float = 150.0
    rerank_ms: float = 150.0

    def __post_init__(self) -> None:
        for name in ("deadline_ms", "embed_ms", "dense_ms", "bm25_ms", "rerank_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def stage_ms(self, stage: str) -> float:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
        return getattr(self, f"{stage}_ms")


@dataclass
class Source:
    """One collection to search: its index directory and the manifest the caller read for it; ``dense`` False:
    its vectors are of another embedding space than the query's (the caller knows: the model changed since
    they were made), so only BM25 searches it."""

    collection_dir: Path
    manifest: Manifest
    dense: bool = True


@dataclass
class Hit:
    """A result in final order: fused score, 1-based rank per retriever (None = not retrieved by it)."""

    chunk_id: int
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None
    rerank_score: float | None = None


@dataclass
class HybridResult:
    hits: list[Hit]
    degraded: bool = False
    timed_out: list[str] = field(default_factory=list)  # stages abandoned at their budget
    skipped: list[str] = field(default_factory=list)  # stages not run because an input was abandoned
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage run, plus "total"
    reranked: bool = False


class _Run:
    """Deadline bookkeeping for one request."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.t0 = time.perf_counter()
        self.end = self.t0 + budget.deadline_ms / 1000
        self.timed_out: list[str] = []
        self.skipped: list[str] = []
        self.timings: dict[str, float] = {}

    async def stage(self, name: str, fn: Callable[[], object]) -> object | None:
        """fn() in the pool within the stage's budget; None when abandoned."""
        start = time.perf_counter()
        timeout = min(self.budget.stage_ms(name) / 1000, self.end - start)
        full = timeout > 0 and not _pending.acquire(blocking=False)
        if full:
            logger.warning("retrieval backlog full (%d jobs): stage %s skipped", MAX_PENDING_STAGES, name)
        if timeout <= 0 or full:
            self.timed_out.append(name)
            self.timings[name] = 0.0
            return None

        def job() -> object:
            try:
                return fn()
            finally:
                _pending.release()

        fut = asyncio.get_running_loop().run_in_executor(_POOL, job)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.timed_out.append(name)
            logger.info("retrieval stage %s abandoned after %.0f ms", name, timeout * 1000)
            return None
        finally:
            self.timings[name] = round((time.perf_counter() - start) * 1000, 2)


def _dense(cache: IndexCache, sources: Sequence[Source], q: np.ndarray, n: int) -> list[tuple[int, float]]:
    scored: dict[int, float] = {}
    for src in sources:
        if src.manifest.segments:
            for cid, s in cache.search(src.collection_dir, src.manifest, q, n):
                scored[cid] = max(s, scored.get(cid, -np.inf))
    return sorted(scored.items(), key=lambda t: (-t[1], t[0]))[:n]


async def hybrid_search(
    query: str,
    sources: Sequence[Source],
    *,
    embed_query: Callable[[str], np.ndarray],
    texts_for_ids: TextsForIds,
    k: int = 10,
    budget: Budget | None = None,
    candidates: int = 50,
    fusion: str = DEFAULT_FUSION,
    rrf_k: int = RRF_K,
    weights: dict[str, float] | None = None,
    dense_trust: float = 1.0,
    reranker: Reranker | None = None,
    rerank_top: int = 20,
    index_cache: IndexCache | None = None,
    lexical_cache: LexicalCache | None = None,
) -> HybridResult:
    """Top-k chunks of `sources` for `query`: dense + BM25 fused (re-ranked when a reranker is given).

    embed_query(text) -> (dim,) normalized vector; texts_for_ids(ids) -> texts, used to build BM25
    sidecars on first use and to feed the reranker (retrieval/ never reads the database itself).
    dense_trust (0..1, ``Embedder.trust``) scales the dense list's weight in the fusion: an English-only
    embedding model ranks Chinese text almost at random and would pull BM25's ranking down. Its hits still
    follow BM25's (at a weight of 0, in their own order), and it decides alone when BM25 found nothing.
    """
    if not 0.0 <= dense_trust <= 1.0:
        raise ValueError(f"dense_trust must be within [0, 1], got {dense_trust}")
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
    if k <= 0 or candidates <= 0:
        raise ValueError(f"k and candidates must be positive, got k={k}, candidates={candidates}")
    run = _Run(budget or Budget())
    index_cache = index_cache or get_index_cache()
    lexical_cache = lexical_cache or get_lexical_cache()
    n = max(candidates, k)
    live = [s for s in sources if s.manifest.segments]
    if not live or not query.strip():
        return HybridResult(hits=[], timings_ms={"total": 0.0})

    comparable = [s for s in live if s.dense]

    async def dense_branch() -> list[tuple[int, float]] | None:
        if not comparable:  # every collection's vectors are of another embedding space
            run.skipped.append("dense")
            return None
        q = await run.stage("embed", lambda: embed_query(query))
        if q is None:
            run.skipped.append("dense")
            return None
        return await run.stage("dense", lambda: _dense(index_cache, comparable, q, n))

    bm25_task = asyncio.ensure_future(
        run.stage(
            "bm25",
            lambda: lexical_cache.search_many(
                [(s.collection_dir, s.manifest) for s in live], query, n, texts_for_ids
            ),
        )
    )
    dense = await dense_branch()
    lexical = await bm25_task

    lists = {name: r for name, r in (("dense", dense), ("bm25", lexical)) if r is not None}
    trust = {"dense": dense_trust if lists.get("bm25") else 1.0}
    if fusion == "rrf":
        w = {n: (weights or {}).get(n, 1.0) * trust.get(n, 1.0) for n in lists}
        fused = rrf(lists, k=rrf_k, weights=w)
    else:
        w = {**DEFAULT_CONVEX_WEIGHTS, **(weights or {})}
        fused = convex(lists, {n: w[n] * trust.get(n, 1.0) for n in lists}) if lists else []
    hits = [
        Hit(f.chunk_id, f.score, dense_rank=f.ranks.get("dense"), bm25_rank=f.ranks.get("bm25"))
        for f in fused
    ]
    reranked = False
    if reranker is not None and hits:
        head = hits[:rerank_top]

        def rerank() -> list[tuple[int, float]]:
            texts = texts_for_ids([h.chunk_id for h in head])
            return reranker.rerank(query, list(zip([h.chunk_id for h in head], texts, strict=True)))

        order = await run.stage("rerank", rerank)
        if order is not None:
            by_id = {h.chunk_id: h for h in head}
            for cid, s in order:
                by_id[cid].rerank_score = s
            hits = [by_id[cid] for cid, _ in order] + hits[len(head) :]
            reranked = True
    run.timings["total"] = round((time.perf_counter() - run.t0) * 1000, 2)
    return HybridResult(
        hits=hits[:k],
        degraded=bool(run.timed_out),
        timed_out=run.timed_out,
        skipped=run.skipped,
        timings_ms=run.timings,
        reranked=reranked,
    )


def hybrid_search_sync(query: str, sources: Sequence[Source], **kwargs) -> HybridResult:
    """hybrid_search for synchronous callers (a worker thread, a CLI); not for use inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(hybrid_search(query, sources, **kwargs))
    raise RuntimeError("hybrid_search_sync called from a running event loop; await hybrid_search instead")
