"""W8A16 matmul (Triton): y = x @ (qweight * scale[:, None]).T + bias, dequantized inside the GEMM.

Weights are int8 per output channel (``Int8Weight``). The kernels convert each int8 weight tile to the
activation dtype in registers (``int8_to_float``: a byte-permute trick, not the slow ``cvt`` path),
accumulate in float32 and apply the per-channel scale once per output tile, after the K loop.
- few rows (decode, M <= FEW_ROWS): bound by the int8 weight stream (half of bf16's bytes). A split-K
  kernel with grid (N tiles, K splits): one row multiplies elementwise into a float32 tile (no dot, its
  weight loads pipelined by ``tl.range`` stages), 2..64 rows use a transposed tensor-core dot
  ``acc (BLOCK_N, BLOCK_M) = W_tile @ X_tile.T`` (the weights as the wide operand, the rows padded to 16,
  32 or 64); with split K, the last split of each column tile to finish sums the float32 partials (one
  launch, no second pass). Autotuned on (rows, N, K). The same kernel takes 16-bit weights (QUANT off: no
  conversion, no scale; ``few_rows_linear_triton``), which ``kernels.skinny`` runs where it beats cuBLAS.
  The int8 x int8 path (``IMMA``): 2..IMMA_ROWS 16-bit rows are first split into two int8 planes with a
  scale per row (``split_rows``, one small launch) and the dots run int8 x int8 on the tensor cores, both
  operands straight from shared memory: no weight conversion at all (the converting dot spends ~2
  instructions per weight byte on it and loads the tile into registers first); past FEW_ROWS rows the GEMM
  kernel does the same (``IMMA_MANY_TILES``) instead of a dequantized copy. Which path a shape takes is
  measured on the GPU (``use_imma``; AUTOGLM_W8_IMMA=on/off forces it). On an H100/H200, 2..32 rows may
  instead take ``int8_ws``: the same planes, multiplied by a warp-specialized Gluon GEMM (a producer warp
  streaming TMA tiles through a deep ring, one warpgroup on wgmma), again where measured faster (``use_ws``;
  AUTOGLM_W8_WS=on/off).
- many rows (FEW_ROWS+1..DEQUANT_ROWS-1) of wide layers (N / 128 >= SMs): compute bound; 64..256 tiles in
  the usual orientation, grouped program order for L2 reuse. (The transposed orientation keeps the converted
  weights in registers as wgmma's A operand and measured 7-18% faster at 4,096 rows on an H100, yet only
  0.51-0.94x of dequantize + cuBLAS at 1,024-4,096 rows (RESULTS.md, "On an H100"); its 256x128 tile also gave
  wrong results under Triton 3.6 on an H200 once. The many-rows family does not use it.)
Other layers at those row counts, and every layer from DEQUANT_ROWS rows on: the weight is dequantized to a
transient copy and multiplied by cuBLAS.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import int8_gemm_ws, int8_ws, measure
from .quant import Int8Weight, linear_ref  # noqa: F401  (linear_ref: the torch reference)
from .triton_common import (
    INTERPRET,
    TORCH_TO_TL,
    UPCAST_DOT,
    arrival_counters,
    autotune,
    check_float,
    device_sms,
    dot_precision,
    next_pow2,
    out_tensor,
    pdl_enabled,
    pdl_trigger,
    pdl_wait,
    to_dtype,
)

FEW_ROWS = 64


class Rope(NamedTuple):
    """What the few-rows kernel's rotary epilogue needs (``kernels.qkv_rope``): cos/sin (1, ROT // 2) float32
    of the row's position, the step's K/V cache of one layer (num_blocks, block_size, nkv, head_dim), the
    row's slot (1,) int64, and the widths of the q and of the k columns in the [q | k | v] row."""

    cos: torch.Tensor
    sin: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    slot_mapping: torch.Tensor
    q_cols: int
    kv_cols: int


# one row under PDL: bytes of its weight rows a program loads before waiting for the previous kernels
# (AUTOGLM_PRELOAD_BYTES). NOTE: H200, bf16 decode step at batch 1 (RESULTS.md "Programmatic dependent
# launch"): PDL alone made it 2.2% slower, with 8 KB preloaded 0.6% slower, with 4 KB as fast as without PDL
# (batch 8 and 64, which do not preload: 4.9% and 2.0% faster with PDL).
PRE_BYTES = 4096


def preload_bytes(rows: int = 1) -> int:
    """The launch's PRE_BYTES under PDL: one row preloads that many bytes of its weight rows; 2..FEW_WARP_ROWS
    rows (the dot) a program's first K tile if it holds at most twice that (AUTOGLM_DOT_PRELOAD=0: none).
    NOTE: H100, W8A16 at GLM-4-9B shapes, CUDA-graph replays (RESULTS.md "The first K tile loaded before
    the wait"): at 2-16 rows PDL without a preload was 3-23% slower than with one (down at 8 rows 31.6 vs
    25.8 us: the next launch's programs sat waiting on multiprocessors this one still needed); at 32-64 rows
    the preload changed nothing or lost (o_proj 64 rows on int8 planes 17.7 -> 20.4 us), so it stops there."""
    if rows > 1 and (rows > FEW_WARP_ROWS or os.environ.get("AUTOGLM_DOT_PRELOAD", "1") == "0"):
        return 0
    return int(os.environ.get("AUTOGLM_PRELOAD_BYTES", PRE_BYTES))


# at or above this many rows: dequantize to a transient copy and use cuBLAS (see int8_linear_triton)
DEQUANT_ROWS = 256
# at most this many K splits in the few-rows kernel (bounds the partial-sum buffer and the final sum)
MAX_SPLIT_K = 8
# NOTE: int8 -> float conversion by ``cvt`` (I2F) runs at 16 results per clock per multiprocessor on Hopper,
# an eighth of the FMA rate: at ~1.5 conversions per int8 -> bf16 value that caps every int8 kernel here at
# ~2.8 T values/s, under the 4 T int8 bytes/s that memory delivers. ``int8_to_float`` uses the magic-number
# trick instead (full-rate byte permutes and one fp32 subtract per value); inline PTX, so GPU only. (Triton
# 3.6 and 3.9 lower a plain int8 -> bf16 ``.to`` with byte permutes and a packed subtract too, as the Gluon
# GEMM of int8_gemm_ws relies on; int8 -> fp32 stays a ``cvt`` there.)
# AUTOGLM_INT8_CVT=cvt falls back to the plain conversion (a toolchain that rejects the PTX, comparisons).
FAST_CVT = not INTERPRET and os.environ.get("AUTOGLM_INT8_CVT", "fast") != "cvt"


def fast_cvt_fits(tile_elems: int, num_warps: int) -> bool:
    """The PTX conversion takes 4 packed values, so each thread must hold a multiple of 4 elements of the
    int8 tile (Triton aborts compilation otherwise): tiles of >= 4 values per thread. All autotuned
    configs qualify; small forced configs (tests) fall back to the plain conversion."""
    return FAST_CVT and tile_elems >= 4 * 32 * num_warps


# int8 x 4 (one 32-bit register) -> bf16 x 4 (two registers); see int8_to_float
_ASM_INT8_TO_BF16: tl.constexpr = tl.constexpr(
    """{
    .reg .b32 l0, h0, l1, h1, l2, h2;
    prmt.b32 l0, $2, 0x43, 0x4140;
    prmt.b32 h0, $2, 0x43, 0x4342;
    and.b32 l1, l0, 0xff7fff7f;
    and.b32 h1, h0, 0xff7fff7f;
    and.b32 l2, l0, 0xff80ff80;
    and.b32 h2, h0, 0xff80ff80;
    sub.bf16x2 $0, l1, l2;
    sub.bf16x2 $1, h1, h2;
    }"""
)


@triton.jit
def int8_to_float(w, dtype: tl.constexpr, FAST: tl.constexpr, PURE: tl.constexpr):
    """int8 tensor -> ``dtype``, exactly (every int8 value is representable in bf16/fp16/fp32).

    FAST: per 4 packed bytes (one register). float32: ``u = w ^ 0x80`` (= w + 128 as unsigned), byte permutes
    build the fp32 bit patterns ``0x4B0000uu`` = 2^23 + u, and subtracting 2^23 + 128 leaves w. bfloat16 (two
    values per 32-bit op): a permute builds ``0x43bb`` per byte b; with b's sign bit cleared that is
    128 + (b & 0x7f), with only the sign bit kept 128 or 256, and one packed bf16 subtract leaves w (exact:
    small integers). 8 instructions per 4 values.
    PURE=False (bf16) marks the conversion as having effects, so that Triton cannot move a dot operand's
    layout conversion above it: for a B operand that needs transposing (P @ V), shuffling the int8 tile
    instead reads shared memory one byte at a time; this way the bf16 tile is shuffled (ldmatrix.trans)."""
    if FAST and dtype == tl.bfloat16:
        if PURE:
            h = tl.inline_asm_elementwise(
                _ASM_INT8_TO_BF16, "=r,=r,r", [w], dtype=tl.int16, is_pure=True, pack=4
            )
        else:
            h = tl.inline_asm_elementwise(
                _ASM_INT8_TO_BF16, "=r,=r,r", [w], dtype=tl.int16, is_pure=False, pack=4
            )
        return h.to(tl.bfloat16, bitcast=True)
    elif FAST and dtype == tl.float32:
        f = tl.inline_asm_elementwise(
            """{
            .reg .b32 u, m;
            .reg .f32 f0, f1, f2, f3;
            xor.b32 u, $4, 0x80808080;
            mov.b32 m, 0x4B000000;
            prmt.b32 $0, u, m, 0x7650;
            prmt.b32 $1, u, m, 0x7651;
            prmt.b32 $2, u, m, 0x7652;
            prmt.b32 $3, u, m, 0x7653;
            mov.b32 f0, $0;
            mov.b32 f1, $1;
            mov.b32 f2, $2;
            mov.b32 f3, $3;
            sub.f32 f0, f0, 0f4B000080;
            sub.f32 f1, f1, 0f4B000080;
            sub.f32 f2, f2, 0f4B000080;
            sub.f32 f3, f3, 0f4B000080;
            mov.b32 $0, f0;
            mov.b32 $1, f1;
            mov.b32 $2, f2;
            mov.b32 $3, f3;
            }""",
            "=r,=r,=r,=r,r",
            [w],
            dtype=tl.int32,
            is_pure=True,
            pack=4,
        )
        return f.to(tl.float32, bitcast=True)
    else:
        # through float32: the interpreter's direct int8 -> bfloat16 cast returns raw bit patterns
        return w.to(tl.float32).to(dtype)


@triton.jit
def _convert_operand(w, dtype: tl.constexpr, FAST: tl.constexpr, CVT: tl.constexpr):
    """int8 dot operand -> ``dtype``. CVT 0: ``int8_to_float`` (pure: Triton may move the operand's layout
    conversion onto the int8 tile); 1: the same, converted before the layout conversion; 2: Triton's own
    conversion (its int8 -> bf16 is byte permutes too), placed after the shared-memory load."""
    if CVT == 2 and FAST:
        return w.to(dtype)
    elif CVT == 1:
        return int8_to_float(w, dtype, FAST, False)
    else:
        return int8_to_float(w, dtype, FAST, True)


@triton.jit
def _int8_matmul_kernel(
    X_ptr,
    W_ptr,
    S_ptr,
    B_ptr,
    Y_ptr,
    M,
    N,
    K,
    M_BUCKET,
    stride_xm,
    stride_wn,
    stride_ym,
    SX_ptr,
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    FAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_N: tl.constexpr,
    SWAP: tl.constexpr,
    CVT: tl.constexpr,
    IMMA: tl.constexpr = False,
):
    """The GEMM (many rows). IMMA (usual orientation only): X is ``split_rows``' planes (hi rows 0..M-1, lo
    rows M..2M-1, stride_xm = K) with row scales SX; two int8 x int8 dots into int32, no weight conversion."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # grouped order: GROUP_N weight tiles are swept over all row tiles before moving on (L2 reuse)
    group = pid // (GROUP_N * num_pid_m)
    first_n = group * GROUP_N
    group_size = tl.minimum(num_pid_n - first_n, GROUP_N)
    pid_n = first_n + (pid % (GROUP_N * num_pid_m)) % group_size
    pid_m = (pid % (GROUP_N * num_pid_m)) // group_size

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    # wrap out-of-range rows/cols onto valid memory; their results are masked at the store
    rn = (offs_n % N).to(tl.int64)
    rm = (offs_m % M).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    if SWAP:
        # acc (BLOCK_N, BLOCK_M) = W_tile @ X_tile.T: the converted weights are the dot's first operand
        w_ptrs = W_ptr + rn[:, None] * stride_wn + offs_k[None, :]
        x_ptrs = X_ptr + rm[None, :] * stride_xm + offs_k[:, None]
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        # acc (BLOCK_M, BLOCK_N) = X_tile @ W_tile.T
        x_ptrs = X_ptr + rm[:, None] * stride_xm + offs_k[None, :]
        w_ptrs = W_ptr + rn[None, :] * stride_wn + offs_k[:, None]
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if IMMA:
        acc_hi = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        acc_lo = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        lo_rows = M.to(tl.int64) * stride_xm  # the lo plane follows the hi plane
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if IMMA:
            if EVEN_K:
                w = tl.load(w_ptrs)
                x_hi = tl.load(x_ptrs)
                x_lo = tl.load(x_ptrs + lo_rows)
            else:
                k_left = K - k * BLOCK_K
                w = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0)
                x_hi = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0)
                x_lo = tl.load(x_ptrs + lo_rows, mask=offs_k[None, :] < k_left, other=0)
            acc_hi = tl.dot(x_hi, w, acc_hi, out_dtype=tl.int32)
            acc_lo = tl.dot(x_lo, w, acc_lo, out_dtype=tl.int32)
            w_ptrs += BLOCK_K
            x_ptrs += BLOCK_K
        else:
            if SWAP:
                # few rows: masked-off rows issue no loads (wrapping them would re-read x up to 16 times)
                k_left = K - k * BLOCK_K
                if EVEN_K:
                    w = tl.load(w_ptrs)
                else:
                    w = tl.load(w_ptrs, mask=offs_k[None, :] < k_left, other=0)
                x = tl.load(x_ptrs, mask=(offs_k[:, None] < k_left) & (offs_m[None, :] < M), other=0.0)
            elif EVEN_K:
                w = tl.load(w_ptrs)
                x = tl.load(x_ptrs)
            else:
                k_left = K - k * BLOCK_K
                w = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0)
                x = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            if UPCAST:
                w = w.to(tl.float32)
                x = x.to(tl.float32)
            else:
                w = _convert_operand(w, x.dtype, FAST, CVT)
            if SWAP:
                acc = tl.dot(w, x, acc, input_precision=PRECISION)
            else:
                acc = tl.dot(x, w, acc, input_precision=PRECISION)
            w_ptrs += BLOCK_K
            x_ptrs += BLOCK_K
    if IMMA:
        sx = tl.load(SX_ptr + rm)
        acc = (acc_hi.to(tl.float32) + acc_lo.to(tl.float32) * (1.0 / LO_STEPS)) * sx[:, None]
    scale = tl.load(S_ptr + rn)
    if SWAP:
        acc = acc * scale[:, None]
        if HAS_BIAS:
            acc += tl.load(B_ptr + rn).to(tl.float32)[:, None]
        y_ptrs = Y_ptr + offs_m[None, :].to(tl.int64) * stride_ym + offs_n[:, None]
        y_mask = (offs_n[:, None] < N) & (offs_m[None, :] < M)
    else:
        acc = acc * scale[None, :]
        if HAS_BIAS:
            acc += tl.load(B_ptr + rn).to(tl.float32)[None, :]
        y_ptrs = Y_ptr + offs_m[:, None].to(tl.int64) * stride_ym + offs_n[None, :]
        y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(y_ptrs, to_dtype(acc, Y_ptr.dtype.element_ty), mask=y_mask)


@triton.jit
def _to_f32(x):
    """A 16/32-bit float tile -> float32; bf16 by a 16-bit shift (a full-rate integer op, not a conversion)."""
    if x.dtype == tl.bfloat16:
        return (x.to(tl.int16, bitcast=True).to(tl.int32) << 16).to(tl.float32, bitcast=True)
    else:
        return x.to(tl.float32)


@triton.jit
def _rope_epilogue(
    out,
    pid_n,
    N,
    Y_ptr,
    COS_ptr,
    SIN_ptr,
    KC_ptr,
    VC_ptr,
    SLOT_ptr,
    stride_cb,
    stride_co,
    stride_ch,
    q_cols,
    kv_cols,
    block_size,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    ROT: tl.constexpr,
):
    """One row's BLOCK_N columns of [q | k | v] (float32, bias added): rounded to the output dtype (as the
    unfused projection stores them), the (even, odd) pairs of the first ROT dims of each q and k head turned
    by cos/sin (``kernels.rotary``; BLOCK_N is even, so a program holds whole pairs), rounded again, stored
    to Y; the k and v columns also go to their cache slot (none for a negative slot)."""
    dtype: tl.constexpr = Y_ptr.dtype.element_ty
    v = to_dtype(tl.reshape(out, (BLOCK_N,)), dtype).to(tl.float32)
    even, odd = tl.split(tl.reshape(v, (BLOCK_N // 2, 2)))
    col_e = pid_n * BLOCK_N + 2 * tl.arange(0, BLOCK_N // 2)
    d = col_e % HEAD_DIM
    turn = (d < ROT) & (col_e < q_cols + kv_cols)
    c = tl.load(COS_ptr + d // 2, mask=turn, other=1.0)
    s = tl.load(SIN_ptr + d // 2, mask=turn, other=0.0)
    r = to_dtype(tl.reshape(tl.join(even * c - odd * s, odd * c + even * s), (BLOCK_N,)), dtype)
    col = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    tl.store(Y_ptr + col, r, mask=col < N)
    slot = tl.load(SLOT_ptr)
    if slot >= 0:
        base = (slot // block_size).to(tl.int64) * stride_cb + (slot % block_size).to(tl.int64) * stride_co
        is_k = (col >= q_cols) & (col < q_cols + kv_cols)
        is_v = (col >= q_cols + kv_cols) & (col < N)
        kc = tl.where(is_k, col - q_cols, 0)
        vc = tl.where(is_v, col - q_cols - kv_cols, 0)
        tl.store(
            KC_ptr + base + (kc // HEAD_DIM) * stride_ch + kc % HEAD_DIM,
            r.to(KC_ptr.dtype.element_ty),
            mask=is_k,
        )
        tl.store(
            VC_ptr + base + (vc // HEAD_DIM) * stride_ch + vc % HEAD_DIM,
            r.to(VC_ptr.dtype.element_ty),
            mask=is_v,
        )


@triton.jit
def silu_mul(gate, up, dtype: tl.constexpr):
    """silu(gate) * up from float32 gate and up already rounded to ``dtype``: silu in float32 rounded to dtype,
    then the product rounded again, as transformers' GLM MLP rounds its unfused torch ops (``kernels.swiglu``
    and the gate/up epilogue both use this)."""
    act = to_dtype(gate * tl.sigmoid(gate), dtype).to(tl.float32)
    return to_dtype(act * up, dtype)


@triton.jit
def _swiglu_epilogue(out, pid_n, inter, Y_ptr, BLOCK_N: tl.constexpr):
    """One row's BLOCK_N / 2 gate sums and the up sums of the same columns (float32, scaled): rounded as the
    projection's store rounds, then silu(gate) * up rounded as ``kernels.swiglu`` rounds it, stored to Y."""
    dtype: tl.constexpr = Y_ptr.dtype.element_ty
    v = to_dtype(tl.reshape(out, (BLOCK_N,)), dtype).to(tl.float32)
    gate, up = tl.split(tl.permute(tl.reshape(v, (2, BLOCK_N // 2)), (1, 0)))
    j = pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(Y_ptr + j, silu_mul(gate, up, dtype), mask=j < inter)


# The rows' second int8 plane holds what the first leaves over, in LO_STEPS steps of one first-plane unit:
# x = sx * (hi + lo / LO_STEPS), |hi|, |lo| <= 127 (see ``split_rows``; the arithmetic is int8_ws's)
LO_STEPS = int8_ws.LO_STEPS


@triton.jit
def _split_rows_kernel(X_ptr, P_ptr, SX_ptr, M, K, stride_xm, BLOCK_K: tl.constexpr, PDL: tl.constexpr):
    """One program per row m of X (M, K) 16/32-bit: sx = max|x| / 127, hi = round(x / sx) and
    lo = round((x / sx - hi) * LO_STEPS), both in [-127, 127], written as P[0, m] and P[1, m] (int8 (2, M, K))."""
    pdl_trigger(PDL)
    pdl_wait(PDL)
    m = tl.program_id(0)
    offs = tl.arange(0, BLOCK_K)
    x_row = X_ptr + m.to(tl.int64) * stride_xm
    peak = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        x = tl.load(x_row + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)
        peak = tl.maximum(peak, tl.abs(x))
    sx = int8_ws.row_scale(tl.max(peak, axis=0))
    tl.store(SX_ptr + m, sx)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs
        t = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32) / sx
        int8_ws.store_planes(P_ptr, m, k, k < K, K, M, t)


def split_rows(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x2 (M, K) 16/32-bit -> (planes int8 (2, M, K), sx float32 (M,)) with x2 ~= sx * (hi + lo / 254): the
    rows as two int8 planes for the int8 x int8 tensor-core path (``IMMA``). Error per element <= max|row| /
    (2 * 127 * 254) (~1.6e-5 of the row's largest value): below bf16's own rounding of any element within
    2^-6 of that largest value, and the dots are then exact in int32."""
    M, K = x2.shape
    planes = torch.empty((2, M, K), dtype=torch.int8, device=x2.device)
    sx = torch.empty(M, dtype=torch.float32, device=x2.device)
    pdl = pdl_enabled(x2)
    _split_rows_kernel[(M,)](
        x2,
        planes,
        sx,
        M,
        K,
        x2.stride(0),
        BLOCK_K=min(1024, next_pow2(K)),
        PDL=pdl,
        num_warps=4,
        launch_pdl=pdl,
    )
    return planes, sx


def imma_mode() -> str:
    """AUTOGLM_W8_IMMA: 'auto' (default: measured per shape, ``use_imma``), 'on' (=1: the int8 x int8 path for
    every 16-bit product of 2..IMMA_ROWS rows) or 'off' (=0: never)."""
    value = os.environ.get("AUTOGLM_W8_IMMA", "auto").lower()
    return {"1": "on", "0": "off"}.get(value, value) if value in ("1", "0", "on", "off") else "auto"


_IMMA: dict[tuple, bool] = {}  # (row bucket, N, K, dtype, bias, device) -> the int8 x int8 path


def imma_eligible(x: torch.Tensor, M: int, rope: Rope | None = None, swiglu: bool = False) -> bool:
    """The products the int8 x int8 path can take: 2..IMMA_ROWS rows of 16-bit activations, no fused epilogue
    (one row stays on the FMA loop; float32 rows would lose precision to the planes)."""
    return 2 <= M <= IMMA_ROWS and x.dtype in (torch.float16, torch.bfloat16) and rope is None and not swiglu


def use_imma(x2: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether this eligible product (``imma_eligible``) splits its rows into int8 planes (``split_rows``) and
    runs on the int8 tensor cores, or converts the weights (few rows) / dequantizes them for cuBLAS (more).
    'auto' measures both once per (row bucket, N, K, dtype, bias) from IMMA_MIN_ROWS rows as CUDA-graph
    replays (``measure.decide``; the planes must win by its margin); the interpreter keeps the converting
    path unless forced 'on'.
    NOTE: H100 (RESULTS.md, "W8A16 on int8 tensor cores"), us, int8 x int8 vs the converting path: at 2-32
    rows it lost on the narrow layers (q/k/v 8 rows 13.9 vs 10.9: the planes' own launch and no conversion
    saved at 16-64 weight rows a tile) and won gate_up at 32-64 rows (48.9 vs 53.8, 52.9 vs 65.3); at 128-512
    rows it won almost everywhere (down 256 rows 78.0 vs 125.7, q/k/v 128 rows 24.0 vs 33.5); from 1,024 rows
    dequantize + cuBLAS won every layer (q/k/v 4,096 rows 220 vs 319)."""
    how = imma_mode()
    if how != "auto":
        return how == "on"
    if INTERPRET or x2.shape[0] < IMMA_MIN_ROWS:
        return False
    return _decide(_IMMA, next_pow2(x2.shape[0]), "imma", "int8 x int8", x2, qweight, scale, bias)


def _decide(memo: dict, bucket: int, switch: str, label: str, x2, qweight, scale, bias) -> bool:
    """``measure.decide`` between int8_linear_triton with ``switch`` (a keyword) on and off, once per
    (row bucket, N, K, dtype, bias, device) in ``memo``."""
    M, (N, K) = x2.shape[0], qweight.shape
    return measure.decide(
        memo,
        (bucket, N, K, x2.dtype, bias is not None, x2.device),
        lambda: int8_linear_triton(x2, qweight, scale, bias, **{switch: True}),
        lambda: int8_linear_triton(x2, qweight, scale, bias, **{switch: False}),
        f"int8 linear {M} rows x ({N}, {K}) {str(x2.dtype).removeprefix('torch.')}: {label}",
        (x2,),
    )


def _decisions(memo: dict, switch: str) -> list[dict]:
    return [
        {"rows_bucket": k[0], "N": k[1], "K": k[2], "dtype": str(k[3]), "bias": k[4], switch: v}
        for k, v in memo.items()
    ]


_WS: dict[tuple, bool] = {}  # (row bucket, N, K, dtype, bias, device) -> int8_ws


def use_ws(x2: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether an ``int8_ws.available`` product takes the warp-specialized int8 x int8 GEMM: AUTOGLM_W8_WS
    'on'/'off' forces it; 'auto' (the default) times it against the path it would otherwise take, once per
    (row bucket, N, K, dtype, bias), as CUDA-graph replays (``measure.decide``)."""
    how = os.environ.get("AUTOGLM_W8_WS", "auto").lower()
    if how in ("on", "1", "off", "0"):
        return how in ("on", "1")
    return _decide(_WS, int8_ws.row_bucket(x2.shape[0]), "ws", "warp-specialized", x2, qweight, scale, bias)


_GEMM_WS: dict[tuple, bool] = {}  # (row bucket, N, K, dtype, bias, device) -> int8_gemm_ws


# NOTE: off by default. The product path through it has run on an H100 (2026-12-07, `benchmarks/kernels.py
# --sections int8`, AUTOGLM_W8_GEMM_WS=on through ``int8_linear_triton``: rel. error 1.7e-3 at 256/1,024/4,096 rows
# of all four GLM-4-9B layers; faster than the path taken without it for gate_up at 256 and 1,024 rows, down at
# 1,024 and 4,096, o_proj at 1,024, slower for q/k/v everywhere), so 'auto' would pay off in INT8 prefill; what
# its per-shape timing and the kernel's compile add to an INT8 engine's start (with 'auto' the engine warms one
# eager chunk per row bucket up to max_num_batched_tokens) has not been measured against that gain
GEMM_WS_DEFAULT = "off"


def gemm_ws_mode() -> str:
    """AUTOGLM_W8_GEMM_WS: 'auto' (measured per shape, ``use_gemm_ws``), 'on' (=1) or 'off' (=0); unset:
    GEMM_WS_DEFAULT."""
    value = os.environ.get("AUTOGLM_W8_GEMM_WS", GEMM_WS_DEFAULT).lower()
    return {"1": "on", "0": "off"}.get(value, value) if value in ("1", "0", "on", "off") else "auto"


def use_gemm_ws(
    x2: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
) -> bool:
    """Whether an ``int8_gemm_ws.available`` product (>= its MIN_ROWS rows: prefill) takes the Gluon GEMM that
    converts the weights in registers: AUTOGLM_W8_GEMM_WS 'on'/'off' forces it (``gemm_ws_mode``); 'auto' times
    it against the path it would otherwise take (the int8-planes GEMM or dequantize + cuBLAS, itself chosen
    by ``use_imma``), once per (row bucket, N, K, dtype, bias), as CUDA-graph replays (``measure.decide``).
    NOTE: H100 (RESULTS.md "W8A16 at 4,096 rows as a Gluon GEMM"), against dequantize + cuBLAS: faster on the
    wide layers at 512-2,048 rows (gate_up 203.5 vs 277.1 us at 512 rows, down 166.4 vs 213.4 at 1,024),
    slower on q/k/v and o_proj there, 0.93-1.00x of it at 4,096 rows."""
    how = gemm_ws_mode()
    if how != "auto":
        return how == "on"
    bucket = next_pow2(x2.shape[0])
    return _decide(_GEMM_WS, bucket, "gemm_ws", "W8A16 Gluon GEMM", x2, qweight, scale, bias)


def gemm_ws_decisions() -> list[dict]:
    """What ``use_gemm_ws`` decided so far, per shape (benchmarks record it)."""
    return _decisions(_GEMM_WS, "gemm_ws")


def ws_decisions() -> list[dict]:
    """What ``use_ws`` decided so far, per shape (benchmarks record it)."""
    return _decisions(_WS, "ws")


def imma_decisions() -> list[dict]:
    """What this process decided so far, per shape (benchmarks record it)."""
    return _decisions(_IMMA, "imma")


@triton.jit
def _few_rows_dot(w, x_ptrs, x_mask, lo_rows, acc, acc_lo, IMMA: tl.constexpr, UPCAST: tl.constexpr,
                  QUANT: tl.constexpr, FAST: tl.constexpr, CVT: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """One K tile of the few-rows kernel's dot: acc (BLOCK_N, BLOCK_M) += W_tile @ X_tile.T. IMMA: x_ptrs
    point into the hi plane, ``lo_rows`` elements further is the lo plane; two int8 dots into int32 (acc,
    acc_lo). Otherwise acc_lo is passed through."""
    if IMMA:
        acc = tl.dot(w, tl.load(x_ptrs, mask=x_mask, other=0), acc, out_dtype=tl.int32)
        acc_lo = tl.dot(w, tl.load(x_ptrs + lo_rows, mask=x_mask, other=0), acc_lo, out_dtype=tl.int32)
    else:
        x = tl.load(x_ptrs, mask=x_mask, other=0.0)
        if UPCAST and QUANT:
            acc = tl.dot(
                int8_to_float(w, tl.float32, FAST, True), x.to(tl.float32), acc, input_precision=PRECISION
            )
        elif UPCAST:
            acc = tl.dot(w.to(tl.float32), x.to(tl.float32), acc, input_precision=PRECISION)
        elif QUANT:
            acc = tl.dot(_convert_operand(w, x.dtype, FAST, CVT), x, acc, input_precision=PRECISION)
        else:
            acc = tl.dot(w, x, acc, input_precision=PRECISION)
    return acc, acc_lo


@triton.jit
def _int8_few_rows_kernel(
    X_ptr,
    W_ptr,
    S_ptr,
    B_ptr,
    Y_ptr,
    P_ptr,
    C_ptr,
    SX_ptr,
    COS_ptr,
    SIN_ptr,
    KC_ptr,
    VC_ptr,
    SLOT_ptr,
    M,
    N,
    K,
    M_BUCKET,
    stride_xm,
    stride_wn,
    stride_ym,
    stride_cb,
    stride_co,
    stride_ch,
    q_cols,
    kv_cols,
    block_size,
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    FAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
    DOT: tl.constexpr,
    STAGES: tl.constexpr,
    CVT: tl.constexpr,
    QUANT: tl.constexpr,
    PDL: tl.constexpr,
    PRE_BYTES: tl.constexpr,
    ROPE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    ROT: tl.constexpr,
    SWIGLU: tl.constexpr,
    IMMA: tl.constexpr = False,
):
    """Few activation rows (decode, M <= BLOCK_M): bound by the int8 weight stream, so the grid is
    (N tiles, K splits) and each program streams BLOCK_N weight rows over its 1/SPLIT_K share of K.
    DOT: acc (BLOCK_N, BLOCK_M) = W_tile @ X_tile.T on the tensor cores (the converted weights are the
    dot's first operand, so one 16-row dot covers 1..32 rows); otherwise (one row) elementwise FMAs into a
    (BLOCK_N, BLOCK_K) float32 tile, reduced once after the loop. The per-column scale is applied once,
    after the K loop. SPLIT_K == 1 stores y (+ bias); otherwise the scaled float32 partial goes to
    P[split] (SPLIT_K, M, N), and the last split of the column tile to arrive (counted in C[pid_n], int32,
    zero between launches) sums them into y.
    QUANT: int8 weights and a per-column scale; otherwise the weights are 16-bit (the same dtype as x) and
    multiply as they are (no scale): ``skinny_linear_triton``, for 16-bit layers at few rows.
    ROPE (one row, one split: a decode step's fused q/k/v projection): the epilogue rounds the row as the
    plain store would, turns GLM's interleaved rotary pairs of the q and k columns (``_rope_epilogue``), stores
    the row, and writes its k and v columns into the cache slot SLOT[0].
    SWIGLU (one row, one split: a decode step's fused gate/up projection, W = [gate; up], N = 2I): a program
    takes BLOCK_N / 2 gate rows and the up rows of the same columns, and its epilogue stores
    silu(gate) * up (``_swiglu_epilogue``), so Y is (1, I) and SiLU-and-multiply is not a launch of its own.
    IMMA (DOT, int8 weights): X is not the 16-bit rows but their two int8 planes from ``_split_rows_kernel``
    (hi rows 0..M-1, then lo rows M..2M-1, stride_xm = K) with row scales SX: two int8 x int8 dots into
    int32 (the weights are never converted), combined once after the loop as (hi + lo / LO_STEPS) * SX."""
    pdl_trigger(PDL)
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if SWIGLU:
        # the first half of the tile: gate rows j, the second: the up rows I + j of the same columns j
        half: tl.constexpr = BLOCK_N // 2
        r = tl.arange(0, BLOCK_N)
        jr = (pid_n * half + r % half) % (N // 2)
        rn = (jr + (r >= half).to(tl.int32) * (N // 2)).to(tl.int64)
    else:
        # wrap out-of-range columns onto valid rows of W; their results are masked at the store
        rn = (offs_n % N).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    k_per = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    k_lo = split * k_per
    k_hi = tl.minimum(k_lo + k_per, K)
    # under PDL: the first weight columns of this program are loaded before waiting for the previous kernels
    # (weights never depend on them), so they stream while those kernels run. One row: PRE_BYTES of its rows,
    # summed after the loop; DOT: the first whole K tile when it holds at most 2 * PRE_BYTES, multiplied just
    # after the wait. Whole K tiles either way, so the loop's tiles stay inside the split (powers of two).
    W_BYTES: tl.constexpr = 1 if QUANT else 2
    PRE_RAW: tl.constexpr = (
        (BLOCK_K if BLOCK_N * BLOCK_K * W_BYTES <= 2 * PRE_BYTES else 0)
        if DOT
        else PRE_BYTES // (BLOCK_N * W_BYTES)
    )
    PRE_K: tl.constexpr = PRE_RAW if PRE_RAW >= BLOCK_K else 0
    if PRE_K > 0:
        # all or nothing (a split shorter than PRE_K preloads nothing): a uniform mask keeps the loads 16 bytes wide
        pre_on = k_lo + PRE_K <= k_hi
        pre_cols = k_lo + tl.arange(0, PRE_K)
        w_pre = tl.load(
            W_ptr + rn[:, None] * stride_wn + pre_cols[None, :],
            mask=tl.full((BLOCK_N, PRE_K), 1, tl.int1) & pre_on,
            other=0,
        )
        k_lo = tl.where(pre_on, k_lo + PRE_K, k_lo)
    pdl_wait(PDL)
    w_ptrs = W_ptr + rn[:, None] * stride_wn + (k_lo + offs_k)[None, :]
    offs_m = tl.arange(0, BLOCK_M)
    if DOT:
        x_ptrs = X_ptr + offs_m[None, :].to(tl.int64) * stride_xm + (k_lo + offs_k)[:, None]
        if IMMA:
            lo_rows = M.to(tl.int64) * stride_xm  # the lo plane follows the hi plane
            acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.int32)
            acc_lo = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.int32)
        else:
            lo_rows = 0
            acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
            acc_lo = acc
        if PRE_K > 0:
            # the preloaded tile (zeros when the split is shorter than a tile: then the loop covers it all)
            x_pre = X_ptr + offs_m[None, :].to(tl.int64) * stride_xm + pre_cols[:, None]
            pre_mask = (pre_cols[:, None] < tl.where(pre_on, k_hi, 0)) & (offs_m[None, :] < M)
            acc, acc_lo = _few_rows_dot(
                w_pre, x_pre, pre_mask, lo_rows, acc, acc_lo, IMMA, UPCAST, QUANT, FAST, CVT, PRECISION
            )
    else:
        x_ptrs = X_ptr + k_lo + offs_k
        acc2 = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    # explicit loop stages: Triton's launch-level num_stages pipelines only loads that feed a dot directly;
    # tl.range's pipelines the FMA loop's weight loads too (cp.async, STAGES tiles in flight)
    for k0 in tl.range(k_lo, k_hi, BLOCK_K, num_stages=STAGES):
        if EVEN_K:
            w = tl.load(w_ptrs)
        else:
            w = tl.load(w_ptrs, mask=(k0 + offs_k)[None, :] < K, other=0)
        if DOT:
            # rows past M issue no loads (wrapping them would re-read x up to 16 times)
            x_mask = ((k0 + offs_k)[:, None] < K) & (offs_m[None, :] < M)
            acc, acc_lo = _few_rows_dot(
                w, x_ptrs, x_mask, lo_rows, acc, acc_lo, IMMA, UPCAST, QUANT, FAST, CVT, PRECISION
            )
            x_ptrs += BLOCK_K
        else:
            if EVEN_K:
                x = tl.load(x_ptrs)
            else:
                x = tl.load(x_ptrs, mask=k0 + offs_k < K, other=0.0)
            xf = _to_f32(x)
            if QUANT:
                acc2 += int8_to_float(w, tl.float32, FAST, True) * xf[None, :]
            else:
                acc2 += _to_f32(w) * xf[None, :]
            x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    if DOT and IMMA:
        sx = tl.load(SX_ptr + offs_m, mask=offs_m < M, other=0.0)
        out = (acc.to(tl.float32) + acc_lo.to(tl.float32) * (1.0 / LO_STEPS)) * sx[None, :]
    elif DOT:
        out = acc
    else:
        out = tl.sum(acc2, axis=1)[:, None]  # (BLOCK_N, 1): the one row
        if PRE_K > 0:
            x_pre = _to_f32(tl.load(X_ptr + pre_cols, mask=tl.full((PRE_K,), 1, tl.int1) & pre_on, other=0.0))
            if QUANT:
                w_pre = int8_to_float(w_pre, tl.float32, FAST, True)
            else:
                w_pre = _to_f32(w_pre)
            out += tl.sum(w_pre * x_pre[None, :], axis=1)[:, None]
    if QUANT:
        out = out * tl.load(S_ptr + rn)[:, None]
    col = offs_n[:, None]
    if DOT:
        row = offs_m[None, :]
        mask = (col < N) & (row < M)
    else:
        row = tl.zeros((1, 1), dtype=tl.int32)
        mask = col < N
    if SPLIT_K == 1:
        if HAS_BIAS:
            out += tl.load(B_ptr + rn).to(tl.float32)[:, None]
        if SWIGLU:
            _swiglu_epilogue(out, pid_n, N // 2, Y_ptr, BLOCK_N)
        elif ROPE:
            _rope_epilogue(
                out, pid_n, N, Y_ptr, COS_ptr, SIN_ptr, KC_ptr, VC_ptr, SLOT_ptr, stride_cb, stride_co,
                stride_ch, q_cols, kv_cols, block_size, BLOCK_N, HEAD_DIM, ROT,
            )  # fmt: skip
        else:
            tl.store(
                Y_ptr + row.to(tl.int64) * stride_ym + col, to_dtype(out, Y_ptr.dtype.element_ty), mask=mask
            )
    else:
        p_ptrs = P_ptr + (split * M + row).to(tl.int64) * N + col
        tl.store(p_ptrs, out, mask=mask)
        # serial split-K: the last split of this column tile to arrive sums the partials, so no second
        # launch. The barrier orders every thread's partial store before the (cumulative) acq_rel counter
        # update; partials are read from L2 (.cg); the counter goes back to 0 for the next launch.
        tl.debug_barrier()
        arrived = tl.atomic_add(C_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            total = tl.zeros(out.shape, dtype=tl.float32)
            for s in tl.static_range(SPLIT_K):
                total += tl.load(p_ptrs + (s - split) * M * N, mask=mask, other=0.0, cache_modifier=".cg")
            if HAS_BIAS:
                total += tl.load(B_ptr + rn).to(tl.float32)[:, None]
            tl.store(
                Y_ptr + row.to(tl.int64) * stride_ym + col, to_dtype(total, Y_ptr.dtype.element_ty), mask=mask
            )
            tl.store(C_ptr + pid_n, 0)


# one row, FMA: (BLOCK_N, BLOCK_K, STAGES, num_warps): int8 weights of layers narrower than WIDE_N, and
# int8 weights of wider layers and every 16-bit weight; 2..FEW_ROWS rows, tensor cores: (BLOCK_N, BLOCK_K,
# STAGES, CVT, num_warps). From the H200 sweeps (benchmarks/int8_sweep.py, RESULTS.md "Third pass"; one-row
# tiles again in benchmarks/skinny.py --one-row): the one-row loop needs its weight loads pipelined 4-6 tiles
# deep, and a K split never paid for one row; narrow dot tiles (32-64 weight rows) with K splits win at <= 32
# rows. The 2- and 1-warp tiles (row buckets up to FEW_WARP_ROWS): ncu showed the 4-warp 8-row q/k/v config
# at 13% achieved occupancy (288 programs, 2 warps a scheduler, half of them stalled); with fewer warps a
# program more programs fit, and at 8 rows they won on every layer, at 32 rows on none (`int8_sweep.py
# --parts occ`, RESULTS.md "More programs at 8 rows").
# NOTE: one row takes a fixed tile, not the autotuner's pick: its eager timings of these ~10 us kernels
# picked configs 5-8% slower than the best under CUDA-graph replay (the engine's decode).
FMA_TILES = ((8, 512, 4, 4), (8, 256, 6, 2))
WIDE_N = 16384
FEW_WARP_ROWS = 16
DOT_TILES = ((32, 256, 3, 0, 4), (64, 256, 3, 0, 4), (64, 256, 3, 1, 4), (64, 128, 4, 0, 4), (128, 128, 3, 1, 4),
             (32, 256, 3, 0, 2), (32, 128, 4, 0, 2), (16, 256, 3, 0, 1))  # fmt: skip
# 16-bit weights (BLOCK_N, BLOCK_K, STAGES; 4 warps): no conversion, twice the bytes a tile. From an H200 sweep at
# 8-64 rows (benchmarks/skinny.py --sweep, RESULTS.md): these three won or came within 2% of the best
# everywhere; 128x128 and 256x64 tiles and 8 K splits never won, and at 64 rows each extra split cost
# 10-40% (the float32 partials grow with the rows).
DOT_TILES_16 = ((64, 256, 3), (64, 128, 4), (128, 64, 4))


def _few_rows_configs() -> list[triton.Config]:
    dot = [
        triton.Config(
            {
                "BLOCK_M": bm,
                "BLOCK_N": bn,
                "BLOCK_K": bk,
                "SPLIT_K": sk,
                "DOT": True,
                "STAGES": st,
                "CVT": cvt,
            },
            num_warps=w,
            num_stages=st,
        )
        for bm in (16, 32, 64)
        for bn, bk, st, cvt, w in dict.fromkeys(
            DOT_TILES + tuple((bn, bk, st, 0, 4) for bn, bk, st in DOT_TILES_16)
        )
        for sk in (1, 2, 4, 8)
    ]
    fma = [
        triton.Config(
            {
                "BLOCK_M": 16,
                "BLOCK_N": bn,
                "BLOCK_K": bk,
                "SPLIT_K": 1,
                "DOT": False,
                "STAGES": st,
                "CVT": 0,
            },
            num_warps=w,
            num_stages=st,
        )
        for bn, bk, st, w in FMA_TILES
    ]
    return dot + fma


def max_split_k(rows: int, col_bytes: int) -> int:
    """Most K splits for ``rows`` rows: the float32 partials' round trip (8 bytes per row and split) stays
    under half of a column's weight bytes (``col_bytes``: K for int8, 2K for 16-bit weights), and at most
    MAX_SPLIT_K (the autotuner times the final sum too, so this only bounds the candidates)."""
    return max(1, min(MAX_SPLIT_K, next_pow2(col_bytes // (16 * rows) + 1) // 2))


def _prune_few_rows(configs, named_args, **kwargs):
    """One row: the FMA config for the weight's dtype and the layer's width (FMA_TILES). More rows: the dot configs with the
    smallest row tile covering M (a wider one only multiplies zeros), then: at least one program per two multiprocessors (fewer leave too many
    without weight rows to stream), splits only while the unsplit grid is under four programs per
    multiprocessor (a split adds a partial-sum round trip), >= 2 K tiles per program (a pipeline needs tiles to overlap), and no more splits than
    ``max_split_k``."""
    M, N, K, bucket = named_args["M"], named_args["N"], named_args["K"], named_args["M_BUCKET"]
    if M == 1:
        tile = FMA_TILES[N >= WIDE_N or named_args["W_ptr"].dtype != torch.int8][:2]
        return [
            c for c in configs if not c.kwargs["DOT"] and (c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]) == tile
        ]
    sms = device_sms(named_args["X_ptr"])
    m_tile = max(16, next_pow2(M))
    kept = []
    for c in configs:
        kw = c.kwargs
        if not kw["DOT"] or kw["BLOCK_M"] != m_tile:
            continue
        tile = (kw["BLOCK_N"], kw["BLOCK_K"], kw["STAGES"])
        if named_args["W_ptr"].dtype == torch.int8:
            if kwargs.get("IMMA") and kw["CVT"]:
                continue  # nothing to convert: CVT only places the int8 conversion
            if (*tile, kw["CVT"], c.num_warps) not in DOT_TILES or (
                c.num_warps < 4 and bucket > FEW_WARP_ROWS
            ):
                continue
        elif tile not in DOT_TILES_16 or kw["CVT"] or c.num_warps != 4 or kw["SPLIT_K"] > 4:
            continue  # CVT only places the int8 conversion
        tiles = triton.cdiv(N, kw["BLOCK_N"])
        programs = tiles * kw["SPLIT_K"]
        k_tiles = triton.cdiv(triton.cdiv(K, kw["SPLIT_K"]), kw["BLOCK_K"])
        # NOTE: the bound uses the row bucket (the autotune key), as the launcher's partial buffer does
        if (
            2 * programs >= sms
            and (kw["SPLIT_K"] == 1 or tiles < 4 * sms)
            and k_tiles >= 2
            and kw["SPLIT_K"] <= max_split_k(bucket, K * named_args["W_ptr"].element_size())
        ):
            kept.append(c)
    if kept:
        return kept
    # tiny layers: the narrowest tile, no split
    fallback = [
        c
        for c in configs
        if c.kwargs["SPLIT_K"] == 1
        and c.kwargs["DOT"] == (M > 1)
        and (M == 1 or c.kwargs["BLOCK_M"] == m_tile)
    ]
    return fallback[:1]


_few_rows = autotune(
    configs=_few_rows_configs(),
    key=["M_BUCKET", "N", "K", "IMMA"],
    prune_configs_by={"early_config_prune": _prune_few_rows},
)(triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(_int8_few_rows_kernel))


@triton.jit
def _dequant_kernel(W_ptr, S_ptr, Y_ptr, K, stride_wn, stride_yn, BLOCK_K: tl.constexpr):
    """One weight row slice: y = qweight * scale, rounded once to the activation dtype."""
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = offs < K
    w = tl.load(W_ptr + n * stride_wn + offs, mask=mask, other=0).to(tl.float32)
    tl.store(
        Y_ptr + n * stride_yn + offs, to_dtype(w * tl.load(S_ptr + n), Y_ptr.dtype.element_ty), mask=mask
    )


def dequantize_triton(
    qweight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, K) int8 * scale[:, None] -> (N, K) ``dtype`` (one pass: N*K bytes read, 2*N*K written), into
    ``out`` (contiguous (N, K) ``dtype``) if given."""
    N, K = qweight.shape
    y = out_tensor(out, (N, K), qweight, dtype)
    block = min(4096, next_pow2(K))
    _dequant_kernel[(N, triton.cdiv(K, block))](
        qweight, scale, y, K, qweight.stride(0), y.stride(0), BLOCK_K=block
    )
    return y


def _gemm_configs(tiles) -> list[triton.Config]:
    """GEMM configs of (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) tiles, usual orientation."""
    return [
        triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_N": 8, "SWAP": False, "CVT": 0},
            num_warps=w,
            num_stages=s,
        )
        for bm, bn, bk, w, s in tiles
    ]


def _many_rows_configs() -> list[triton.Config]:
    return _gemm_configs(((128, 128, 64, 4, 4), (128, 128, 64, 8, 4), (256, 128, 64, 8, 3), (128, 256, 64, 8, 3),
                          (128, 64, 64, 4, 4), (64, 128, 64, 4, 4)))  # fmt: skip


def _prune_many_rows(configs, named_args, **kwargs):
    """Drop row tiles wider than the rows present (e.g. 256-row tiles for M=64): pure padding work."""
    m = named_args["M"]
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= max(64, next_pow2(m))]
    return kept or configs[:1]


# IMMA tiles (BLOCK_M per plane, BLOCK_N, BLOCK_K, warps, stages): two int32 accumulators a tile, so at most
# 128 accumulator registers a thread; no conversion, so K tiles of 128 fit the shared memory
IMMA_MANY_TILES = ((64, 128, 128, 4, 4), (64, 256, 128, 8, 3), (128, 128, 128, 8, 3), (64, 128, 64, 4, 5),
                   (128, 128, 64, 8, 4))  # fmt: skip


def _many_rows_imma_configs() -> list[triton.Config]:
    return _gemm_configs(IMMA_MANY_TILES)


_int8_matmul = triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(
    _int8_matmul_kernel
)
_many_rows = autotune(
    configs=_many_rows_configs(),
    key=["M_BUCKET", "N", "K"],
    prune_configs_by={"early_config_prune": _prune_many_rows},
)(_int8_matmul)
_many_rows_imma = autotune(
    configs=_many_rows_imma_configs(),
    key=["M_BUCKET", "N", "K"],
    prune_configs_by={"early_config_prune": _prune_many_rows},
)(_int8_matmul)
# the int8 x int8 path is measured from this many rows (below, it never won by more than the margin on the
# H100, and each row bucket measured costs its own autotuning at start-up), forced from 2
IMMA_MIN_ROWS = 17
# the int8 x int8 path is measured (or forced) up to this many rows; more: dequantize + cuBLAS (H100: from
# 1,024 rows it lost every GLM-4-9B layer, 0.55-0.73x of bf16 against 0.71-0.91x dequantized)
IMMA_ROWS = 1024


def int8_linear_triton(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: dict | None = None,
    out: torch.Tensor | None = None,
    rope: Rope | None = None,
    swiglu: bool = False,
    imma: bool | None = None,
    ws: bool | None = None,
    gemm_ws: bool | None = None,
) -> torch.Tensor:
    """x (..., K) @ dequant(qweight (N, K) int8, scale (N,) float32).T + bias -> (..., N) in x.dtype.

    Up to FEW_ROWS rows run the split-K few-rows kernel, up to DEQUANT_ROWS rows the GEMM kernel, more rows
    dequantize + cuBLAS. ``config`` forces one block config instead of autotuning: with SPLIT_K
    (BLOCK_N/BLOCK_K/SPLIT_K/DOT, BLOCK_M) the few-rows kernel, else (BLOCK_M/BLOCK_N/BLOCK_K/GROUP_N/SWAP) the
    GEMM; the CPU interpreter runs fixed small ones. ``rope``: one row only, the fused rotary + cache epilogue.
    ``swiglu``: one row only, qweight = [gate; up] -> silu(gate) * up (..., N // 2) (``_swiglu_epilogue``).
    ``imma``: whether 2..IMMA_ROWS 16-bit rows take the int8 x int8 path (None: ``use_imma`` decides; a
    ``config`` says it with its IMMA key instead). ``ws``: whether 2..WS_ROWS 16-bit rows on an H100/H200
    take ``int8_ws`` (the warp-specialized int8 x int8 GEMM; None: ``use_ws`` decides). ``gemm_ws``: whether
    int8_gemm_ws.MIN_ROWS or more 16-bit rows on an H100/H200 take ``int8_gemm_ws`` (the Gluon GEMM converting
    the weights in registers, its row tile from ``int8_gemm_ws.pick``; None: ``use_gemm_ws`` decides).
    """
    check_float("x", x)
    if qweight.dtype != torch.int8 or qweight.dim() != 2 or x.shape[-1] != qweight.shape[1]:
        raise ValueError(
            f"expected x (..., K) and int8 qweight (N, K), got {tuple(x.shape)}, {qweight.dtype} {tuple(qweight.shape)}"
        )
    N, K = qweight.shape
    if scale.shape != (N,) or scale.dtype != torch.float32:
        raise ValueError(f"scale must be float32 ({N},), got {scale.dtype} {tuple(scale.shape)}")
    x2, qweight, y, lead, done = _operands(x, qweight, bias, out, swiglu)
    if done is not None:
        return done
    M = x2.shape[0]
    assert x.dtype in TORCH_TO_TL, f"{x.dtype=}"
    _check_epilogue(rope, swiglu, M, bias)
    if (
        config is None
        and imma is None
        and rope is None
        and not swiglu
        and ws is not False
        and int8_ws.available(x2, qweight)
        and (ws or use_ws(x2, qweight, scale, bias))
    ):
        return int8_ws.ws_linear(x2, qweight, scale, bias, y).reshape(*lead, N)
    if (
        config is None
        and imma is None
        and rope is None
        and not swiglu
        and gemm_ws is not False
        and y.is_contiguous()
        and int8_gemm_ws.available(x2, qweight)
        and (gemm_ws or use_gemm_ws(x2, qweight, scale, bias))
    ):
        cfg = int8_gemm_ws.pick(M, N, device_sms(x))
        return int8_gemm_ws.gemm_w8(x2, qweight, scale, bias, config=cfg, out=y).reshape(*lead, N)
    m_bucket = next_pow2(M) if M <= FEW_ROWS else min(next_pow2(M), 4096)
    args = (
        x2,
        qweight,
        scale,
        bias if bias is not None else scale,
        y,
        M,
        N,
        K,
        m_bucket,
        x2.stride(0),
        qweight.stride(0),
        y.stride(0),
    )

    precision = dot_precision(x.dtype)

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    if config is not None:
        imma = config.get("IMMA", False)
        if imma and (
            x.dtype == torch.float32 or config.get("SWAP") or ("SPLIT_K" in config and not config.get("DOT"))
        ):
            raise ValueError(
                f"the int8 x int8 path takes 16-bit rows, a DOT config (few rows) and SWAP off (the GEMM), "
                f"got {x.dtype}, {config}"
            )
        imma = imma and M > 1 and rope is None and not swiglu  # one row and the fused epilogues convert
    elif imma is None:
        imma = imma_eligible(x2, M, rope, swiglu) and use_imma(x2, qweight, scale, bias)
    else:
        imma = imma and imma_eligible(x2, M, rope, swiglu)
    # from here on ``imma``: the rows go as int8 planes (few-rows kernel, or the GEMM past FEW_ROWS rows)
    imma_many = imma and M > FEW_ROWS
    if (
        config is None
        and rope is None
        and not swiglu
        and not imma_many
        and (M >= DEQUANT_ROWS or (M > FEW_ROWS and triton.cdiv(N, 128) < device_sms(x)))
    ):
        # NOTE: prefill-sized products are compute bound, and our in-GEMM dequantization reached only
        # 0.42-0.76x of cuBLAS bf16 at 256..4096 rows (H200, GLM-4-9B shapes); dequantizing to a transient
        # bf16 copy (3 bytes of traffic per weight, 14-44 us for these layers) and calling cuBLAS measured
        # 0.92-1.02x of bf16 at 4096 rows, and by the same parts is ahead of the in-GEMM path from ~256 rows.
        # Between FEW_ROWS and DEQUANT_ROWS the GEMM kernel (no split K) only fills the GPU for wide layers
        # (N / 128 >= SMs, e.g. gate_up); narrower ones (qkv, o_proj, down) measured faster dequantized
        # (H200, 128 rows: o_proj 27 vs 38 us, down 85 vs 121 us; gate_up 151 vs 76 us the other way).
        w = dequantize_triton(qweight, scale, x.dtype)
        torch.matmul(x2, w.T, out=y)
        if bias is not None:
            y += bias
        return y.reshape(*lead, N)
    if rope is not None or swiglu or (M <= FEW_ROWS and (config is None or "SPLIT_K" in config)):
        sx = None
        if imma:
            planes, sx = split_rows(x2)
            args = (planes.view(2 * M, K), *args[1:9], K, *args[10:])
        if config is not None:
            config = {k: v for k, v in config.items() if k != "IMMA"}
        _few_rows_launch(args, M, N, K, x, bias, config, rope, swiglu, sx)
        return y.reshape(*lead, y.shape[-1])
    sx = y  # row scales: unused unless IMMA
    if imma_many:
        planes, sx = split_rows(x2)
        args = (planes.view(2 * M, K), *args[1:9], K, *args[10:])
    if INTERPRET and config is None:
        config = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_N": 2, "SWAP": not imma_many}
    if config is not None:
        config = {"CVT": 0, **config, "IMMA": imma_many}
        fast = fast_cvt_fits(config["BLOCK_N"] * config["BLOCK_K"], config.get("num_warps", 4))
        _int8_matmul[grid(config)](
            *args, sx, HAS_BIAS=bias is not None, UPCAST=UPCAST_DOT, PRECISION=precision, FAST=fast, **config
        )
    else:
        (_many_rows_imma if imma_many else _many_rows)[grid](
            *args, sx, HAS_BIAS=bias is not None, UPCAST=UPCAST_DOT, PRECISION=precision, FAST=FAST_CVT,
            IMMA=imma_many,
        )  # fmt: skip
    return y.reshape(*lead, N)


def _few_rows_launch(
    args,
    M: int,
    N: int,
    K: int,
    x: torch.Tensor,
    bias,
    config: dict | None,
    rope: Rope | None = None,
    swiglu: bool = False,
    sx: torch.Tensor | None = None,
) -> None:
    """The split-K few-rows kernel (autotuned, or ``config``); ``rope``: the fused rotary + cache epilogue;
    ``swiglu``: the SiLU-and-multiply epilogue; ``sx``: args' x is ``split_rows``' planes and these its row
    scales (IMMA)."""
    one_split = rope is not None or swiglu
    if INTERPRET and config is None:
        config = {"BLOCK_M": max(16, next_pow2(M)), "BLOCK_N": 8, "BLOCK_K": 32, "SPLIT_K": 1 if one_split else 2,
                  "DOT": M > 1}  # fmt: skip
    max_split = max_split_k(next_pow2(M), K * args[1].element_size()) if config is None else config["SPLIT_K"]
    # float32 partial sums of every split (only written when the chosen config splits K)
    part = torch.empty((max_split, M, N), dtype=torch.float32, device=x.device)
    quant = args[1].dtype == torch.int8
    kw = dict(
        HAS_BIAS=bias is not None,
        UPCAST=UPCAST_DOT,
        PRECISION=dot_precision(x.dtype),
        FAST=FAST_CVT,
        QUANT=quant,
        PDL=(pdl := pdl_enabled(x)),
        PRE_BYTES=preload_bytes(M) if pdl else 0,
        ROPE=rope is not None,
        HEAD_DIM=rope.k_cache.shape[-1] if rope else 1,
        ROT=2 * rope.cos.shape[-1] if rope else 0,
        SWIGLU=swiglu,
        IMMA=sx is not None,
        launch_pdl=pdl,
    )
    y = args[4]
    if rope is None:
        # unused by the kernel without ROPE: any pointer (and zero strides) will do
        rope_ptrs, rope_ints = (y, y, y, y, y), (0, 0, 0, 0, 0, 1)
    else:
        kc = rope.k_cache
        rope_ptrs = (rope.cos, rope.sin, kc, rope.v_cache, rope.slot_mapping)
        rope_ints = (kc.stride(0), kc.stride(1), kc.stride(2), rope.q_cols, rope.kv_cols, kc.shape[1])
    launch_args = (
        *args[:5],
        part,
        _split_counters(x.device, triton.cdiv(N, 4)),
        sx if sx is not None else part,  # row scales (IMMA only)
        *rope_ptrs,
        *args[5:],
        *rope_ints,
    )

    def grid(meta):
        return (triton.cdiv(N, meta["BLOCK_N"]), meta["SPLIT_K"])

    if config is not None:
        cfg = {"num_warps": 4, "STAGES": 2, "CVT": 0, **config}
        cfg.setdefault("BLOCK_M", max(16, next_pow2(M)))
        if cfg["BLOCK_M"] < M or (M > 1 and not cfg["DOT"]):
            raise ValueError(f"few-rows config {config} cannot cover {M} rows (BLOCK_M >= rows, DOT for > 1)")
        if one_split and (cfg["DOT"] or cfg["SPLIT_K"] != 1 or cfg["BLOCK_N"] % 2):
            raise ValueError(f"the fused epilogues take one-row configs without K splits, got {config}")
        kw["FAST"] = fast_cvt_fits(cfg["BLOCK_N"] * cfg["BLOCK_K"], cfg["num_warps"])
        if "PRE_BYTES" in cfg:  # tests reach the preload without PDL (under the interpreter)
            kw["PRE_BYTES"] = cfg.pop("PRE_BYTES")
        _int8_few_rows_kernel[grid(cfg)](*launch_args, EVEN_K=K % cfg["BLOCK_K"] == 0, **kw, **cfg)
    else:
        _few_rows[grid](*launch_args, **kw)


def _split_counters(device: torch.device, n: int) -> torch.Tensor:
    """The split-K kernel's arrival counters, one per column tile (``arrival_counters``): 1M entries (4 MB)
    cover any layer up to 4M output columns; allocated outside CUDA-graph capture in practice, since the first
    call of each shape autotunes eagerly."""
    return arrival_counters("split-k", device, n, 1 << 20)


def _operands(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor | None,
    swiglu: bool = False,
):
    """The launchers' shared argument handling: x as (M, K) rows and the weight with unit K stride, the
    output buffer (``out`` or new; N // 2 columns with ``swiglu``), the leading dims, and the finished result
    when there is nothing to multiply (no rows or columns: empty; K = 0: the bias, or zeros)."""
    N, K = weight.shape
    if swiglu and N % 2:
        raise ValueError(f"the SiLU-and-multiply epilogue needs [gate; up] rows (an even count), got {N}")
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"bias must be ({N},), got {tuple(bias.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    if weight.stride(1) != 1:
        weight = weight.contiguous()
    M = x2.shape[0]
    n_out = N // 2 if swiglu else N
    y = out_tensor(None if out is None else out.view(-1, n_out), (M, n_out), x)
    done = None
    if M == 0 or N == 0:
        done = y.reshape(*lead, n_out)
    elif K == 0:
        if swiglu:
            raise ValueError("the SiLU-and-multiply epilogue needs K > 0")
        done = (y.zero_() if bias is None else y.copy_(bias.expand(M, N))).reshape(*lead, N)
    return x2, weight, y, lead, done


def few_rows_linear_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: dict | None = None,
    out: torch.Tensor | None = None,
    rope: Rope | None = None,
    swiglu: bool = False,
) -> torch.Tensor:
    """x (..., K) @ weight (N, K).T + bias for a 16-bit weight (x's dtype) and at most FEW_ROWS rows, on the
    split-K few-rows kernel (autotuned on rows, N, K, or ``config``). ``kernels.skinny`` decides when this
    beats cuBLAS."""
    check_float("x", x)
    if weight.dtype != x.dtype or weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"expected x (..., K) and a {x.dtype} weight (N, K), got {tuple(x.shape)}, {weight.dtype} {tuple(weight.shape)}"
        )
    N, K = weight.shape
    if x.numel() // max(K, 1) > FEW_ROWS:
        raise ValueError(f"the few-rows kernel takes at most {FEW_ROWS} rows, got {x.numel() // K}")
    x2, weight, y, lead, done = _operands(x, weight, bias, out, swiglu)
    if done is not None:
        return done
    M = x2.shape[0]
    _check_epilogue(rope, swiglu, M, bias)
    # the scale pointer is unused for 16-bit weights (QUANT off): any tensor will do
    args = (x2, weight, weight, bias if bias is not None else weight, y, M, N, K, next_pow2(M),
            x2.stride(0), weight.stride(0), y.stride(0))  # fmt: skip
    _few_rows_launch(args, M, N, K, x, bias, config, rope, swiglu)
    return y.reshape(*lead, y.shape[-1])


def _check_epilogue(rope: Rope | None, swiglu: bool, M: int, bias: torch.Tensor | None) -> None:
    if swiglu and (M != 1 or bias is not None or rope is not None):
        raise ValueError(f"the SiLU-and-multiply epilogue takes one row, no bias and no rotary, got {M} rows")
    if rope is not None and (M != 1 or rope.k_cache.dtype == torch.int8):
        raise ValueError(
            f"the rotary epilogue takes one row and a 16/32-bit cache, got {M} rows, {rope.k_cache.dtype}"
        )


def linear_int8_triton(x: torch.Tensor, w: Int8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``linear`` of the kernel contract for an ``Int8Weight`` on the Triton kernel."""
    return int8_linear_triton(x, w.qweight, w.scale, bias)
