"""Fused residual add + RMSNorm (Triton), one program per token row.

    x = norm(x) * pre_weight              (optional: a preceding RMSNorm, rounded as its own kernel would)
    h = x + residual                      (rounded to x.dtype, as the unfused torch add is)
    y = (h * rsqrt(mean(h**2) + eps)).to(x.dtype) * weight

GLM-4 layers norm the attention and MLP outputs before the residual add, which the next norm follows at
once: with ``pre_weight`` both norms and the add are one launch (two of a layer's four norm kernels go,
each a launch and a round trip of the row through memory). The results match two kernels within
rounding, not always bit for bit on the GPU (the compiler may contract or reorder across the two norms).

For a product on the INT8 weights' int8 x int8 path (``int8_ws``: 2..32 rows on a Hopper GPU) the kernel can
also write the normed rows as that path's two int8 planes and row scale (``planes=True``), bit for bit what
its planes kernel would make from them: the projection after the norm then skips that launch and its
dependency hop (``int8_ws.planes_target``).

The mean is taken in float32 and the normalized row is rounded to the input dtype before the weight
multiplies it, exactly as transformers' ``GlmRMSNorm`` does, so greedy decoding matches the reference path
bit for bit in the common case. Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import int8_ws
from .int8_ws import row_scale, store_planes, store_tile_planes
from .norm import rms_norm_ref  # noqa: F401  (the torch reference of this kernel)
from .triton_common import check_float, next_pow2, out_tensor, pdl_enabled, pdl_trigger, pdl_wait, to_dtype


@triton.jit
def _rms_norm_kernel(
    X_ptr,
    R_ptr,
    W_ptr,
    P_ptr,
    Y_ptr,
    H_ptr,
    PL_ptr,
    SX_ptr,
    stride_xm,
    stride_rm,
    stride_ym,
    stride_hm,
    N,
    MP,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRE: tl.constexpr,
    PLANES: tl.constexpr,
    PDL: tl.constexpr,
    TILED: tl.constexpr = False,
    TILE: tl.constexpr = 128,
):
    pdl_trigger(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    pdl_wait(PDL)
    x = tl.load(X_ptr + row * stride_xm + cols, mask=mask, other=0.0)
    if PRE:
        x = _normed(x, P_ptr, cols, mask, N, eps, X_ptr.dtype.element_ty)
    if HAS_RESIDUAL:
        r = tl.load(R_ptr + row * stride_rm + cols, mask=mask, other=0.0)
        x = to_dtype(x.to(tl.float32) + r.to(tl.float32), X_ptr.dtype.element_ty)
        tl.store(H_ptr + row * stride_hm + cols, x, mask=mask)
    y = _normed(x, W_ptr, cols, mask, N, eps, Y_ptr.dtype.element_ty)
    tl.store(Y_ptr + row * stride_ym + cols, y, mask=mask)
    if PLANES:
        # the rows as int8_ws's planes (PL int8 (2, MP, N)) and row scales (SX), as its planes kernel makes them
        yf = y.to(tl.float32)
        if TILED:
            # a scale per SCALE_K columns (SX (cdiv(N, SCALE_K), SX_COLS)); TILE = min(BLOCK_N, SCALE_K)
            store_tile_planes(PL_ptr, SX_ptr, row, 0, N, MP, yf, BLOCK_N, TILE)
        else:
            sx = row_scale(tl.max(tl.abs(yf), axis=0))
            tl.store(SX_ptr + row, sx)
            store_planes(PL_ptr, row, cols, mask, N, MP, yf / sx)


@triton.jit
def _normed(x, W_ptr, cols, mask, N, eps, dtype: tl.constexpr):
    """norm(x) * weight of one row, rounded to ``dtype`` (the normalized row first, as transformers does)."""
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, axis=0) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    normed = to_dtype(xf * rstd, dtype).to(tl.float32)
    w = tl.load(W_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    return to_dtype(normed * w, dtype)


def rms_norm_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    pre_weight: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    residual_out: torch.Tensor | None = None,
    planes: bool = False,
    planes_out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``rms_norm`` of the kernel contract on the Triton kernel (x (T, H), weight and pre_weight (H,)).
    ``planes``: the normed rows go next into an INT8 product: also write them as ``int8_ws``'s planes where
    that path can take them (``int8_ws.planes_target``); ``planes_out``: (planes int8 (2, MP, H), scales
    float32 (>= T,), or (cdiv(H, SCALE_K), SX_COLS) for tiled planes) to write them into regardless (tests)."""
    check_float("x", x)
    if (
        x.dim() != 2
        or weight.shape != (x.shape[1],)
        or (pre_weight is not None and pre_weight.shape != weight.shape)
    ):
        raise ValueError(
            f"rms_norm expects x (T, H) and weight (H,), got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if x.stride(1) != 1:
        x = x.contiguous()
    T, N = x.shape
    y = out_tensor(out, (T, N), x)
    h = None
    if residual is not None:
        if residual.shape != x.shape or residual.dtype != x.dtype:
            raise ValueError(f"residual must match x: {tuple(residual.shape)} {residual.dtype}")
        if residual.stride(1) != 1:
            residual = residual.contiguous()
        h = out_tensor(residual_out, (T, N), x)
    if T == 0:
        return y if residual is None else (y, h)
    block = next_pow2(N)
    num_warps = 4 if block <= 2048 else (8 if block <= 8192 else 16)
    target = int8_ws.planes_target(y) if planes and planes_out is None else None
    planes_out = planes_out if planes_out is not None else target
    _rms_norm_kernel[(T,)](
        x,
        residual if residual is not None else x,
        weight,
        pre_weight if pre_weight is not None else weight,
        y,
        h if h is not None else y,
        planes_out[0] if planes_out is not None else x,
        planes_out[1] if planes_out is not None else weight,
        x.stride(0),
        residual.stride(0) if residual is not None else 0,
        y.stride(0),
        h.stride(0) if h is not None else 0,
        N,
        planes_out[0].shape[1] if planes_out is not None else 0,
        float(eps),
        HAS_RESIDUAL=residual is not None,
        BLOCK_N=block,
        PRE=pre_weight is not None,
        PLANES=planes_out is not None,
        PDL=(pdl := pdl_enabled(x)),
        TILED=planes_out is not None and planes_out[1].dim() == 2,
        TILE=min(block, int8_ws.SCALE_K.value),
        num_warps=num_warps,
        launch_pdl=pdl,
    )
    if target is not None:
        int8_ws.planes_written(y)
    return y if residual is None else (y, h)
