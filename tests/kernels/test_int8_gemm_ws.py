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
        int8_gemm_ws.gemm_w8(x, w.qweight, w.scale, config=int8_gemm_ws.Config(block_n=64))
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


def test_row_tile_fills_the_multiprocessors():
    # 132 multiprocessors (an H100 SXM / H200): o_proj / down (32 channel tiles) at 512 rows would leave half of
    # them idle with 256-row tiles, so they take 128-row ones; gate_up (214 channel tiles) and every layer at
    # 4,096 rows keep the wide tile, which reads each weight tile half as often
    assert int8_gemm_ws.pick(512, 4096, 132).block_m == 128
    assert int8_gemm_ws.pick(512, 27392, 132).block_m == 256
    for n in (4608, 4096, 27392):
        assert int8_gemm_ws.pick(4096, n, 132).block_m == 256
    for m, n in ((256, 4096), (300, 200), (8192, 27392)):
        cfg = int8_gemm_ws.pick(m, n, 132)
        assert cfg in int8_gemm_ws.TILES and cfg.smem_bytes() <= int8_gemm_ws.SMEM_LIMIT


@pytest.mark.parametrize("how", ["on", "off"])
def test_product_path_forced_by_the_switch(monkeypatch, how):
    # AUTOGLM_W8_GEMM_WS forces the choice without timing anything; where the GEMM cannot run (no Hopper GPU,
    # too few rows) int8_linear_triton takes its other paths, same result
    from kernels import int8_matmul

    monkeypatch.setenv("AUTOGLM_W8_GEMM_WS", how)
    rows = 300 if GLUON_HOPPER else 20
    w, x, b, exact = int8_linear_case(200, 272, rows, BF16, True)
    assert int8_matmul.use_gemm_ws(x, w.qweight, w.scale, b) == (how == "on")
    out = int8_matmul.int8_linear_triton(x.view(rows // 4, 4, 272), w.qweight, w.scale, b)
    assert_close(out.view(rows, 200), exact, BF16)


@needs_gluon_hopper
@pytest.mark.parametrize("dtype", [BF16, FP16])
def test_product_path_takes_the_gemm_and_matches(monkeypatch, dtype):
    # int8_linear_triton with the Gluon GEMM chosen (gemm_ws=True): rows in a 3-d batch, bias, an out buffer
    # poisoned with NaN; the measured choice (auto) gives the same product whichever way it goes
    from kernels import int8_matmul

    monkeypatch.setenv("AUTOGLM_W8_GEMM_WS", "auto")
    for n, k, rows in ((4104, 1008, 512), (1160, 4096, 1024)):
        w, x, b, exact = int8_linear_case(n, k, rows, dtype, True)
        out = poisoned((2, rows // 2, n), dtype)
        int8_matmul.int8_linear_triton(x.view(2, rows // 2, k), w.qweight, w.scale, b, out=out, gemm_ws=True)
        assert_close(out.view(rows, n), exact, dtype)
        auto = int8_matmul.int8_linear_triton(x, w.qweight, w.scale, b)
        assert_close(auto, exact, dtype)
    assert any(d["N"] == 4104 for d in int8_matmul.gemm_ws_decisions())
