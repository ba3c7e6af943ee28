"""SiLU-and-multiply (Triton): x = [gate | up] (T, 2I) -> silu(gate) * up (T, I).

Rounded like the unfused torch ops of transformers' GLM MLP: silu(gate) is computed in float32 and rounded
to the input dtype, then multiplied by ``up`` and rounded again. Shazeer, "GLU Variants Improve
Transformer" (2020).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import int8_ws, skinny
from .activation import silu_and_mul_ref  # noqa: F401  (the torch reference of this kernel)
from .int8_matmul import few_rows_linear_triton, int8_linear_triton, silu_mul
from .int8_ws import store_tile_planes
from .quant import Int8Weight
from .triton_common import check_float, out_tensor, pdl_enabled, pdl_trigger, pdl_wait


@triton.jit
def _silu_and_mul_kernel(X_ptr, Y_ptr, PL_ptr, SX_ptr, MP, stride_xm, stride_ym, inter, BLOCK: tl.constexpr,
                         PDL: tl.constexpr, PLANES: tl.constexpr, TILE: tl.constexpr = 128):  # fmt: skip
    pdl_trigger(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter
    pdl_wait(PDL)
    gate = tl.load(X_ptr + row * stride_xm + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(X_ptr + row * stride_xm + inter + cols, mask=mask, other=0.0).to(tl.float32)
    y = silu_mul(gate, up, Y_ptr.dtype.element_ty)
    tl.store(Y_ptr + row * stride_ym + cols, y, mask=mask)
    if PLANES:
        # tiled planes: this chunk's scale groups are the program's own (SCALE_K columns each), no other's
        store_tile_planes(
            PL_ptr, SX_ptr, row, tl.program_id(1) * BLOCK, inter, MP, y.to(tl.float32), BLOCK, TILE
        )


def silu_and_mul_triton(
    x: torch.Tensor,
    out: torch.Tensor | None = None,
    planes: bool = False,
    planes_out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``silu_and_mul`` of the kernel contract on the Triton kernel. ``planes``: the rows go next into an INT8
    product (the MLP's down projection): also write them as ``int8_ws``'s tiled planes where that path takes
    them (``int8_ws.planes_target``, tiled planes: each program its own chunk's); ``planes_out``: (planes int8
    (2, MP, I), scales float32 (cdiv(I, SCALE_K), SX_COLS)) to write them into regardless (tests).
    NOTE: row-scaled planes (AUTOGLM_PLANES_TILED=0) are the planes kernel's to make: no program here holds a
    row, and the last of a row's programs reading it back to quantize it all alone made the SiLU + down pair
    1.3-2.6 us slower on an H100 (RESULTS.md "The attention's and SiLU's planes on an H100"; removed)."""
    check_float("x", x)
    if x.dim() != 2 or x.shape[1] % 2:
        raise ValueError(f"silu_and_mul expects x (T, 2I), got {tuple(x.shape)}")
    if planes_out is not None and planes_out[1].dim() != 2:
        raise ValueError("silu_and_mul writes tiled planes only (scales (groups, SX_COLS)); row scales are "
                         "the planes kernel's to make")  # fmt: skip
    if x.stride(1) != 1:
        x = x.contiguous()
    T, inter = x.shape[0], x.shape[1] // 2
    y = out_tensor(out, (T, inter), x)
    if T == 0 or inter == 0:
        return y
    block = min(2048, triton.next_power_of_2(inter))
    target = int8_ws.planes_target(y) if planes and planes_out is None else None
    if target is not None and target[1].dim() != 2:
        target = None
    planes_out = planes_out if planes_out is not None else target
    pl_args = (x, x, 0)  # (planes, scales, MP); any pointer stands in for what is not used
    if planes_out is not None:
        pl_args = (planes_out[0], planes_out[1], planes_out[0].shape[1])
    _silu_and_mul_kernel[(T, triton.cdiv(inter, block))](
        x,
        y,
        *pl_args,
        x.stride(0),
        y.stride(0),
        inter,
        BLOCK=block,
        PDL=(pdl := pdl_enabled(x)),
        PLANES=planes_out is not None,
        TILE=min(block, int8_ws.SCALE_K.value),
        num_warps=4 if block <= 1024 else 8,
        launch_pdl=pdl,
    )
    if target is not None:
        int8_ws.planes_written(y)
    return y


def gate_up_silu_triton(x: torch.Tensor, w: torch.Tensor | Int8Weight) -> torch.Tensor | None:
    """silu(gate) * up of one row's gate/up projection (w = [gate; up] (2I, K)) in one launch: the few-rows
    kernel's SiLU-and-multiply epilogue (``int8_matmul._swiglu_epilogue``); None where this does not fuse (more
    rows; a 16-bit weight whose projection and ``silu_and_mul`` ``kernels.skinny`` measured faster), and the caller runs the projection and
    ``silu_and_mul``. AUTOGLM_GATE_SILU=0 turns the fusion off.
    NOTE: H200, GLM-4-9B shapes, batch-1 decode graph: the SiLU launch held the critical path 1.0-1.1 us a
    layer after gate_up, and leaving it out saved 1.3-1.8 us a layer (RESULTS.md "Where a batch-1 step goes")."""
    if os.environ.get("AUTOGLM_GATE_SILU", "1") == "0":
        return None
    if x.dim() != 2 or x.shape[0] != 1 or x.stride(-1) != 1:
        return None
    if isinstance(w, Int8Weight):
        return int8_linear_triton(x, w.qweight, w.scale, swiglu=True)
    if w.dtype == x.dtype and skinny.use_fused(
        "gate_up_silu",
        x,
        w,
        None,
        fused := lambda: few_rows_linear_triton(x, w, swiglu=True),
        lambda: silu_and_mul_triton(skinny.linear_triton(x, w)),
    ):
        return fused()
    return None
