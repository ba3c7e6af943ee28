"""Paged attention kernels (prefill with cached prefix, split-KV decode) against the torch reference.

Cache blocks that no sequence owns, and the tail of each sequence's last block, are NaN (for INT8 caches:
their scales), so a kernel that reads past a sequence's length or through an unused block-table entry
produces NaN and fails; outputs are NaN-poisoned before each call.
"""

from __future__ import annotations

import pytest
import torch

from kernels import int8_ws
from kernels.attention import paged_attention_ref
from kernels.flash_decode import (
    FUSE_SPLITS,
    MAX_SPLITS,
    _arrival_counters,
    decode_config,
    flash_decode_triton,
    paged_attention_triton,
    plan_splits,
)
from kernels.flash_prefill import flash_prefill_triton
from kernels.quant import quantize_kv_ref
from tests.kernels.conftest import DEVICE, GPU, assert_close, assert_planes_of, planes_buffers, poisoned

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
BLOCK_SIZE = 16
# (nh, nkv, hd): GLM-4 (32 query / 2 KV heads, d=128) on the GPU; on the CPU a GQA group of 2, one of 8,
# and an odd head dim (padded to a power of two inside the kernel)
GLM = (32, 2, 128) if GPU else (4, 2, 64)
HEADS = [GLM, (8, 1, 64), (2, 2, 40)] if not GPU else [GLM, (16, 2, 64), (4, 4, 80)]


def _batch(q_lens, seq_lens, heads, dtype, quant):
    """Random paged cache (scattered blocks, NaN where nothing was written) and packed queries."""
    nh, nkv, hd = heads
    B = len(q_lens)
    blocks_per_seq = [(s + BLOCK_SIZE - 1) // BLOCK_SIZE for s in seq_lens]
    max_blocks = max(blocks_per_seq) + 2
    num_blocks = sum(blocks_per_seq) + 3
    perm = torch.randperm(num_blocks, device=DEVICE)
    spare = perm[-1].item()  # a never-written (NaN) block: unused table entries point at it
    block_tables = torch.full((B, max_blocks), spare, dtype=torch.int32, device=DEVICE)
    k = torch.full((num_blocks, BLOCK_SIZE, nkv, hd), float("nan"), dtype=dtype, device=DEVICE)
    v = torch.full_like(k, float("nan"))
    used = 0
    for b, (n, s) in enumerate(zip(blocks_per_seq, seq_lens, strict=True)):
        ids = perm[used : used + n]
        used += n
        block_tables[b, :n] = ids.int()
        kk = torch.randn(n * BLOCK_SIZE, nkv, hd, dtype=dtype, device=DEVICE)
        vv = torch.randn_like(kk)
        kk[s:] = float("nan")
        vv[s:] = float("nan")
        k[ids] = kk.view(n, BLOCK_SIZE, nkv, hd)
        v[ids] = vv.view(n, BLOCK_SIZE, nkv, hd)
    k_scale = v_scale = None
    if quant:
        nan = k.isnan().any(-1)
        k, k_scale = quantize_kv_ref(k.nan_to_num())
        v, v_scale = quantize_kv_ref(v.nan_to_num())
        k_scale[nan] = float("nan")
        v_scale[nan] = float("nan")
    T = sum(q_lens)
    q = torch.randn(T, nh, hd, dtype=dtype, device=DEVICE)
    cu = torch.zeros(B + 1, dtype=torch.int32, device=DEVICE)
    cu[1:] = torch.tensor(q_lens, device=DEVICE).cumsum(0)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=DEVICE)
    return dict(
        q=q, k_cache=k, v_cache=v, block_tables=block_tables, seq_lens=seq, cu_seqlens_q=cu,
        max_seqlen_q=max(q_lens), scale=hd**-0.5, k_scale=k_scale, v_scale=v_scale,
    )  # fmt: skip


def _reference(args, softcap=None):
    """The reference, with NaN-poisoned unused cache entries zeroed (it indexes exactly, but SDPA's masked
    positions still multiply their values by zero)."""
    clean = dict(args)
    for name in ("k_cache", "v_cache", "k_scale", "v_scale"):
        if clean[name] is not None and clean[name].is_floating_point():
            clean[name] = clean[name].nan_to_num()
    return paged_attention_ref(**clean, softcap=softcap)


L = 1000 if GPU else 100
# (q_lens, seq_lens): no prefix at lengths 1/17/L; prefixes ending exactly on block boundaries (16, 32) and
# inside a block (5); a mixed batch with a decode row and a chunk after a long prefix
PREFILL_CASES = {
    "len1": ([1], [1]),
    "len17": ([17], [17]),
    f"len{L}": ([L], [L]),
    "prefix16": ([17], [16 + 17]),
    "prefix32-aligned": ([16], [32 + 16]),
    "mixed": ([5, 1, 33], [5 + 11, 40, 33 + 16]),
    "long-prefix-chunk": ([L // 2, 3], [L + L // 2, 3]),
}


@pytest.mark.parametrize("case", list(PREFILL_CASES))
def test_prefill_bf16_glm_heads(case):
    q_lens, seq_lens = PREFILL_CASES[case]
    args = _batch(q_lens, seq_lens, GLM, BF16, quant=False)
    out = poisoned(args["q"].shape, BF16)
    flash_prefill_triton(**args, out=out)
    assert_close(out, _reference(args), BF16)


@pytest.mark.parametrize("heads", HEADS[1:], ids=lambda h: "x".join(map(str, h)))
@pytest.mark.parametrize("dtype", [BF16, FP16, FP32])
def test_prefill_other_heads_and_dtypes(heads, dtype):
    q_lens, seq_lens = PREFILL_CASES["mixed"]
    args = _batch(q_lens, seq_lens, heads, dtype, quant=False)
    out = poisoned(args["q"].shape, dtype)
    flash_prefill_triton(**args, out=out)
    assert_close(out, _reference(args), dtype)


@pytest.mark.parametrize("case", ["len17", "prefix16", "mixed"])
@pytest.mark.parametrize("dtype", [BF16, FP32])
def test_prefill_int8_kv_matches_dequantized_reference(case, dtype):
    q_lens, seq_lens = PREFILL_CASES[case]
    args = _batch(q_lens, seq_lens, GLM, dtype, quant=True)
    out = poisoned(args["q"].shape, dtype)
    flash_prefill_triton(**args, out=out)
    # the reference dequantizes to the query dtype (bf16 rounding of K/V); the kernel scales in float32
    assert_close(out, _reference(args), dtype, tol=1e-2 if dtype == BF16 else 1e-4)


def test_prefill_softcap():
    args = _batch([17, 4], [17 + 16, 4], GLM, FP32, quant=False)
    args["q"] *= 4  # large scores, so the cap matters
    out = poisoned(args["q"].shape, FP32)
    flash_prefill_triton(**args, softcap=5.0, out=out)
    assert_close(out, _reference(args, softcap=5.0), FP32)
    assert (out - _reference(args)).abs().max() > 1e-2  # the cap changed the result


DECODE_LENS = [1, 17, L, 16, 32, 5]


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("quant", [False, True], ids=["float-kv", "int8-kv"])
@pytest.mark.parametrize("num_splits", [None, 1, 3], ids=["planned", "1split", "3splits"])
def test_decode_matches_reference(dtype, quant, num_splits):
    args = _batch([1] * len(DECODE_LENS), DECODE_LENS, GLM, dtype, quant)
    out = poisoned(args["q"].shape, dtype)
    flash_decode_triton(**args, num_splits=num_splits, out=out)
    assert_close(out, _reference(args), dtype, tol=1e-2 if dtype == BF16 else 1e-4)


@pytest.mark.parametrize("heads", HEADS[1:], ids=lambda h: "x".join(map(str, h)))
def test_decode_other_heads(heads):
    args = _batch([1, 1], [L, 19], heads, BF16, quant=False)
    out = poisoned(args["q"].shape, BF16)
    flash_decode_triton(**args, out=out)
    assert_close(out, _reference(args), BF16)


def test_decode_row_with_empty_cache_is_zero_not_nan():
    # a padding row (seq_len 0) must not produce NaN that could leak into a batched op
    args = _batch([1, 1], [19, 1], GLM, FP32, quant=False)
    args["seq_lens"][1] = 0
    out = flash_decode_triton(**args)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    args["seq_lens"][1] = 1
    assert_close(out[0], _reference(args)[0], FP32)


def test_paged_attention_routes_decode_and_prefill():
    dec = _batch([1, 1], [40, 3], GLM, FP32, quant=False)
    assert torch.equal(paged_attention_triton(**dec), flash_decode_triton(**dec))
    pre = _batch([3, 1], [40, 3], GLM, FP32, quant=False)
    assert torch.equal(paged_attention_triton(**pre), flash_prefill_triton(**pre))


# Block tables as wide as the engine's CUDA graphs pass them (max_model_len / block size columns, the
# unused ones pointing at a NaN block) around short sequences: 1, 17, a block and tile edge, uneven lengths
WIDE_LENS = [1, 17, 32, 75, 5]
WIDE_BLOCKS = 256 if GPU else 64


@pytest.mark.parametrize("quant", [False, True], ids=["bf16-kv", "int8-kv"])
@pytest.mark.parametrize("num_splits", [None, 1, 3, 40], ids=["planned", "1split", "3splits", "40splits"])
def test_decode_block_table_much_wider_than_the_sequences(quant, num_splits, monkeypatch):
    # the split partials are NaN too, so a merge that reads a split nobody wrote fails
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: empty(*a, **kw).fill_(float("nan")))
    args = _batch([1] * len(WIDE_LENS), WIDE_LENS, GLM, BF16, quant)
    tables = args["block_tables"]
    spare = tables[:, -1:]  # _batch leaves the last columns unused: they point at the never-written block
    args["block_tables"] = torch.cat(
        [tables, spare.expand(-1, WIDE_BLOCKS - tables.shape[1])], 1
    ).contiguous()
    out = poisoned(args["q"].shape, BF16)
    flash_decode_triton(**args, num_splits=num_splits, out=out)
    assert_close(out, _reference(args), BF16, tol=1e-2)


@pytest.mark.parametrize("quant", [False, True], ids=["bf16-kv", "int8-kv"])
@pytest.mark.parametrize(
    ("num_splits", "fuse_merge"),
    [(2, None), (FUSE_SPLITS, None), (2, False), (40, True)],
    ids=["2fused", "maxfused", "2launches", "40fused"],
)
def test_decode_merge_in_the_kernel_or_apart(quant, num_splits, fuse_merge, monkeypatch):
    # both merges (the last split to arrive, or the merge kernel) at few and many splits, in a wide table with
    # NaN split buffers and a padding row (seq_len 0): every written element matches, the padding row is 0,
    # a second call gives the same bits, and the fused merge leaves its arrival counters at 0
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: empty(*a, **kw).fill_(float("nan")))
    lens = [1, 17, 75, 5, 40]
    args = _batch([1] * len(lens), lens, GLM, BF16, quant)
    tables = args["block_tables"]
    args["block_tables"] = torch.cat([tables, tables[:, -1:].expand(-1, WIDE_BLOCKS)], 1).contiguous()
    args["seq_lens"][3] = 0
    out = poisoned(args["q"].shape, BF16)
    flash_decode_triton(**args, num_splits=num_splits, fuse_merge=fuse_merge, out=out)
    assert torch.equal(out[3], torch.zeros_like(out[3]))
    keep = [0, 1, 2, 4]
    ref = _reference(args)
    assert_close(out[keep], ref[keep], BF16, tol=1e-2)
    again = flash_decode_triton(**args, num_splits=num_splits, fuse_merge=fuse_merge)
    assert torch.equal(again, out)
    assert not _arrival_counters(out.device, 1).any()


@pytest.mark.parametrize("quant", [False, True], ids=["bf16-kv", "int8-kv"])
@pytest.mark.parametrize(
    ("num_splits", "fuse_merge"), [(1, None), (2, None), (3, False)], ids=["1split", "2fused", "3launches"]
)
def test_decode_writes_the_int8_planes_its_projection_reads(quant, num_splits, fuse_merge):
    # for an INT8 o_proj on the int8 x int8 path (kernels.int8_ws) the call also writes its output rows as the
    # two int8 planes and scales the planes kernel would make from them: tiled planes, a scale per 2,048
    # columns = a KV group of 16 heads x 128 dims, written by the program holding the group's heads (one
    # split; the merge in the kernel): the same bits, into the first rows of a larger buffer (the rest
    # untouched); the output is the one without planes (a second call gives the same again). The merge
    # kernel's programs hold one head each, so it refuses them, as it does row-scaled planes
    lens = [1, 17, 75, 5, 40]
    heads = (32, 2, 128)
    args = _batch([1] * len(lens), lens, heads, BF16, quant)
    nh, _, hd = heads
    rows = len(lens)
    args["q"][2] *= 30  # a row of larger values: its own scales
    args["q"][3, 1] *= 50  # a head of larger values: its KV group's scale
    want = flash_decode_triton(**args, num_splits=num_splits, fuse_merge=fuse_merge)
    refused = [planes_buffers(rows, nh * hd, False)] + [planes_buffers(rows, nh * hd, True)] * (
        fuse_merge is False
    )
    for buffers in refused:
        with pytest.raises(ValueError, match="tiled planes only"):
            flash_decode_triton(**args, num_splits=num_splits, fuse_merge=fuse_merge, planes_out=buffers)
    if fuse_merge is False:
        return
    for _ in range(2):
        planes, sx = planes_buffers(rows, nh * hd, True)
        out = poisoned(args["q"].shape, BF16)
        flash_decode_triton(
            **args, num_splits=num_splits, fuse_merge=fuse_merge, out=out, planes_out=(planes, sx)
        )
        assert torch.equal(out, want)
        assert_planes_of(out.view(rows, nh * hd), planes, sx)


@pytest.mark.parametrize("tiled", [False, True], ids=["row-scales", "tiled"])
def test_decode_merges_in_the_kernel_to_write_tiled_planes_at_a_few_more_splits(monkeypatch, tiled):
    # the engine's path (planes=True, buffers from int8_ws.planes_target): at 5-8 splits the merge would be
    # the merge kernel's, whose programs hold one head each; tiled planes take the merge in the decode kernel
    # instead and are written; row-scaled planes are the planes kernel's (none written, the merge kernel's)
    lens = [3, 40, 77]
    args = _batch([1] * len(lens), lens, (32, 2, 128), BF16, False)
    rows, cols = len(lens), 32 * 128
    buffers = planes_buffers(rows, cols, tiled)
    written = []
    monkeypatch.setattr(int8_ws, "planes_target", lambda r: buffers)
    monkeypatch.setattr(int8_ws, "planes_written", written.append)
    want = flash_decode_triton(**args, num_splits=6, block_n=16, fuse_merge=tiled)
    out = flash_decode_triton(**args, num_splits=6, block_n=16, planes=True)
    assert torch.equal(out, want)
    assert len(written) == int(tiled)
    if tiled:
        assert_planes_of(out.view(rows, cols), *buffers)
    assert not _arrival_counters(out.device, rows * 2).any()


def test_decode_refuses_tiled_planes_for_groups_other_than_a_scale_group():
    # tiled planes take a KV group's heads (query heads x head dim = 2,048 columns) as one scale group: other
    # shapes are refused (the engine's planes_target path leaves such rows to the projection's planes kernel)
    args = _batch([1, 1], [9, 30], (4, 2, 64), BF16, False)
    with pytest.raises(ValueError, match="tiled planes only"):
        flash_decode_triton(**args, num_splits=1, planes_out=planes_buffers(2, 256, True))


def test_split_plan_fills_the_gpu_from_shapes():
    # 132 SMs, 2 KV heads: INT8 keeps two tiles in flight, two programs per SM; bf16 too, one per SM, while
    # batch x KV heads fit in one wave, else one tile, two per SM; float32 tiles would not fit twice
    assert decode_config(1, 256, 132) == (6, 2)
    assert decode_config(2, 128, 132) == (5, 1)
    assert decode_config(2, 256, 132) == (3, 2)
    assert decode_config(4, 2, 132) == (3, 2)
    # a 32k-wide table: at most MAX_SPLITS
    assert plan_splits(1, 2, 32768, 128, 132, waves=1) == 66
    assert plan_splits(1, 2, 32768, 128, 132, waves=2) == MAX_SPLITS
    assert plan_splits(8, 2, 32768, 128, 132, waves=1) == 8
    assert plan_splits(64, 2, 32768, 128, 132, waves=1) == 1
    assert plan_splits(64, 2, 32768, 128, 132, waves=2) == 2
    # never more splits than tiles of the table's width; a batch that fills the GPU needs no split
    assert plan_splits(1, 2, 640, 128, 132, waves=1) == 5
    assert plan_splits(128, 2, 1024, 128, 132, waves=2) == 1


def test_rejects_decode_kernel_for_prefill():
    args = _batch([2], [5], GLM, FP32, quant=False)
    with pytest.raises(ValueError, match="max_seqlen_q"):
        flash_decode_triton(**args)


def test_int8_qk_only_for_heads_the_int8_mma_takes():
    # A 16-dim head failed to compile on the GPU with int8 q.K (the int8 MMA steps K by 32); the interpreter
    # runs any shape, so the rule itself is checked here and the tiny-model engine test covers it on CUDA.
    from kernels.flash_prefill import INT8_QK, use_int8_qk

    assert not use_int8_qk(True, BF16, 16)
    assert not use_int8_qk(True, FP32, 128) and not use_int8_qk(False, BF16, 128)
    assert use_int8_qk(True, BF16, 128) == INT8_QK
