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
