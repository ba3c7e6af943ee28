"""Paged, variable-length, causal, grouped-query prefill attention with a cached prefix (Triton).

FlashAttention-2's online softmax (Dao, 2023) over K/V read straight from the paged cache: a program
owns BLOCK_M queries of one head of one sequence, walks that sequence's cache positions in BLOCK_N tiles
(looking each position's block up in ``block_tables``), and keeps a running max ``m``, normalizer ``l``
and un-normalized output in registers:

    s = (q . k) * scale            (optionally s = softcap * tanh(s / softcap))
    m' = max(m, rowmax(s)); acc = acc * 2^(m - m') + 2^(s - m') v; l = l * 2^(m - m') + rowsum(2^(s - m'))

Query i of sequence b sits at position ``seq_lens[b] - q_len_b + i`` and sees cache positions up to its
own, which covers prefix reuse, chunked prefill and mixed decode rows. Tiles that lie wholly below the
first query's position skip the causal mask. Head h reads KV head h // (nh // nkv). With an INT8 cache,
K and V are int8 with one float32 scale per (token, head): the K scale multiplies the score columns and
the V scale the probabilities, so the dequantized tiles are never formed.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from .attention import paged_attention_ref  # noqa: F401  (the torch reference of this kernel)
from .triton_common import (
    INTERPRET,
    UPCAST_DOT,
    autotune,
    check_float,
    dot_precision,
    next_pow2,
    out_tensor,
    to_dtype,
)

LOG2E = 1.4426950408889634
# INT8 KV with 16-bit queries: quantize the queries per row and run q.K on int8 tensor cores (K is never
# converted; H200, 4k tokens: 269 vs 208 TFLOP/s at the best config of each). AUTOGLM_INT8_QK=0 turns it off.
INT8_QK = os.environ.get("AUTOGLM_INT8_QK", "1") != "0"


def use_int8_qk(quant: bool, q_dtype: torch.dtype, block_d: int) -> bool:
    """Whether q.K runs on int8 tensor cores: an INT8 cache, 16-bit queries, and a head dim the int8 MMA
    can take (its K step is 32: a 16-dim head does not compile on the GPU)."""
    return quant and INT8_QK and q_dtype != torch.float32 and block_d >= 32


@triton.jit
def _kv_tile(
    C_ptr,
    S_ptr,
    BT_row,
    offs_n,
    n_mask,
    offs_d,
    d_mask,
    kvh,
    stride_cb,
    stride_co,
    stride_ch,
    stride_sb,
    stride_so,
    PAGE: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    QUANT: tl.constexpr,
    MASK_N: tl.constexpr,
    MASK_D: tl.constexpr,
):
    """Gather a (BLOCK_N, BLOCK_D) K or V tile (transposed for K) and its per-token scales. Position n lives
    in block ``BT_row[n // PAGE]`` at offset ``n % PAGE``; without MASK_N every position is known valid."""
    if MASK_N:
        blk = tl.load(BT_row + offs_n // PAGE, mask=n_mask, other=0).to(tl.int64)
    else:
        blk = tl.load(BT_row + offs_n // PAGE).to(tl.int64)
    off = (offs_n % PAGE).to(tl.int64)
    row = blk * stride_cb + off * stride_co + kvh * stride_ch
    if TRANSPOSE:
        ptrs = C_ptr + row[None, :] + offs_d[:, None]
        mask = n_mask[None, :] & d_mask[:, None]
    else:
        ptrs = C_ptr + row[:, None] + offs_d[None, :]
        mask = n_mask[:, None] & d_mask[None, :]
    if MASK_N or MASK_D:
        x = tl.load(ptrs, mask=mask, other=0)
    else:
        x = tl.load(ptrs)
    if QUANT:
        s_ptrs = S_ptr + blk * stride_sb + off * stride_so + kvh
        if MASK_N:
            s = tl.load(s_ptrs, mask=n_mask, other=0.0)
        else:
            s = tl.load(s_ptrs)
    else:
        s = n_mask.to(tl.float32)  # unused
    return x, s


@triton.jit
def _attn_tile(
    q,
    acc,
    m_i,
    l_i,
    start_n,
    pos,
    offs_d,
    d_mask,
    kvh,
    seq_len,
    KC_ptr,
    VC_ptr,
    KS_ptr,
    VS_ptr,
    BT_row,
    stride_cb,
    stride_co,
    stride_ch,
    stride_sb,
    stride_so,
    qk_scale,
    softcap,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    QUANT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    PAGE: tl.constexpr,
    MASK_D: tl.constexpr,
    QK8: tl.constexpr,
    V_DTYPE: tl.constexpr,
):
    offs_n = start_n + tl.arange(0, BLOCK_N)
    n_mask = offs_n < seq_len
    k, ks = _kv_tile(
        KC_ptr,
        KS_ptr,
        BT_row,
        offs_n,
        n_mask,
        offs_d,
        d_mask,
        kvh,
        stride_cb,
        stride_co,
        stride_ch,
        stride_sb,
        stride_so,
        PAGE,
        True,
        QUANT,
        CAUSAL,
        MASK_D,
    )
    if UPCAST:
        s = tl.dot(q.to(tl.float32), k.to(tl.float32), input_precision="ieee")
    elif QK8:
        # int8 queries x int8 keys on the tensor cores, exact in int32: K is never converted
        s = tl.dot(q, k, out_dtype=tl.int32).to(tl.float32)
    else:
        s = tl.dot(q, k.to(q.dtype), input_precision=PRECISION)
    if QUANT:
        s = s * ks[None, :]
    # qk_scale: per query row (the softmax scale, times the row's int8 scale under QK8)
    if SOFTCAP:
        # softcap * tanh(x / softcap), with tanh(y) = 2 sigmoid(2y) - 1; then into the log2 domain
        s = (softcap * (2.0 * tl.sigmoid(2.0 * s * (qk_scale[:, None] / softcap)) - 1.0)) * 1.4426950408889634
    else:
        s = s * (qk_scale * 1.4426950408889634)[:, None]
    if CAUSAL:
        s = tl.where((offs_n[None, :] <= pos[:, None]) & n_mask[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    v, vs = _kv_tile(
        VC_ptr,
        VS_ptr,
        BT_row,
        offs_n,
        n_mask,
        offs_d,
        d_mask,
        kvh,
        stride_cb,
        stride_co,
        stride_ch,
        stride_sb,
        stride_so,
        PAGE,
        False,
        QUANT,
        CAUSAL,
        MASK_D,
    )
    if QUANT:
        p = p * vs[None, :]
    acc = acc * alpha[:, None]
    if UPCAST:
        acc = tl.dot(p, v.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(p.to(V_DTYPE), v.to(V_DTYPE), acc, input_precision=PRECISION)
    return acc, m_new, l_i


@triton.jit
def _flash_prefill_kernel(
    Q_ptr,
    KC_ptr,
    VC_ptr,
    KS_ptr,
    VS_ptr,
    BT_ptr,
    SEQ_ptr,
    CU_ptr,
    O_ptr,
    stride_qt,
    stride_qh,
    stride_ot,
    stride_oh,
    stride_cb,
    stride_co,
    stride_ch,
    stride_sb,
    stride_so,
    stride_bt,
    qk_scale,
    softcap,
    MAX_SEQLEN_Q_BUCKET,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    QUANT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE: tl.constexpr,
    QK8: tl.constexpr,
    INVARIANT: tl.constexpr = False,
):
    # heads vary fastest and the last query tiles (the most causal work) come first: the GPU starts blocks in
    # this order, so the long programs start early and the short ones fill in after them (longest first);
    # query-tile-fastest order left 1-4k-token prompts 5-40% slower (H200, every tile config)
    h = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b = tl.program_id(2)
    q_start = tl.load(CU_ptr + b)
    q_len = tl.load(CU_ptr + b + 1) - q_start
    m_start = pid_m * BLOCK_M
    if m_start >= q_len:
        return
    seq_len = tl.load(SEQ_ptr + b)
    prefix = seq_len - q_len
    kvh = h // GROUP

    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    m_mask = offs_m < q_len
    pos = prefix + offs_m
    rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(
        Q_ptr + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
        mask=m_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    if QK8:
        # int8 queries per row (absmax / 127, round to nearest): the row scale joins the softmax scale
        qf = q.to(tl.float32)
        amax = tl.max(tl.abs(qf), axis=1)
        q = tl.floor(qf * (127.0 / tl.maximum(amax, 1e-30))[:, None] + 0.5).to(tl.int8)
        qk_row = qk_scale * (amax / 127.0)
    else:
        qk_row = tl.full((BLOCK_M,), qk_scale, dtype=tl.float32)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    BT_row = BT_ptr + b.to(tl.int64) * stride_bt

    # tiles wholly at or below the first query's position: every row sees every key, no mask.
    # NOTE: INVARIANT sends every tile through the masked loop: the two loops compile to different
    # arithmetic (FMA contraction), and which loop a key tile takes depends on the row's query tile
    if INVARIANT:
        full_end = 0
    else:
        full_end = ((prefix + m_start + 1) // BLOCK_N) * BLOCK_N
    hi = tl.minimum(seq_len, prefix + m_start + BLOCK_M)
    for start_n in range(0, full_end, BLOCK_N):
        acc, m_i, l_i = _attn_tile(
            q,
            acc,
            m_i,
            l_i,
            start_n,
            pos,
            offs_d,
            d_mask,
            kvh,
            seq_len,
            KC_ptr,
            VC_ptr,
            KS_ptr,
            VS_ptr,
            BT_row,
            stride_cb,
            stride_co,
            stride_ch,
            stride_sb,
            stride_so,
            qk_row,
            softcap,
            BLOCK_N,
            False,
            QUANT,
            SOFTCAP,
            UPCAST,
            PRECISION,
            PAGE,
            BLOCK_D != HEAD_DIM,
            QK8,
            Q_ptr.dtype.element_ty,
        )
    for start_n in range(full_end, hi, BLOCK_N):
        acc, m_i, l_i = _attn_tile(
            q,
            acc,
            m_i,
            l_i,
            start_n,
            pos,
            offs_d,
            d_mask,
            kvh,
            seq_len,
            KC_ptr,
            VC_ptr,
            KS_ptr,
            VS_ptr,
            BT_row,
            stride_cb,
            stride_co,
            stride_ch,
            stride_sb,
            stride_so,
            qk_row,
            softcap,
            BLOCK_N,
            True,
            QUANT,
            SOFTCAP,
            UPCAST,
            PRECISION,
            PAGE,
            BLOCK_D != HEAD_DIM,
            QK8,
            Q_ptr.dtype.element_ty,
        )
    out = acc / l_i[:, None]
    tl.store(
        O_ptr + rows[:, None] * stride_ot + h * stride_oh + offs_d[None, :],
        to_dtype(out, O_ptr.dtype.element_ty),
        mask=m_mask[:, None] & d_mask[None, :],
    )


def _configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm in (64, 128)
        for bn in (32, 64, 128)
        for w in (4, 8)
        for s in (2, 3)
    ]


def _prune(configs, named_args, **kwargs):
    """Keep at most 4 configs per key so the first call tunes in seconds (measured on an H200, 4k tokens,
    d=128: 128x64/4 warps 294 TFLOP/s, 64x64/4w 286, 128x128/8w 275, 64x128/4w 216 but best with INT8 KV):
    - 8 warps only for 128x128 tiles (the score tile needs their registers); 4 warps were faster elsewhere;
    - 2 pipeline stages for 64x128 tiles, 3 for the rest (shared memory holds a K and a V tile per stage);
    - 128-row query tiles only when sequences are long enough to fill them (max_seqlen_q >= 256), and
      32-wide K tiles only for short queries (too little work per tile to hide the loads otherwise)."""
    args = {**named_args, **kwargs}  # the autotuner passes constexpr arguments separately
    long_q = args["MAX_SEQLEN_Q_BUCKET"] >= 256
    kept = []
    for c in configs:
        bm, bn = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]
        if c.num_warps != (8 if (bm, bn) == (128, 128) else 4):
            continue
        if c.num_stages != (2 if (bm, bn) == (64, 128) else 3):
            continue
        if bm == 128 and not long_q or bn == 32 and long_q:
            continue
        kept.append(c)
    return kept or configs[:1]


_tuned = autotune(
    configs=_configs(),
    key=["MAX_SEQLEN_Q_BUCKET", "HEAD_DIM", "GROUP", "QUANT"],
    prune_configs_by={"early_config_prune": _prune},
)(_flash_prefill_kernel)


def check_paged_args(q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, k_scale, v_scale) -> None:
    """Shared argument checks of the two attention launchers (raise ValueError)."""
    check_float("q", q)
    if q.dim() != 3 or k_cache.dim() != 4 or v_cache.shape != k_cache.shape:
        raise ValueError(
            f"expected q (T, nh, hd) and caches (blocks, block_size, nkv, hd); got {tuple(q.shape)}, {tuple(k_cache.shape)}"
        )
    nh, hd = q.shape[1], q.shape[2]
    nkv = k_cache.shape[2]
    if k_cache.shape[3] != hd or nh % nkv:
        raise ValueError(
            f"head dim {hd} vs cache {k_cache.shape[3]}; {nh} query heads must be a multiple of {nkv} KV heads"
        )
    if k_cache.stride() != v_cache.stride() or k_cache.stride(3) != 1 or q.stride(2) != 1:
        raise ValueError(
            "k_cache and v_cache must share one layout, contiguous in head dim; q contiguous in head dim"
        )
    quant = k_scale is not None
    if quant != (v_scale is not None) or quant != (k_cache.dtype == torch.int8):
        raise ValueError("int8 caches need both k_scale and v_scale; float caches take neither")
    if quant and (
        k_scale.shape != k_cache.shape[:3] or k_scale.stride() != v_scale.stride() or k_scale.stride(2) != 1
    ):
        raise ValueError(
            f"k_scale/v_scale must be float32 {tuple(k_cache.shape[:3])}, contiguous in the head dim"
        )
    if not quant and k_cache.dtype != q.dtype:
        raise ValueError(f"cache dtype {k_cache.dtype} must match q dtype {q.dtype}")
    B = seq_lens.shape[0]
    if cu_seqlens_q.shape != (B + 1,) or block_tables.dim() != 2 or block_tables.shape[0] != B:
        raise ValueError(f"cu_seqlens_q must be ({B + 1},) and block_tables ({B}, max_blocks)")
    for name, t in (("block_tables", block_tables), ("seq_lens", seq_lens), ("cu_seqlens_q", cu_seqlens_q)):
        if t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name} must be int32 or int64, got {t.dtype}")
    if block_tables.stride(1) != 1:
        raise ValueError("block_tables must be contiguous in its last dim")


def flash_prefill_triton(
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
    config: dict | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``paged_attention`` of the kernel contract on the prefill kernel (any q lengths)."""
    check_paged_args(q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, k_scale, v_scale)
    T, nh, hd = q.shape
    nkv = k_cache.shape[2]
    B = seq_lens.shape[0]
    out = out_tensor(out, tuple(q.shape), q)
    if T == 0 or B == 0 or max_seqlen_q <= 0:
        return out
    quant = k_scale is not None
    ss = (k_scale.stride(0), k_scale.stride(1)) if quant else (0, 0)
    args = (
        q,
        k_cache,
        v_cache,
        k_scale if quant else q,
        v_scale if quant else q,
        block_tables,
        seq_lens,
        cu_seqlens_q,
        out,
        q.stride(0),
        q.stride(1),
        out.stride(0),
        out.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        *ss,
        block_tables.stride(0),
        float(scale),
        float(softcap or 1.0),
        min(next_pow2(max_seqlen_q), 4096),
    )
    const = dict(
        GROUP=nh // nkv,
        HEAD_DIM=hd,
        BLOCK_D=next_pow2(hd),
        QUANT=quant,
        SOFTCAP=softcap is not None,
        UPCAST=UPCAST_DOT,
        PRECISION=dot_precision(q.dtype),
        PAGE=k_cache.shape[1],
        QK8=use_int8_qk(quant, q.dtype, next_pow2(hd)),
    )

    def grid(meta):
        return (nh, triton.cdiv(max_seqlen_q, meta["BLOCK_M"]), B)

    if INTERPRET and config is None:
        config = {"BLOCK_M": 16, "BLOCK_N": 16}
    if config is not None:
        _flash_prefill_kernel[grid(config)](*args, **const, **config)
    else:
        _tuned[grid](*args, **const)
    return out


# One tile configuration for every query length (dispatch's `invariant`): each query row then meets the
# keys in the same BLOCK_N tiles in the same order, each tile through the same (masked) code, so its result
# does not depend on the step's shape. H200, 4k tokens, d=128: 64x64 tiles at 286 TFLOP/s (before the
# masking of every tile), against 294 for the best tuned tile.
INVARIANT_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3, "INVARIANT": True}


def flash_prefill_invariant(*args, **kwargs) -> torch.Tensor:
    """``flash_prefill_triton`` with INVARIANT_CONFIG (the interpreter keeps its small test tiles)."""
    config = {"BLOCK_M": 16, "BLOCK_N": 16, "INVARIANT": True} if INTERPRET else INVARIANT_CONFIG
    return flash_prefill_triton(*args, **kwargs, config=config)


def softmax_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
