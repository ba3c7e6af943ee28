"""W8A16 matmul (Triton): y = x @ (qweight * scale[:, None]).T + bias, dequantized inside the GEMM.

Weights are int8 per output channel (``Int8Weight``). The kernel converts each int8 weight tile to the
activation dtype in registers, accumulates in float32 and applies the per-channel scale once per output
tile, not per K step. One activation row (batch-1 decode) runs a GEMV kernel without tensor-core dots
(elementwise multiply into a float32 tile, one reduction at the end). The GEMM kernel has two config
families, both autotuned and keyed on (row bucket, N, K):
- few rows (decode, M <= 32): memory bound on the weight bytes. The product is computed transposed,
  ``acc (BLOCK_N, BLOCK_M) = W_tile @ X_tile.T``, so that a 16-row dot covers the 1..32 activation rows;
  narrow N tiles and long K tiles let every multiprocessor stream its own weight rows;
- many rows (33..DEQUANT_ROWS - 1): compute bound; 64..256 tiles in the usual orientation, grouped program order for
  L2 reuse. (The transposed orientation with 256x128 tiles gave wrong results under Triton 3.6 on an H200,
  so the many-rows family does not use it.)
From DEQUANT_ROWS rows on, the weight is dequantized to a transient copy and multiplied by cuBLAS.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .quant import Int8Weight, linear_ref  # noqa: F401  (linear_ref: the torch reference)
from .triton_common import (
    INTERPRET,
    TORCH_TO_TL,
    UPCAST_DOT,
    check_float,
    device_sms,
    dot_precision,
    next_pow2,
    out_tensor,
    to_dtype,
)

FEW_ROWS = 32
# at or above this many rows: dequantize to a transient copy and use cuBLAS (see int8_linear_triton)
DEQUANT_ROWS = 256


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
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_N: tl.constexpr,
    SWAP: tl.constexpr,
):
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
    for k in range(0, tl.cdiv(K, BLOCK_K)):
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
            w = w.to(x.dtype)
        if SWAP:
            acc = tl.dot(w, x, acc, input_precision=PRECISION)
        else:
            acc = tl.dot(x, w, acc, input_precision=PRECISION)
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
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
def _int8_gemv_kernel(
    X_ptr,
    W_ptr,
    S_ptr,
    B_ptr,
    Y_ptr,
    N,
    K,
    stride_wn,
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """One activation row (batch-1 decode): y[n] = scale[n] * sum_k w[n, k] x[k]. No dot: each program
    streams BLOCK_N weight rows with wide loads, multiplies elementwise into a (BLOCK_N, BLOCK_K) float32
    accumulator and reduces it once at the end, so the loop is only loads, converts and FMAs."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rn = (offs_n % N).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    w_ptrs = W_ptr + rn[:, None] * stride_wn + offs_k[None, :]
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            w = tl.load(w_ptrs)
            x = tl.load(X_ptr + k0 + offs_k)
        else:
            w = tl.load(w_ptrs, mask=(k0 + offs_k)[None, :] < K, other=0)
            x = tl.load(X_ptr + k0 + offs_k, mask=k0 + offs_k < K, other=0.0)
        acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
        w_ptrs += BLOCK_K
    y = tl.sum(acc, axis=1) * tl.load(S_ptr + rn)
    if HAS_BIAS:
        y += tl.load(B_ptr + rn).to(tl.float32)
    tl.store(Y_ptr + offs_n, to_dtype(y, Y_ptr.dtype.element_ty), mask=offs_n < N)


def _gemv_configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bn in (4, 8, 16)
        for bk in (256, 512, 1024)
        for w in (4, 8)
        for s in (3, 4)
    ]


def _prune_gemv(configs, named_args, **kwargs):
    """Keep 4 configs: 8 or 16 weight rows per program (>= 2 waves of programs for N >= 4096 on 132 SMs;
    4 rows make each program's loads too short), 512- or 1024-wide K steps (16-byte int8 loads per thread
    with 4 warps), 4 warps, 4 stages of loads in flight."""
    kept = [
        c
        for c in configs
        if c.kwargs["BLOCK_N"] in (8, 16)
        and c.kwargs["BLOCK_K"] >= 512
        and c.num_warps == 4
        and c.num_stages == 4
    ]
    return kept or configs[:1]


_gemv = triton.autotune(
    configs=_gemv_configs(), key=["N", "K"], prune_configs_by={"early_config_prune": _prune_gemv}
)(triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(_int8_gemv_kernel))


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


def dequantize_triton(qweight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, K) int8 * scale[:, None] -> (N, K) ``dtype`` (one pass: N*K bytes read, 2*N*K written)."""
    N, K = qweight.shape
    y = torch.empty((N, K), dtype=dtype, device=qweight.device)
    block = min(4096, next_pow2(K))
    _dequant_kernel[(N, triton.cdiv(K, block))](
        qweight, scale, y, K, qweight.stride(0), y.stride(0), BLOCK_K=block
    )
    return y


def _few_rows_configs() -> list[triton.Config]:
    return [
        triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_N": 1, "SWAP": True},
            num_warps=4,
            num_stages=s,
        )
        for bm in (16, 32)
        for bn in (16, 32, 64)
        for bk in (256, 512)
        for s in (3, 4)
    ]


def _prune_few_rows(configs, named_args, **kwargs):
    """Keep the smallest row tile that covers M (a wider one only multiplies zeros), and the N tiles that
    give between one and eight waves of programs (fewer leave multiprocessors without weight rows to
    stream, more only add per-program overhead); the K-tile x pipeline-depth grid is timed (<= 8 configs)."""
    m_tile = max(16, next_pow2(named_args["M"]))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] == m_tile]
    sms = device_sms(named_args["X_ptr"])
    waves = [c for c in kept if sms <= triton.cdiv(named_args["N"], c.kwargs["BLOCK_N"]) <= 8 * sms]
    return waves or [c for c in kept if c.kwargs["BLOCK_N"] == 16]


def _many_rows_configs() -> list[triton.Config]:
    return [
        triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_N": 8, "SWAP": sw}, num_warps=w, num_stages=s
        )
        for bn, bm, bk, w, s in (
            (128, 128, 64, 4, 4),
            (128, 128, 64, 8, 4),
            (128, 256, 64, 8, 3),
            (256, 128, 64, 8, 3),
            (64, 128, 64, 4, 4),
            (128, 64, 64, 4, 4),
        )
        for sw in (False,)
    ]


def _prune_many_rows(configs, named_args, **kwargs):
    """Drop row tiles wider than the rows present (e.g. 256-row tiles for M=64): pure padding work."""
    m = named_args["M"]
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= max(64, next_pow2(m))]
    return kept or configs[:1]


_int8_matmul = triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(
    _int8_matmul_kernel
)
_few_rows = triton.autotune(
    configs=_few_rows_configs(),
    key=["M_BUCKET", "N", "K"],
    prune_configs_by={"early_config_prune": _prune_few_rows},
)(_int8_matmul)
_many_rows = triton.autotune(
    configs=_many_rows_configs(),
    key=["M_BUCKET", "N", "K"],
    prune_configs_by={"early_config_prune": _prune_many_rows},
)(_int8_matmul)


def int8_linear_triton(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: dict | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """x (..., K) @ dequant(qweight (N, K) int8, scale (N,) float32).T + bias -> (..., N) in x.dtype.

    One row runs the GEMV kernel, up to DEQUANT_ROWS rows the GEMM kernel, more rows dequantize + cuBLAS.
    ``config`` forces one block config (BLOCK_M/BLOCK_N/BLOCK_K/GROUP_N/SWAP for the GEMM, BLOCK_N/BLOCK_K
    for one row) instead of autotuning; the CPU interpreter always runs a fixed small one.
    """
    check_float("x", x)
    if qweight.dtype != torch.int8 or qweight.dim() != 2 or x.shape[-1] != qweight.shape[1]:
        raise ValueError(
            f"expected x (..., K) and int8 qweight (N, K), got {tuple(x.shape)}, {qweight.dtype} {tuple(qweight.shape)}"
        )
    N, K = qweight.shape
    if scale.shape != (N,) or scale.dtype != torch.float32:
        raise ValueError(f"scale must be float32 ({N},), got {scale.dtype} {tuple(scale.shape)}")
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"bias must be ({N},), got {tuple(bias.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    if qweight.stride(1) != 1:
        qweight = qweight.contiguous()
    M = x2.shape[0]
    y = out_tensor(None if out is None else out.view(-1, N), (M, N), x)
    if M == 0 or N == 0:
        return y.reshape(*lead, N)
    if K == 0:
        return (y.zero_() if bias is None else y.copy_(bias.expand(M, N))).reshape(*lead, N)
    assert x.dtype in TORCH_TO_TL, f"{x.dtype=}"
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

    if config is None and M >= DEQUANT_ROWS:
        # NOTE: prefill-sized products are compute bound, and our in-GEMM dequantization reached only
        # 0.42-0.76x of cuBLAS bf16 at 256..4096 rows (H200, GLM-4-9B shapes); dequantizing to a transient
        # bf16 copy (3 bytes of traffic per weight, 14-44 us for these layers) and calling cuBLAS measured
        # 0.92-1.02x of bf16 at 4096 rows, and by the same parts is ahead of the in-GEMM path from ~256 rows.
        w = dequantize_triton(qweight, scale, x.dtype)
        torch.matmul(x2, w.T, out=y)
        if bias is not None:
            y += bias
        return y.reshape(*lead, N)
    if M == 1 and (config is None or "BLOCK_M" not in config) and x2.stride(1) == 1:
        gemv_args = (x2, qweight, scale, bias if bias is not None else scale, y, N, K, qweight.stride(0))
        if INTERPRET and config is None:
            config = {"BLOCK_N": 8, "BLOCK_K": 32}
        if config is not None:
            even_k = K % config["BLOCK_K"] == 0
            grid1 = (triton.cdiv(N, config["BLOCK_N"]),)
            _int8_gemv_kernel[grid1](*gemv_args, HAS_BIAS=bias is not None, EVEN_K=even_k, **config)
        else:
            _gemv[lambda meta: (triton.cdiv(N, meta["BLOCK_N"]),)](*gemv_args, HAS_BIAS=bias is not None)
        return y.reshape(*lead, N)
    if INTERPRET and config is None:
        config = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_N": 2, "SWAP": True}
    if config is not None:
        _int8_matmul[grid(config)](
            *args, HAS_BIAS=bias is not None, UPCAST=UPCAST_DOT, PRECISION=precision, **config
        )
    else:
        tuned = _few_rows if M <= FEW_ROWS else _many_rows
        tuned[grid](*args, HAS_BIAS=bias is not None, UPCAST=UPCAST_DOT, PRECISION=precision)
    return y.reshape(*lead, N)


def linear_int8_triton(x: torch.Tensor, w: Int8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``linear`` of the kernel contract for an ``Int8Weight`` on the Triton kernel."""
    return int8_linear_triton(x, w.qweight, w.scale, bias)
