"""The W8A16 GEMM at prefill rows with the weights converted in registers (kernels.int8_gemm_ws): every config
on a Hopper GPU against the dequantized reference (CI compiles it for sm_90 instead: test_hopper_compile)."""

from __future__ import annotations

import pytest
import torch

from kernels import int8_gemm_ws
from kernels.quant import Int8Weight
from tests.kernels.conftest import (
    DEVICE,
    GLUON_HOPPER,
    assert_close,
    int8_linear_case,
    needs_gluon_hopper,
    poisoned,
)

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def test_configs_fit_and_bad_ones_are_refused():
    for cfg in int8_gemm_ws.VARIANTS:
        assert cfg.smem_bytes() <= int8_gemm_ws.SMEM_LIMIT, cfg
    w = Int8Weight.quantize(torch.randn(256, 256, device=DEVICE))
    x = torch.randn(256, 256, device=DEVICE).to(BF16)
    with pytest.raises(ValueError, match="block_n 128"):
        int8_gemm_ws.gemm_w8(x, w.qweight, w.scale, config=int8_gemm_ws.Config(block_n=256))
    with pytest.raises(ValueError, match="shared memory"):
        int8_gemm_ws.gemm_w8(x, w.qweight, w.scale, config=int8_gemm_ws.Config(stages=5))
    with pytest.raises(ValueError, match="shapes do not match"):
        int8_gemm_ws.gemm_w8(x[:, :128], w.qweight, w.scale)


def test_path_taken_only_where_it_can_run():
    w = Int8Weight.quantize(torch.randn(64, 256, device=DEVICE))
    x = torch.randn(512, 256, device=DEVICE).to(BF16)
    assert int8_gemm_ws.available(x, w.qweight) == GLUON_HOPPER
    # few rows, float32 rows, K not a multiple of 16, N not a multiple of 8 (TMA's 16-byte strides): never
    assert not int8_gemm_ws.available(x[: int8_gemm_ws.MIN_ROWS - 1], w.qweight)
    assert not int8_gemm_ws.available(x.float(), w.qweight)
    w8 = Int8Weight.quantize(torch.randn(64, 264, device=DEVICE))
    assert not int8_gemm_ws.available(torch.randn(512, 264, device=DEVICE).to(BF16), w8.qweight)
    assert not int8_gemm_ws.available(x, Int8Weight.quantize(torch.randn(60, 256, device=DEVICE)).qweight)


@needs_gluon_hopper
@pytest.mark.parametrize("cfg", int8_gemm_ws.VARIANTS, ids=lambda c: c.name.replace(" ", "-"))
@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_gemm_matches_the_dequantized_reference(cfg, dtype, bias):
    # N not a multiple of the 128-channel tile, K not of the 64-wide k-step (an odd number of k-steps: the
    # loop's tail), rows not a multiple of the row tile and fewer than a tile: TMA fills zeros past the
    # ends and clips the stores; more tiles than programs, so the persistent ones walk several
    for n, k, rows in ((200, 1008, 300), (1160, 272, 37), (4104, 4096, 1000)):
        w, x, b, exact = int8_linear_case(n, k, rows, dtype, bias)
        out = poisoned((rows, n), dtype)
        int8_gemm_ws.gemm_w8(x, w.qweight, w.scale, b, config=cfg, out=out)
        assert_close(out, exact, dtype)


@needs_gluon_hopper
def test_gemm_at_glm_shapes_and_in_a_cuda_graph():
    # the GLM-4-9B down projection at 4,096 rows (214 k-steps), then the same call replayed from a graph
    w, x, b, exact = int8_linear_case(4096, 13696, 4096, BF16, False)
    out = poisoned((4096, 4096), BF16)
    int8_gemm_ws.gemm_w8(x, w.qweight, w.scale, out=out)
    assert_close(out, exact, BF16)
    eager = out.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        int8_gemm_ws.gemm_w8(x, w.qweight, w.scale, out=out)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)
