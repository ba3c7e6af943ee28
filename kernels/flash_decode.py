"""Split-KV flash decoding over the paged cache, with a log-sum-exp merge (Triton).

Decode has one query per sequence, so one program per (sequence, head) would leave most of the GPU idle
at small batch and read every K/V tile nh // nkv times. Instead (Dao et al., "Flash-Decoding", 2023):
- pass 1: a program owns one KV head of one sequence and one contiguous split of its cache positions, and
  computes all the query heads of that KV group at once (a (group, d) x (d, BLOCK_N) tensor-core dot, so
  each K/V tile is read once); it writes the split's normalized partial output and its log-sum-exp;
- pass 2: one program per (sequence, head) merges the splits: o = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M).
The split COUNT comes from tensor shapes only (batch, KV heads, block-table width), so the launch needs no
host sync and can be captured in a CUDA graph; each program derives its split's RANGE from its sequence's
device-side length (``_split_tiles``), so every split of every sequence shares the real context however
wide the block table is (the engine's graphs pass tables as wide as ``max_model_len``). Splits past a
sequence's end write nothing: the merge counts the splits that hold work from the sequence's length, as the
decode kernel does, and reads only theirs. With one split the decode kernel
writes the output itself (no merge); with a few (``FUSE_SPLITS``) the last working split of each (sequence,
KV head) to finish merges them (an arrival counter), so a call is one launch. Programs keep two K/V tiles in
flight where that pays (``decode_config``).
INT8 caches enter the dots as exact small integers (``int8_to_float``); the per-token K scales multiply
the score row and the V scales P's columns, so nothing is dequantized per element. V is converted before
its transposing layout shuffle (see ``int8_to_float``'s PURE flag).
For an INT8 o_proj on the int8 x int8 path (``int8_ws``: 2..32 rows on a Hopper GPU) the call can also write
its output rows as that path's tiled int8 planes (``planes``; a scale per KV group of 16 heads x 128 dims =
2,048 columns): the program holding a KV group's heads (the only split, or the merge in the decode kernel)
writes theirs, bit for bit what the planes kernel would make, so the projection skips that launch and its
dependency hop.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import int8_ws
from .attention import paged_attention_ref  # noqa: F401  (the torch reference of this kernel)
from .flash_prefill import _kv_tile, check_paged_args, flash_prefill_triton, use_int8_qk
from .int8_matmul import fast_cvt_fits, int8_to_float
from .int8_ws import store_group_planes
from .triton_common import (
    INTERPRET,
    UPCAST_DOT,
    arrival_counters,
    device_sms,
    dot_precision,
    next_pow2,
    out_tensor,
    pdl_enabled,
    pdl_trigger,
    pdl_wait,
    to_dtype,
)

MAX_SPLITS = 128
# INT8 KV with 16-bit queries: quantize the query per head and run q.K on int8 tensor cores (K is never
# converted; H200, 32k context: 10-11% faster at batch 32/128, relative error vs the dequantized reference
# 3.9e-3 -> 7.7e-3 on random data). AUTOGLM_INT8_QK=0 keeps 16-bit queries (`use_int8_qk`).

# At most this many splits the last split of a (sequence, KV head) to finish merges them in the decode kernel
# (one launch); more go to the merge kernel, which spreads the reads over (sequence, head, dims) programs.
# NOTE: H200, fused vs two launches (RESULTS.md "Split merge fused into the decode kernel"): faster at 2-4
# splits (INT8 64 x 1,100: 21.8 vs 27.5 us), slower at 6 and more (1 x 32k, 128 splits: 37.7 vs 17.6 us).
FUSE_SPLITS = 4
# ... and where the decode kernel writes tiled planes (``int8_ws.planes_tiled``), at most this many.
# NOTE: H100, 1,024 cached tokens a row, 8 splits (RESULTS.md "Tiled planes"): the attention writing o_proj's
# planes and merging in the kernel, then o_proj, took 0.6-0.8 us less than the merge kernel + o_proj's planes
# kernel at 8 rows and 0.2-0.4 us more at 2 rows
TILED_FUSE_SPLITS = 8
# At most this many sequences the decode kernel launches early in a captured graph (``EARLY``): under PDL,
# during the q/k/v projection, its splits without work leave and the others prefetch their first K/V tile
# into L2 before they wait for the projection. NOTE: launched early at larger batches, attention programs
# held multiprocessors (shared memory) while the projection still needed them (H200, batch 8: 5-8% slower
# steps; RESULTS.md "Programmatic dependent launch in the decode path"). AUTOGLM_ATTN_EARLY=0 turns it off.
EARLY_BATCH = 1


def decode_config(kv_bytes: int, pairs: int, sms: int) -> tuple[int, int]:
    """(pipeline stages of the tile loop, programs per SM the split plan fills) for a cache of ``kv_bytes``
    per element and ``pairs`` = batch * KV heads.

    NOTE (Triton 3.6, sm_90, read from the compiled kernels): at 3 stages the tile loop keeps ONE K and one
    V buffer: it waits for a tile, does its math, and only then issues the next tile's loads, so a program
    never overlaps its loads with its math (the indirect block-table load takes a stage; 4 stages still give
    one buffer). 5 stages (6 for INT8) keep two, the next tile in flight during the math: INT8 then takes
    107 KB of shared memory (two programs per SM, were three), 16-bit KV 140 KB (one per SM, were two; its
    198 registers would allow two), float32 KV would not fit. H200 (RESULTS.md, decode fourth pass), GPU us:
    bf16 64 x 1,100 25.7 (one split) vs 27.4 (3 stages, two splits), 32 x 1k 15.9 vs 17.9, 1 x 32k 16.5 vs
    17.9; INT8 64 x 1,100 21.1 vs 22.0, 128 x 32k 650 vs 728. But one bf16 program per SM needs two waves
    once pairs > SMs (128 x 1k: 44.9 vs 39.7), so a batch that fills the GPU keeps 3 stages, two per SM."""
    if kv_bytes == 1:
        return 6, 2
    if kv_bytes == 2 and pairs <= sms:
        return 5, 1
    return 3, 2


@triton.jit
def _decode_tile(q, acc, m_i, l_i, start_n, hi, offs_d, d_mask, kvh, KC_ptr, VC_ptr, KS_ptr, VS_ptr, BT_row,
                 stride_cb, stride_co, stride_ch, stride_sb, stride_so, qk_scale, softcap, BLOCK_N: tl.constexpr,
                 PAGE: tl.constexpr, MASK_N: tl.constexpr, MASK_D: tl.constexpr, QUANT: tl.constexpr,
                 SOFTCAP: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr, FAST: tl.constexpr,
                 QK8: tl.constexpr, V_DTYPE: tl.constexpr):  # fmt: skip
    offs_n = start_n + tl.arange(0, BLOCK_N)
    n_mask = offs_n < hi
    k, ks = _kv_tile(KC_ptr, KS_ptr, BT_row, offs_n, n_mask, offs_d, d_mask, kvh, stride_cb, stride_co, stride_ch,
                       stride_sb, stride_so, PAGE, True, QUANT, MASK_N, MASK_D)  # fmt: skip
    s = _decode_scores(
        q, k, ks, n_mask, qk_scale, softcap, MASK_N, QUANT, SOFTCAP, UPCAST, PRECISION, FAST, QK8
    )
    m_new, alpha, p, l_i = _decode_softmax(s, m_i, l_i)
    # V is asked for after the scores (the software pipeline's schedule was measured with this order)
    v, vs = _kv_tile(VC_ptr, VS_ptr, BT_row, offs_n, n_mask, offs_d, d_mask, kvh, stride_cb, stride_co, stride_ch,
                       stride_sb, stride_so, PAGE, False, QUANT, MASK_N, MASK_D)  # fmt: skip
    acc = _decode_pv(acc, alpha, p, v, vs, QUANT, UPCAST, PRECISION, FAST, V_DTYPE)
    return acc, m_new, l_i


@triton.jit
def _decode_scores(q, k, ks, n_mask, qk_scale, softcap, MASK_N: tl.constexpr, QUANT: tl.constexpr,
                   SOFTCAP: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr, FAST: tl.constexpr,
                   QK8: tl.constexpr):  # fmt: skip
    """A tile's scores q . K (K transposed, (BLOCK_D, BLOCK_N)) in log2 units, masked positions -inf."""
    if QK8:
        # q was quantized per head (int8, its scale folded into qk_scale's row vector): an int8 x int8 dot,
        # exact in int32 (|sum| <= 128 * 127^2), so K is never converted
        if UPCAST:
            s = tl.dot(q.to(tl.float32), k.to(tl.float32), input_precision="ieee")
        else:
            s = tl.dot(q, k, out_dtype=tl.int32).to(tl.float32)
    elif UPCAST:
        s = tl.dot(q.to(tl.float32), k.to(tl.float32), input_precision="ieee")
    elif QUANT:
        # int8 K enters the dot as exact small integers; its per-token scale multiplies the score row
        s = tl.dot(q, int8_to_float(k, q.dtype, FAST, True), input_precision=PRECISION)
    else:
        s = tl.dot(q, k, input_precision=PRECISION)
    if QUANT:
        s = s * ks[None, :]
    if SOFTCAP:
        s = (softcap * (2.0 * tl.sigmoid(2.0 * s * (qk_scale[:, None] / softcap)) - 1.0)) * 1.4426950408889634
    else:
        s = s * (qk_scale * 1.4426950408889634)[:, None]
    if MASK_N:
        s = tl.where(n_mask[None, :], s, float("-inf"))
    return s


@triton.jit
def _decode_softmax(s, m_i, l_i):
    """The online softmax's step: (new running max, the old accumulator's factor, P, new running sum)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    return m_new, alpha, p, l_i * alpha + tl.sum(p, axis=1)


@triton.jit
def _decode_pv(acc, alpha, p, v, vs, QUANT: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
               FAST: tl.constexpr, V_DTYPE: tl.constexpr):  # fmt: skip
    """acc * alpha + P . V."""
    if QUANT:
        p = p * vs[None, :]
    acc = acc * alpha[:, None]
    if UPCAST:
        acc = tl.dot(p, v.to(tl.float32), acc, input_precision="ieee")
    elif QUANT:
        # ... and V's per-token scale multiplies P's columns: no per-element dequantization
        acc = tl.dot(p.to(V_DTYPE), int8_to_float(v, V_DTYPE, FAST, False), acc, input_precision=PRECISION)
    else:
        acc = tl.dot(p.to(V_DTYPE), v, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _prefetch_tile(KC_ptr, VC_ptr, BT_row, lo, hi, kvh, stride_cb, stride_co, stride_ch, BLOCK_N: tl.constexpr,
                   PAGE: tl.constexpr, LINES: tl.constexpr):  # fmt: skip
    """Ask L2 for the first LINES 128-byte lines of the K and V rows of KV head kvh at positions
    [lo, min(lo + BLOCK_N, hi)) (``prefetch.global.L2``: no registers held, nothing written; positions past hi
    ask for block 0's, which is harmless). GPU only (inline PTX)."""
    offs_n = lo + tl.arange(0, BLOCK_N)
    blk = tl.load(BT_row + offs_n // PAGE, mask=offs_n < hi, other=0).to(tl.int64)
    row = blk * stride_cb + (offs_n % PAGE).to(tl.int64) * stride_co + kvh * stride_ch
    # elements per 128-byte line
    line = tl.arange(0, LINES) * (1024 // KC_ptr.dtype.element_ty.primitive_bitwidth)
    offs = row[:, None] + line[None, :]
    for which in tl.static_range(2):
        tl.inline_asm_elementwise(
            "prefetch.global.L2 [$1];\n mov.u32 $0, 0;",
            "=r,l",
            [(KC_ptr if which == 0 else VC_ptr) + offs],
            dtype=tl.int32,
            is_pure=False,
            pack=1,
        )


@triton.jit
def _working_splits(seq_len, split_len):
    """How many of a sequence's splits hold work (the decode kernel and the merge count them alike); split 0
    counts even for a sequence with nothing cached, so that one program writes its (zero) output."""
    return tl.maximum(tl.cdiv(seq_len, split_len), 1)


@triton.jit
def _split_tiles(seq_len, num_splits, BLOCK_N: tl.constexpr):
    """Tiles per split of one sequence: its own cached tiles shared out over the launched splits, at least one
    (so a sequence holds work in its first cdiv(seq_len, split tiles * BLOCK_N) splits, none past them)."""
    return tl.maximum(tl.cdiv(tl.cdiv(seq_len, BLOCK_N), num_splits), 1)


@triton.jit
def _flash_decode_kernel(
    Q_ptr,
    KC_ptr,
    VC_ptr,
    KS_ptr,
    VS_ptr,
    BT_ptr,
    SEQ_ptr,
    CU_ptr,
    OP_ptr,
    LSE_ptr,
    O_ptr,
    CNT_ptr,
    PL_ptr,
    SX_ptr,
    MP,
    stride_qt,
    stride_qh,
    stride_cb,
    stride_co,
    stride_ch,
    stride_sb,
    stride_so,
    stride_bt,
    stride_ob,
    stride_oh,
    stride_os,
    stride_lb,
    stride_lh,
    stride_t,
    stride_h,
    qk_scale,
    softcap,
    GROUP: tl.constexpr,
    BLOCK_G: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE: tl.constexpr,
    QUANT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    FAST: tl.constexpr,
    QK8: tl.constexpr,
    DIRECT: tl.constexpr,
    FUSED: tl.constexpr,
    LOOP_STAGES: tl.constexpr,
    PDL_END: tl.constexpr,
    EARLY: tl.constexpr,
    PF_LINES: tl.constexpr,
    PLANES: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(SEQ_ptr + b)
    t = tl.load(CU_ptr + b).to(tl.int64)
    split_len = _split_tiles(seq_len, tl.num_programs(2), BLOCK_N) * BLOCK_N
    lo = split * split_len
    hi = tl.minimum(lo + split_len, seq_len)
    n_work = _working_splits(seq_len, split_len)
    BT_row = BT_ptr + b.to(tl.int64) * stride_bt
    if EARLY:
        # launched under PDL while the q/k/v projection still runs: lengths, block tables and the K/V of earlier
        # steps do not depend on it. A split without work leaves at once (nothing of it is read); one with
        # work prefetches its first tile's K and V rows into L2, then waits for the projection (q, and the
        # step's own k/v in the cache) before it reads anything else
        if split >= n_work:
            return
        _prefetch_tile(
            KC_ptr, VC_ptr, BT_row, lo, hi, kvh, stride_cb, stride_co, stride_ch, BLOCK_N, PAGE, PF_LINES
        )
        pdl_wait(EARLY)

    offs_g = tl.arange(0, BLOCK_G)
    g_mask = offs_g < GROUP
    heads = kvh * GROUP + offs_g
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    q = tl.load(
        Q_ptr + t * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
        mask=g_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    if QK8:
        # int8 query per head (absmax / 127, round to nearest): its scale joins the softmax scale
        qf = q.to(tl.float32)
        amax = tl.max(tl.abs(qf), axis=1)
        inv = 127.0 / tl.maximum(amax, 1e-30)  # an all-zero query row stays 0
        q = tl.floor(qf * inv[:, None] + 0.5).to(tl.int8)
        qk_row = qk_scale * (amax / 127.0)
    else:
        qk_row = tl.full((BLOCK_G,), qk_scale, dtype=tl.float32)
    m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
    # whole tiles without masks, then the partial tail tile (if any) with them
    full_hi = lo + tl.maximum(hi - lo, 0) // BLOCK_N * BLOCK_N
    for start_n in tl.range(lo, full_hi, BLOCK_N, num_stages=LOOP_STAGES):
        acc, m_i, l_i = _decode_tile(q, acc, m_i, l_i, start_n, hi, offs_d, d_mask, kvh, KC_ptr, VC_ptr, KS_ptr,
                                      VS_ptr, BT_row, stride_cb, stride_co, stride_ch, stride_sb, stride_so,
                                      qk_row, softcap, BLOCK_N, PAGE, False, BLOCK_D != HEAD_DIM, QUANT,
                                      SOFTCAP, UPCAST, PRECISION, FAST, QK8, Q_ptr.dtype.element_ty)  # fmt: skip
    if full_hi < hi:
        acc, m_i, l_i = _decode_tile(q, acc, m_i, l_i, full_hi, hi, offs_d, d_mask, kvh, KC_ptr, VC_ptr, KS_ptr,
                                      VS_ptr, BT_row, stride_cb, stride_co, stride_ch, stride_sb, stride_so, qk_row,
                                      softcap, BLOCK_N, PAGE, True, BLOCK_D != HEAD_DIM, QUANT, SOFTCAP, UPCAST,
                                      PRECISION, FAST, QK8, Q_ptr.dtype.element_ty)  # fmt: skip
    # the loads are done: the next kernel (the merge, o_proj) may be scheduled (it waits for this one to end)
    pdl_trigger(PDL_END)
    # an empty split (lo >= seq_len) leaves l = 0 and m = -inf: lse = -inf, output 0
    empty = l_i == 0.0
    out = tl.where(empty[:, None], 0.0, acc / tl.where(empty, 1.0, l_i)[:, None])
    if DIRECT:
        # the only split: the final output (0 for a sequence with nothing cached), no merge
        tl.store(
            O_ptr + t * stride_t + heads[:, None] * stride_h + offs_d[None, :],
            to_dtype(out, O_ptr.dtype.element_ty),
            mask=g_mask[:, None] & d_mask[None, :],
        )
        if PLANES:
            # tiled planes (a KV group's heads a scale group): this program's heads are its own
            store_group_planes(PL_ptr, SX_ptr, t, kvh, heads, g_mask, offs_d, GROUP * tl.num_programs(1) * HEAD_DIM,
                               MP, to_dtype(out, O_ptr.dtype.element_ty).to(tl.float32), HEAD_DIM)  # fmt: skip
    else:
        lse = tl.where(empty, float("-inf"), m_i + tl.log2(tl.where(empty, 1.0, l_i)))
        bi = b.to(tl.int64)
        op_ptrs = OP_ptr + bi * stride_ob + heads[:, None] * stride_oh + offs_d[None, :]
        lse_ptrs = LSE_ptr + bi * stride_lb + heads * stride_lh
        gd_mask = g_mask[:, None] & d_mask[None, :]
        if not FUSED:
            # the merge kernel reads the lse of the splits that hold work (and split 0), and the output of
            # those with cached tokens
            if lo < seq_len:
                tl.store(op_ptrs + split * stride_os, out, mask=gd_mask)
            if split < n_work:
                tl.store(lse_ptrs + split, lse, mask=g_mask)
        elif split < n_work:  # the fused merge reads the splits that hold work (and split 0) only
            tl.store(op_ptrs + split * stride_os, out, mask=gd_mask)
            tl.store(lse_ptrs + split, lse, mask=g_mask)
            # the last working split of this (sequence, KV head) to arrive merges them all, so no second
            # launch. The barrier orders every thread's stores before the (cumulative) acq_rel counter update;
            # the partials are read back from L2 (.cg); the counter goes back to 0 for the next launch.
            tl.debug_barrier()
            pair = b * tl.num_programs(1) + kvh
            if tl.atomic_add(CNT_ptr + pair, 1, sem="acq_rel", scope="gpu") == n_work - 1:
                m = tl.full((BLOCK_G,), -1e30, dtype=tl.float32)  # -1e30: no finite lse gives 0, not NaN
                for si in range(0, n_work):
                    m = tl.maximum(m, tl.load(lse_ptrs + si, mask=g_mask, other=-1e30, cache_modifier=".cg"))
                den = tl.zeros((BLOCK_G,), dtype=tl.float32)
                acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
                for si in range(0, n_work):
                    lse_s = tl.load(lse_ptrs + si, mask=g_mask, other=float("-inf"), cache_modifier=".cg")
                    w = tl.math.exp2(lse_s - m)
                    o = tl.load(op_ptrs + si * stride_os, mask=gd_mask, other=0.0, cache_modifier=".cg")
                    den += w
                    acc += w[:, None] * o
                merged = to_dtype(acc / tl.maximum(den, 1e-30)[:, None], O_ptr.dtype.element_ty)
                tl.store(
                    O_ptr + t * stride_t + heads[:, None] * stride_h + offs_d[None, :], merged, mask=gd_mask
                )
                tl.store(CNT_ptr + pair, 0)
                if PLANES:
                    store_group_planes(PL_ptr, SX_ptr, t, kvh, heads, g_mask, offs_d,
                                       GROUP * tl.num_programs(1) * HEAD_DIM, MP, merged.to(tl.float32), HEAD_DIM)  # fmt: skip


@triton.jit
def _merge_kernel(
    OP_ptr,
    LSE_ptr,
    CU_ptr,
    SEQ_ptr,
    O_ptr,
    stride_ob,
    stride_oh,
    stride_os,
    stride_lb,
    stride_lh,
    stride_t,
    stride_h,
    num_splits,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_wait(PDL)
    b = tl.program_id(0).to(tl.int64)
    # the splits that hold work (as the decode kernel counts them): only they wrote an lse
    seq_len = tl.load(SEQ_ptr + b)
    n_work = _working_splits(seq_len, _split_tiles(seq_len, num_splits, BLOCK_N) * BLOCK_N)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    # a program merges BLOCK_D of the head's dims (several programs per head when the batch is small)
    offs_d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    lse_row = LSE_ptr + b * stride_lb + h * stride_lh
    o_row = OP_ptr + b * stride_ob + h * stride_oh
    t = tl.load(CU_ptr + b).to(tl.int64)
    # one pass, rescaling as the running maximum grows: a block's lse and partial outputs are asked for together
    # (one memory round trip after the length's; BLOCK_S covers every split up to MAX_SPLITS, so one block)
    m_all = tl.full((), -1e30, dtype=tl.float32)  # -1e30: a row with no finite lse gives 0, not NaN
    den = tl.zeros((), dtype=tl.float32)
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for s0 in range(0, n_work, BLOCK_S):
        s_mask = s0 + offs_s < n_work
        lse = tl.load(lse_row + s0 + offs_s, mask=s_mask, other=float("-inf"))
        o = tl.load(o_row + (s0 + offs_s)[:, None] * stride_os + offs_d[None, :], mask=s_mask[:, None] & d_mask[None, :],
                    other=0.0)  # fmt: skip
        # a working split with nothing cached (a padding row's split 0) wrote lse = -inf and no output
        o = tl.where((lse != float("-inf"))[:, None], o, 0.0)
        m_new = tl.maximum(m_all, tl.max(lse, axis=0))
        alpha = tl.math.exp2(m_all - m_new)
        w = tl.math.exp2(lse - m_new)
        den = den * alpha + tl.sum(w, axis=0)
        acc = acc * alpha + tl.sum(w[:, None] * o, axis=0)
        m_all = m_new
    pdl_trigger(PDL)
    merged = to_dtype(acc / tl.maximum(den, 1e-30), O_ptr.dtype.element_ty)
    tl.store(O_ptr + t * stride_t + h * stride_h + offs_d, merged, mask=d_mask)


def plan_splits(batch: int, nkv: int, max_context: int, block_n: int, sms: int, waves: int = 2) -> int:
    """Splits per (sequence, KV head) from shapes alone: about ``waves`` programs per multiprocessor, never
    more splits than tiles of the block table's width, at most MAX_SPLITS.

    NOTE: the count is fixed when a CUDA graph is captured, but every split takes a share of its sequence's
    real length (``_split_tiles``), so a long context is read by batch * nkv * splits programs at once,
    ``waves`` of them resident per multiprocessor (as shared memory fits them: ``decode_config``), which
    keeps enough tile loads in flight to stream the cache. More splits would only shorten every program's loop
    (each pays a fixed latency: block table, first tiles, stores) and grow the merge, which reads one
    (group, head dim) partial per split that holds work (MAX_SPLITS caps it at 2 MB per sequence for
    32 x 128 heads); a batch that fills the GPU on its own gets one split and no merge at all."""
    tiles = max(1, triton.cdiv(max_context, block_n))
    want = max(1, (waves * sms) // max(1, batch * nkv))
    return min(want, tiles, MAX_SPLITS)


def _arrival_counters(device: torch.device, n: int) -> torch.Tensor:
    """The fused merge's arrival counters, one per (sequence, KV head) (``arrival_counters``): 64K entries
    cover any batch the engine runs."""
    return arrival_counters("decode-merge", device, n, 1 << 16)


def flash_decode_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    max_seqlen_q: int,
    scale: float,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
    softcap: float | None = None,
    num_splits: int | None = None,
    block_n: int | None = None,
    out: torch.Tensor | None = None,
    num_warps: int = 4,
    num_stages: int = 3,
    fuse_merge: bool | None = None,
    loop_stages: int | None = None,
    planes: bool = False,
    planes_out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``paged_attention`` for an all-decode batch (every q_len == 1). ``num_splits`` (the split count; each
    sequence's splits still share its own length), ``block_n``, ``loop_stages`` (``decode_config``) and
    ``fuse_merge`` (merge in the decode kernel; planned: at most FUSE_SPLITS splits) override the plan (tests
    use them to reach many splits and tiles at small sizes; the interpreter takes 16-token tiles).
    ``planes``: the output rows (T, nh * hd) go next into an INT8 product: also write them as ``int8_ws``'s
    tiled planes where that path takes them (``int8_ws.planes_target``) and a program holds a KV group of
    SCALE_K columns; ``planes_out``: (planes int8 (2, MP, nh * hd), scales float32 (nkv, SX_COLS), a KV
    group's heads a group) to write them into regardless (tests).
    NOTE: row-scaled planes (AUTOGLM_PLANES_TILED=0) are o_proj's planes kernel's to make: no program here
    holds a row, and the last to store a part of it reading it back (an arrival counter per row) gained only
    0.4-1.2 us on an H100 (RESULTS.md "The attention's and SiLU's planes on an H100"; removed)."""
    check_paged_args(q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, k_scale, v_scale)
    if max_seqlen_q != 1:
        raise ValueError(f"flash decoding takes one query per sequence, got max_seqlen_q={max_seqlen_q}")
    T, nh, hd = q.shape
    nkv = k_cache.shape[2]
    B = seq_lens.shape[0]
    out = out_tensor(out, tuple(q.shape), q)
    if T == 0 or B == 0:
        return out
    quant = k_scale is not None
    stages, waves = decode_config(k_cache.element_size(), B * nkv, device_sms(q))
    if block_n is None:
        block_n = 16 if INTERPRET else 128
    max_context = block_tables.shape[1] * k_cache.shape[1]
    splits = num_splits
    if splits is None:
        splits = plan_splits(B, nkv, max_context, block_n, device_sms(q), waves)
    if splits < 1:
        raise ValueError(f"num_splits must be at least 1, got {num_splits}")
    direct = splits == 1
    fused = not direct and (splits <= FUSE_SPLITS if fuse_merge is None else fuse_merge)
    # in a captured graph the decode kernel launches normally (it waits for q/k/v), lets the next kernel be
    # scheduled once its tile loop is done, and the merge launches with PDL (waiting at its start) and does
    # the same for o_proj just before its store. NOTE: H200, decode-step replays (RESULTS.md "Attention lets
    # the next kernel launch at its end"): INT8 b1 / b8 1.011x / 1.007x, bf16 1.007x / 1.001x; the attempts
    # that let the next kernel launch at a kernel's START (merge or decode) made batch 8 5-8% slower.
    # AUTOGLM_ATTN_TRIGGER=0 turns it off.
    pdl_end = pdl_enabled(q) and os.environ.get("AUTOGLM_ATTN_TRIGGER", "1") != "0"
    early = pdl_end and B <= EARLY_BATCH and os.environ.get("AUTOGLM_ATTN_EARLY", "1") != "0"
    group = nh // nkv
    # the output rows' int8 planes for the projection after this call (not with the early launch: one row)
    rows = out.view(T, nh * hd) if (planes or planes_out is not None) and out.is_contiguous() else None
    want = planes and planes_out is None and rows is not None and not early
    target = int8_ws.planes_target(rows) if want else None
    if target is not None and target[1].dim() != 2:
        target = None  # row scales: the planes kernel's
    group_fits = group * hd == int8_ws.SCALE_K.value
    if target is not None and group_fits and fuse_merge is None and 1 < splits <= TILED_FUSE_SPLITS:
        # tiled planes want one program holding a KV group's heads: the merge in the decode kernel, taken at a
        # few more splits than FUSE_SPLITS (batch 16 at GLM-4-9B's shapes plans 8) rather than leave the planes
        # to o_proj's planes kernel
        fused = True
    # tiled planes take a KV group's heads as one scale group, written by the program holding them all (one
    # split, or the merge in the decode kernel): other shapes, or the merge kernel, leave them to the planes
    # kernel
    group_fits = group_fits and (direct or fused)
    if target is not None and not group_fits:
        target = None
    planes_out = planes_out if planes_out is not None else target
    if planes_out is not None and (rows is None or early):
        raise ValueError("the planes need a contiguous output and no early launch")
    if planes_out is not None and (planes_out[1].dim() != 2 or not group_fits):
        raise ValueError(
            f"the decode attention writes tiled planes only, a KV group of {int8_ws.SCALE_K.value} columns "
            f"(query heads x head dim) written by one program (one split or the merge in the kernel), got "
            f"{group} x {hd}, {splits} splits and scales of shape {tuple(planes_out[1].shape)}"
        )
    pl_args = (out, out, 0)  # (planes, scales, MP); any pointer stands in for what is not used
    if planes_out is not None:
        pl_args = (planes_out[0], planes_out[1], planes_out[0].shape[1])
    # one split writes `out` itself; the partials' buffers are then unused (any pointer will do)
    o_part = out if direct else torch.empty((B, nh, splits, hd), dtype=torch.float32, device=q.device)
    lse = out if direct else torch.empty((B, nh, splits), dtype=torch.float32, device=q.device)
    ss = (k_scale.stride(0), k_scale.stride(1)) if quant else (0, 0)
    block_d = next_pow2(hd)
    _flash_decode_kernel[(B, nkv, splits)](
        q,
        k_cache,
        v_cache,
        k_scale if quant else q,
        v_scale if quant else q,
        block_tables,
        seq_lens,
        cu_seqlens_q,
        o_part,
        lse,
        out,
        _arrival_counters(q.device, B * nkv) if fused else lse,
        *pl_args,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        *ss,
        block_tables.stride(0),
        o_part.stride(0),
        o_part.stride(1),
        o_part.stride(2),
        lse.stride(0),
        lse.stride(1),
        out.stride(0),
        out.stride(1),
        float(scale),
        float(softcap or 1.0),
        GROUP=group,
        BLOCK_G=max(16, next_pow2(group)),
        HEAD_DIM=hd,
        BLOCK_D=block_d,
        BLOCK_N=block_n,
        PAGE=k_cache.shape[1],
        QUANT=quant,
        SOFTCAP=softcap is not None,
        UPCAST=UPCAST_DOT,
        PRECISION=dot_precision(q.dtype),
        FAST=fast_cvt_fits(block_d * block_n, num_warps),
        QK8=use_int8_qk(quant, q.dtype, block_d),
        DIRECT=direct,
        FUSED=fused,
        LOOP_STAGES=loop_stages or stages,
        PDL_END=pdl_end,
        EARLY=early,
        # whole 128-byte lines of a K/V row (head dim x element bytes), a power of two
        PF_LINES=max(1, next_pow2(hd * k_cache.element_size() // 128 + 1) // 2),
        PLANES=planes_out is not None,
        num_warps=num_warps,
        num_stages=num_stages,
        launch_pdl=early,
    )
    if direct or fused:
        return _planes_done(out, rows, target)
    # small batches: split the merge over head dims too, so that it runs on more multiprocessors
    merge_d = block_d if B * nh >= 2 * device_sms(q) else max(16, block_d // 4)
    _merge_kernel[(B, nh, triton.cdiv(hd, merge_d))](
        o_part,
        lse,
        cu_seqlens_q,
        seq_lens,
        out,
        o_part.stride(0),
        o_part.stride(1),
        o_part.stride(2),
        lse.stride(0),
        lse.stride(1),
        out.stride(0),
        out.stride(1),
        splits,
        HEAD_DIM=hd,
        BLOCK_D=merge_d,
        # every split's lse in one load up to MAX_SPLITS, at most 8192 partials a tile (64 registers a thread)
        BLOCK_S=min(MAX_SPLITS, next_pow2(splits), 8192 // merge_d),
        BLOCK_N=block_n,
        PDL=pdl_end,
        num_warps=4,
        launch_pdl=pdl_end,
    )
    return _planes_done(out, rows, target)


def _planes_done(out: torch.Tensor, rows: torch.Tensor | None, target) -> torch.Tensor:
    """Record the planes the call wrote into ``int8_ws.planes_target``'s buffers (if it did); returns out."""
    if target is not None:
        int8_ws.planes_written(rows)
    return out


def paged_attention_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    max_seqlen_q: int,
    scale: float,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
    softcap: float | None = None,
    planes: bool = False,
) -> torch.Tensor:
    """``paged_attention`` of the kernel contract: all-decode batches go to split-KV flash decoding,
    everything else (prefill, chunked prefill, mixed batches) to the prefill kernel. ``planes``: decode also
    writes its output rows as the int8 planes of the INT8 product after it (``flash_decode_triton``)."""
    args = (q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, max_seqlen_q, scale, k_scale, v_scale,
            softcap)  # fmt: skip
    if max_seqlen_q == 1:
        return flash_decode_triton(*args, planes=planes)
    return flash_prefill_triton(*args)
