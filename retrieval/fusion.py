"""Reciprocal-rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009).

score(d) = sum over ranked lists i of  w_i / (k + rank_i(d)),  rank starting at 1.
Only ranks count, so lists whose scores live on different scales (cosine similarity, BM25) fuse without
calibration; k = 60 damps the head of each list, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

RRF_K = 60


@dataclass
class Fused:
    """One fused result: its RRF score and its 1-based rank in each input list (None where absent)."""

    chunk_id: int
    score: float
    ranks: dict[str, int | None] = field(default_factory=dict)


def rrf(
    lists: dict[str, Sequence[tuple[int, float]]],
    k: int = RRF_K,
    weights: dict[str, float] | None = None,
    limit: int | None = None,
) -> list[Fused]:
    """Fuse ranked (chunk_id, score) lists, each best first; ties broken by chunk id (deterministic)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    weights = weights or {}
    unknown = set(weights) - set(lists)
    if unknown:
        raise ValueError(f"weights for unknown lists {sorted(unknown)}; lists are {sorted(lists)}")
    out: dict[int, Fused] = {}
    for name, ranked in lists.items():
        w = weights.get(name, 1.0)
        seen: set[int] = set()
        for rank, (cid, _) in enumerate(ranked, start=1):
            if cid in seen:  # a list that repeats an id counts its best rank only
                continue
            seen.add(cid)
            f = out.get(cid)
            if f is None:
                f = out[cid] = Fused(cid, 0.0, dict.fromkeys(lists))
            f.score += w / (k + rank)
            f.ranks[name] = rank
    fused = sorted(out.values(), key=lambda f: (-f.score, f.chunk_id))
    return fused[:limit] if limit is not None else fused


# Theoretical lower bounds of each retriever's score, for convex fusion (TM2C2 in Bruch, Gai and Ingber,
# "An Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023): cosine >= -1, BM25 >= 0.
SCORE_FLOOR = {"dense": -1.0, "bm25": 0.0}


def convex(
    lists: dict[str, Sequence[tuple[int, float]]],
    weights: dict[str, float],
    floors: dict[str, float] | None = None,
    limit: int | None = None,
) -> list[Fused]:
    """Convex combination of scores, each list scaled to [0, 1] between its floor and its best score.

    score(d) = sum_i w_i * (s_i(d) - floor_i) / (max_i - floor_i), 0 where list i lacks d. Unlike RRF
    it keeps how far apart the scores are: a chunk that one retriever ranks first by a wide margin is
    not overtaken by one that both rank second. Weights are normalized to sum to 1.
    """
    floors = {**SCORE_FLOOR, **(floors or {})}
    missing = set(lists) - set(weights)
    if missing or any(w < 0 for w in weights.values()) or not sum(weights.get(n, 0) for n in lists) > 0:
        raise ValueError(f"convex fusion needs a non-negative weight per list {sorted(lists)}, got {weights}")
    if set(lists) - set(floors):
        raise ValueError(f"no score floor for {sorted(set(lists) - set(floors))}; known: {sorted(floors)}")
    total = sum(weights[n] for n in lists)
    out: dict[int, Fused] = {}
    for name, ranked in lists.items():
        if not ranked:
            continue
        lo, hi = floors[name], max(s for _, s in ranked)
        span = hi - lo if hi > lo else 1.0
        w = weights[name] / total
        for rank, (cid, s) in enumerate(ranked, start=1):
            f = out.get(cid)
            if f is None:
                f = out[cid] = Fused(cid, 0.0, dict.fromkeys(lists))
            if f.ranks[name] is None:
                f.score += w * (s - lo) / span
                f.ranks[name] = rank
    fused = sorted(out.values(), key=lambda f: (-f.score, f.chunk_id))
    return fused[:limit] if limit is not None else fused
