"""Reciprocal-rank fusion: exact scores, weights, ties, duplicates."""

from __future__ import annotations

import pytest

from retrieval.fusion import rrf


def test_rrf_scores_and_order():
    fused = rrf({"dense": [(1, 0.9), (2, 0.8), (3, 0.1)], "bm25": [(3, 12.0), (1, 5.0)]}, k=60)
    assert [f.chunk_id for f in fused] == [1, 3, 2]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1].score == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2].ranks == {"dense": 2, "bm25": None}


def test_rrf_weights_ties_and_duplicates():
    lists = {"dense": [(5, 1.0)], "bm25": [(4, 1.0), (4, 0.5)]}
    assert [f.chunk_id for f in rrf(lists)] == [4, 5]  # equal scores: lower id first
    assert [f.chunk_id for f in rrf(lists, weights={"dense": 2.0})] == [5, 4]
    assert rrf(lists)[0].score == pytest.approx(1 / 61)  # the repeated id counts once
    with pytest.raises(ValueError, match="unknown lists"):
        rrf(lists, weights={"rerank": 1.0})


def test_convex_keeps_score_margins_where_rrf_does_not():
    from retrieval.fusion import convex

    # BM25 is sure about chunk 1; dense barely prefers 2 over 1; both put chunk 3 second.
    dense = [(2, 0.80), (3, 0.79), (4, 0.785), (1, 0.78)]
    bm25 = [(1, 20.0), (3, 6.0), (2, 1.0)]
    assert [f.chunk_id for f in rrf({"dense": dense, "bm25": bm25})][:2] == [2, 3]
    fused = convex({"dense": dense, "bm25": bm25}, {"dense": 1.0, "bm25": 1.0})
    assert [f.chunk_id for f in fused] == [1, 3, 2, 4]
    # (0.78 + 1) / (0.80 + 1) / 2 + 20 / 20 / 2
    assert fused[0].score == pytest.approx(0.5 * 1.78 / 1.80 + 0.5)
    assert fused[0].ranks == {"dense": 4, "bm25": 1}
    with pytest.raises(ValueError, match="non-negative weight per list"):
        convex({"dense": dense}, {"bm25": 1.0})
