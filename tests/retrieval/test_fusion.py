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
