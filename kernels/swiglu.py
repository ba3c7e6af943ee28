"""SiLU-and-multiply (Triton): x = [gate | up] (T, 2I) -> silu(gate) * up (T, I).

Rounded like the unfused torch ops of transformers' GLM MLP: silu(gate) is computed in float32 and rounded
to the input dtype, then multiplied by ``up`` and rounded again. Shazeer, "GLU Variants Improve
Transformer" (2020).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .activation import silu_and_mul_ref  # noqa: F401  (the torch reference of this kernel)
from .triton_common import check_float, out_tensor, pdl_enabled, pdl_trigger, pdl_wait, to_dtype


@triton.jit
def _silu_and_mul_kernel(X_ptr, Y_ptr, stride_xm, stride_ym, inter, BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_trigger(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter
    pdl_wait(PDL)
    gate = tl.load(X_ptr + row * stride_xm + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(X_ptr + row * stride_xm + inter + cols, mask=mask, other=0.0).to(tl.float32)
    act = to_dtype(gate * tl.sigmoid(gate), Y_ptr.dtype.element_ty).to(tl.float32)
    tl.store(Y_ptr + row * stride_ym + cols, to_dtype(act * up, Y_ptr.dtype.element_ty), mask=mask)


def silu_and_mul_triton(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``silu_and_mul`` of the kernel contract on the Triton kernel."""
    check_float("x", x)
    if x.dim() != 2 or x.shape[1] % 2:
        raise ValueError(f"silu_and_mul expects x (T, 2I), got {tuple(x.shape)}")
    if x.stride(1) != 1:
        x = x.contiguous()
    T, inter = x.shape[0], x.shape[1] // 2
    y = out_tensor(out, (T, inter), x)
    if T == 0 or inter == 0:
        return y
    block = min(2048, triton.next_power_of_2(inter))
    _silu_and_mul_kernel[(T, triton.cdiv(inter, block))](
        x,
        y,
        x.stride(0),
        y.stride(0),
        inter,
        BLOCK=block,
        PDL=(pdl := pdl_enabled(x)),
        num_warps=4 if block <= 1024 else 8,
        launch_pdl=pdl,
    )
    return y
