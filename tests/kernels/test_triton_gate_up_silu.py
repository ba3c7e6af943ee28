"""The MLP's gate/up projection with SiLU-and-multiply in its epilogue (kernels.swiglu.gate_up_silu_triton),
one decode row, against the projection followed by the silu_and_mul reference."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.activation import silu_and_mul_ref
from kernels.int8_matmul import few_rows_linear_triton, int8_linear_triton
from kernels.quant import Int8Weight, linear_ref
from kernels.swiglu import gate_up_silu_triton
from tests.kernels.conftest import DEVICE, GPU, assert_close, poisoned

BF16, FP32 = torch.bfloat16, torch.float32
# (intermediate, hidden): GLM-4-9B's on the GPU; on the CPU small ones, one not a multiple of the tile's columns
SHAPES = [(13696, 4096), (100, 64)] if GPU else [(48, 64), (21, 40)]


def _inputs(inter, hidden, dtype, int8):
    w = torch.randn(2 * inter, hidden, device=DEVICE) * 0.1
    w = Int8Weight.quantize(w) if int8 else w.to(dtype)
    x = torch.randn(1, hidden, dtype=dtype, device=DEVICE)
    return w, x


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("int8", [False, True], ids=["16bit", "int8"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_epilogue_matches_projection_then_silu_and_mul(dtype, int8, shape, monkeypatch):
    # 16-bit weights fuse where the few-rows kernel runs: on the GPU kernels.skinny would time it against cuBLAS
    monkeypatch.setenv("AUTOGLM_SKINNY", "on")
    inter, hidden = shape
    w, x = _inputs(inter, hidden, dtype, int8)
    h = gate_up_silu_triton(x, w)
    assert h is not None and h.shape == (1, inter) and h.dtype == dtype
    ref = silu_and_mul_ref(linear_ref(x, w))
    assert_close(h, ref, dtype)
    # the activation is not the identity here: gate and up both matter
    assert not torch.allclose(h.float(), linear_ref(x, w)[:, inter:].float(), atol=1e-2)


@pytest.mark.parametrize("int8", [False, True], ids=["16bit", "int8"])
def test_fused_epilogue_equals_the_unfused_kernels_bit_for_bit(int8, monkeypatch):
    # the same one-row tile sums every gate and up row in the same order, and the epilogue rounds as the
    # projection's store and kernels.swiglu round: the fused row is the unfused one exactly
    monkeypatch.setenv("AUTOGLM_SKINNY", "on")
    inter, hidden = SHAPES[0]
    dtype = BF16
    w, x = _inputs(inter, hidden, dtype, int8)
    out = poisoned((1, inter), dtype)
    # the interpreter's default few-rows config splits K for a plain projection: one tile for both there
    cfg = None if GPU else {"BLOCK_N": 8, "BLOCK_K": 32, "SPLIT_K": 1, "DOT": False}
    if int8:
        h = int8_linear_triton(x, w.qweight, w.scale, out=out, swiglu=True, config=cfg)
        gu = int8_linear_triton(x, w.qweight, w.scale, config=cfg)
    else:
        h = few_rows_linear_triton(x, w, out=out, swiglu=True, config=cfg)
        gu = few_rows_linear_triton(x, w, config=cfg)
    assert h.data_ptr() == out.data_ptr()
    assert torch.equal(h, kernels.silu_and_mul(gu))


def test_unfusable_calls_fall_back_and_bad_calls_fail():
    w, x = _inputs(24, 32, FP32, True)
    # two rows: the caller runs the projection and silu_and_mul
    assert gate_up_silu_triton(torch.randn(2, 32, device=DEVICE), w) is None
    with pytest.raises(ValueError, match="one row"):
        int8_linear_triton(torch.randn(2, 32, device=DEVICE), w.qweight, w.scale, swiglu=True)
    with pytest.raises(ValueError, match="even"):
        int8_linear_triton(x, w.qweight[:-1], w.scale[:-1], swiglu=True)
    with pytest.raises(ValueError, match="no bias"):
        int8_linear_triton(x, w.qweight, w.scale, bias=torch.zeros(48, device=DEVICE), swiglu=True)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("int8", [False, True], ids=["16bit", "int8"])
def test_dispatch_op_equals_projection_then_silu_and_mul(rows, int8, monkeypatch):
    # kernels.gate_up_silu: the fused launch on CUDA where it fuses, the composition elsewhere (CPU: the
    # references; more rows: the projection and the SiLU kernel)
    monkeypatch.setenv("AUTOGLM_SKINNY", "on")
    dtype = BF16 if GPU else FP32
    w, _ = _inputs(40, 64, dtype, int8)
    x = torch.randn(rows, 64, dtype=dtype, device=DEVICE)
    assert_close(kernels.gate_up_silu(x, w), silu_and_mul_ref(linear_ref(x, w)), dtype)
