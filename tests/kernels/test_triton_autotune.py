"""The autotune prune functions keep few, sensible configs (they only run on the GPU, so test them here)."""

from __future__ import annotations

import inspect

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


def _int8_kept(m, n, k, few, wdtype=torch.int8):
    named = {"X_ptr": torch.empty(1), "W_ptr": torch.empty(1, dtype=wdtype), "M": m, "N": n, "K": k,
             "M_BUCKET": 1 << (m - 1).bit_length()}  # fmt: skip
    if few:
        return int8_matmul._prune_few_rows(int8_matmul._few_rows_configs(), named)
    return int8_matmul._prune_many_rows(int8_matmul._many_rows_configs(), named)


def _shape(c):
    return c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.kwargs["SPLIT_K"], c.kwargs["DOT"]


def test_int8_few_rows_prune_fills_the_gpu():
    # one row: exactly one FMA config, unsplit, chosen by the layer's width (no autotuning)
    assert [_shape(c) for c in _int8_kept(1, 27392, 4096, few=True)] == [(16, 8, 256, 1, False)]
    assert [_shape(c) for c in _int8_kept(1, 4096, 13696, few=True)] == [(16, 8, 512, 1, False)]
    # N=4608 (GLM q/k/v) at 8 rows: 16-row dot tiles; narrow tiles may split K to fill the GPU
    kept = [_shape(c) for c in _int8_kept(8, 4608, 4096, few=True)]
    assert kept and all(dot and bm == 16 for bm, _, _, _, dot in kept)
    assert {sk for _, bn, _, sk, _ in kept if bn == 32} == {1, 2, 4, 8}
    assert all(2 * -(-4608 // bn) * sk >= 132 for _, bn, _, sk, _ in kept)
    # tiles of fewer warps (more programs a multiprocessor) are candidates too, each as DOT_TILES lists it
    configs = _int8_kept(8, 4608, 4096, few=True)
    assert {c.num_warps for c in configs} == {1, 2, 4}
    tiles = {
        (c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.kwargs["STAGES"], c.kwargs["CVT"], c.num_warps)
        for c in configs
    }
    assert tiles <= set(int8_matmul.DOT_TILES)
    assert {c.num_warps for c in _int8_kept(32, 4608, 4096, few=True)} == {4}  # past FEW_WARP_ROWS
    # 64 rows: the partial sums' round trip bounds the split (K=4096: at most 4)
    kept = [_shape(c) for c in _int8_kept(64, 4096, 4096, few=True)]
    assert kept and all(bm == 64 and sk <= 4 for bm, _, _, sk, _ in kept)
    assert max(sk for _, _, _, sk, _ in kept) == int8_matmul.max_split_k(64, 4096) == 4
    assert all(c.kwargs["BLOCK_M"] == 32 for c in _int8_kept(17, 27392, 4096, few=True))
    # a tiny N still gets one config that covers its rows
    assert len(_int8_kept(1, 48, 64, few=True)) == 1
    assert [_shape(c)[0] for c in _int8_kept(20, 48, 64, few=True)] == [32]


def test_16bit_few_rows_prune_uses_its_own_tiles():
    # 16-bit weights: one row one FMA tile (8 x 256) at every width; more rows the DOT_TILES_16 shapes only,
    # CVT never varied (it only places the int8 conversion), at most 4 K splits
    for n in (4096, 27392):
        assert [_shape(c) for c in _int8_kept(1, n, 4096, True, torch.bfloat16)] == [(16, 8, 256, 1, False)]
    for m in (8, 32, 64):
        kept = _int8_kept(m, 4096, 13696, True, torch.bfloat16)
        assert kept and all(
            c.kwargs["CVT"] == 0 and c.kwargs["SPLIT_K"] <= 4 and c.num_warps == 4 for c in kept
        )
        tiles = {(c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.kwargs["STAGES"]) for c in kept}
        assert tiles <= set(int8_matmul.DOT_TILES_16)
        assert len(kept) == len({(_shape(c), c.kwargs["STAGES"]) for c in kept})  # no duplicates


def test_int8_many_rows_prune_drops_oversized_row_tiles():
    assert all(c.kwargs["BLOCK_M"] <= 64 for c in _int8_kept(40, 4096, 4096, few=False))
    assert len(_int8_kept(4096, 4096, 4096, few=False)) == len(int8_matmul._many_rows_configs())


def test_int8_configs_and_launcher_set_every_constexpr():
    # an autotuned config that misses a constexpr only fails on the GPU (the interpreter runs fixed configs)
    common = {"HAS_BIAS", "UPCAST", "PRECISION", "FAST", "EVEN_K"}
    for fn, configs, launcher in (
        (
            int8_matmul._int8_few_rows_kernel,
            int8_matmul._few_rows_configs(),
            common | {"QUANT", "PDL", "PRE_BYTES", "ROPE", "HEAD_DIM", "ROT", "SWIGLU", "IMMA"},
        ),
        (int8_matmul._int8_matmul_kernel, int8_matmul._many_rows_configs(), common | {"IMMA"}),
        (int8_matmul._int8_matmul_kernel, int8_matmul._many_rows_imma_configs(), common | {"IMMA"}),
    ):
        sig = inspect.signature(getattr(fn, "fn", fn))  # the Python function (jitted or interpreted)
        constexprs = {name for name, p in sig.parameters.items() if "constexpr" in str(p.annotation)}
        for c in configs:
            assert set(c.kwargs) | launcher == constexprs, f"{fn.__name__} {c.kwargs}"
