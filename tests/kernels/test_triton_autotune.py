"""The autotune prune functions keep few, sensible configs (they only run on the GPU, so test them here)."""

from __future__ import annotations

import torch

from kernels import flash_prefill, int8_matmul


def _prefill_kept(bucket, head_dim):
    # the autotuner passes positional args as named_args and constexpr keywords separately
    named = {"MAX_SEQLEN_Q_BUCKET": bucket}
    return flash_prefill._prune(flash_prefill._configs(), named, HEAD_DIM=head_dim, GROUP=16, QUANT=False)


def test_prefill_prune_keeps_at_most_four_configs():
    long = _prefill_kept(4096, 128)
    assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in long} == {
        (128, 64, 4, 3),
        (64, 64, 4, 3),
        (128, 128, 8, 3),
        (64, 128, 4, 2),
    }
    short = _prefill_kept(64, 128)
    assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in short} == {(64, 32), (64, 64), (64, 128)}


def _int8_kept(m, n, k, few):
    named = {"X_ptr": torch.empty(1), "M": m, "N": n, "K": k}
    if few:
        return int8_matmul._prune_few_rows(int8_matmul._few_rows_configs(), named)
    return int8_matmul._prune_many_rows(int8_matmul._many_rows_configs(), named)


def test_int8_few_rows_prune_fills_the_gpu():
    # N=4608 (GLM q/k/v): 16- and 32-wide N tiles give the nominal 132 SMs one to eight waves
    kept = _int8_kept(1, 4608, 4096, few=True)
    assert {c.kwargs["BLOCK_N"] for c in kept} == {16, 32} and all(c.kwargs["BLOCK_M"] == 16 for c in kept)
    assert len(kept) == 8
    assert {c.kwargs["BLOCK_N"] for c in _int8_kept(32, 27392, 4096, few=True)} == {32, 64}
    assert all(c.kwargs["BLOCK_M"] == 32 for c in _int8_kept(17, 27392, 4096, few=True))
    # a tiny N still gets a config
    assert _int8_kept(1, 48, 64, few=True)


def test_int8_many_rows_prune_drops_oversized_row_tiles():
    assert all(c.kwargs["BLOCK_M"] <= 64 for c in _int8_kept(40, 4096, 4096, few=False))
    assert len(_int8_kept(4096, 4096, 4096, few=False)) == len(int8_matmul._many_rows_configs())


def test_int8_gemv_prune_keeps_four_configs():
    kept = int8_matmul._prune_gemv(int8_matmul._gemv_configs(), {"N": 4608, "K": 4096})
    assert {(c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]) for c in kept} == {
        (8, 512),
        (8, 1024),
        (16, 512),
        (16, 1024),
    }
