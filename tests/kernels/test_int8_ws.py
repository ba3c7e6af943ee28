"""The warp-specialized W8A16 path at 2..32 rows (kernels.int8_ws): its planes kernel everywhere (the CPU
interpreter included), its Gluon GEMM on a Hopper GPU against the dequantized reference."""

from __future__ import annotations

import pytest
import torch

from kernels import int8_matmul, int8_ws
from kernels.flash_decode import flash_decode_triton
from kernels.fused_norm import rms_norm_triton
from kernels.int8_matmul import int8_linear_triton
from kernels.quant import Int8Weight
from kernels.swiglu import silu_and_mul_triton
from tests.kernels.conftest import (
    DEVICE,
    GLUON_HOPPER,
    GPU,
    assert_close,
    int8_linear_case,
    needs_gluon_hopper,
    poisoned,
)

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


@pytest.mark.parametrize("rows", [2, 5, 17, 32])
@pytest.mark.parametrize("k", [300, 13696] if GPU else [300, 1100])
def test_planes_kernel_splits_rows_as_split_rows_does(rows, k):
    # one program per row and K chunk (each reads its whole row for the scale): the same planes and scales
    # as the one-program-a-row split_rows, written into the first rows of a larger (2, MP, K) buffer
    x = torch.randn(rows, k, device=DEVICE).to(BF16)
    x[0] = 0  # a zero row: scale 1, zero planes
    x[-1, 7] = 1e4  # an outlier
    mp = int8_ws.row_bucket(rows)
    planes = torch.full((2, mp, k), 99, dtype=torch.int8, device=DEVICE)
    sx = torch.full((mp,), float("nan"), device=DEVICE)
    int8_ws.split_planes(x, planes, sx)
    want, want_sx = int8_matmul.split_rows(x)
    assert torch.equal(planes[:, :rows], want) and torch.equal(sx[:rows], want_sx)
    assert (planes[:, rows:] == 99).all()  # padding rows untouched: the GEMM never stores their columns


@pytest.mark.parametrize("rows", [2, 17])
@pytest.mark.parametrize("k", [64, 1100, 13696] if GPU else [64, 1100, 4200])
def test_tiled_planes_scale_each_group_of_a_row(rows, k):
    # tiled planes (AUTOGLM_PLANES_TILED): a scale per 2,048-column group of a row (the last one partial),
    # each group's largest value at +-127, a zero group at scale 1 and zero planes; x = sx * (hi + lo / 254)
    # within half a lo step; the torch reference's bits on the CPU (the GPU's division may round otherwise)
    x = torch.randn(rows, k, device=DEVICE).to(BF16)
    x[0] = 0
    x[-1, 7] = 1e4  # an outlier: its group's scale only
    x[1, 2048:4096] = 0
    mp = int8_ws.row_bucket(rows)
    groups = int8_ws.scale_groups(k)
    planes = torch.full((2, mp, k), 99, dtype=torch.int8, device=DEVICE)
    sx = torch.full((groups, int8_ws.WS_ROWS), float("nan"), device=DEVICE)
    int8_ws.split_planes(x, planes, sx)
    want, want_sx = int8_ws.split_tiles_ref(x)
    if not GPU:
        assert torch.equal(planes[:, :rows], want) and torch.equal(sx[:, :rows], want_sx)
    assert_close(sx[:, :rows], want_sx, FP32)
    assert (planes[:, rows:] == 99).all() and torch.isnan(sx[:, rows:]).all()
    scale = sx[:, :rows].T.repeat_interleave(2048, dim=1)[:, :k]
    hi, lo = planes[0, :rows].float(), planes[1, :rows].float()
    bound = scale * (0.5 / 254) * 1.001 + 1e-6 * x.float().abs()  # half a lo step, and float32's rounding
    assert ((scale * (hi + lo / 254) - x.float()).abs() <= bound).all()
    assert (sx[:, 0] == 1).all() and not planes[:, 0].any()
    if k > 4096:
        assert sx[1, 1].item() == 1 and not planes[:, 1, 2048:4096].any()
    assert sx[0, rows - 1].item() == pytest.approx(x[-1, 7].item() / 127, rel=1e-6)
    assert groups == 1 or sx[-1, rows - 1].item() < 1
    assert (hi.abs().amax(1) <= 127).all() and (hi[1:].abs().amax(1) == 127).all()


def test_row_buckets_and_ring_depth():
    assert [int8_ws.row_bucket(m) for m in (2, 8, 9, 16, 17, 32)] == [8, 8, 16, 16, 32, 32]
    for mp in (8, 16, 32):
        stages = int8_ws.stages_for(mp)
        assert 2 <= stages <= int8_ws.MAX_STAGES
        assert stages * (int8_ws.BLOCK_N + 2 * mp) * int8_ws.BLOCK_K <= int8_ws.SMEM_BUDGET
        tiled = int8_ws.stages_for(mp, tiled=True)  # each slot also holds its k-step's row scales
        assert 2 <= tiled <= stages
        assert (
            tiled * ((int8_ws.BLOCK_N + 2 * mp) * int8_ws.BLOCK_K + 4 * int8_ws.WS_ROWS)
            <= int8_ws.SMEM_BUDGET
        )


def test_path_taken_only_where_it_can_run():
    w = Int8Weight.quantize(torch.randn(64, 256, device=DEVICE))
    x = torch.randn(8, 256, device=DEVICE).to(BF16)
    assert int8_ws.available(x, w.qweight) == GLUON_HOPPER
    # one row, more than WS_ROWS rows, float32 rows, K not a multiple of 16 (TMA row strides): never
    assert not int8_ws.available(x[:1], w.qweight)
    assert not int8_ws.available(torch.randn(33, 256, device=DEVICE).to(BF16), w.qweight)
    assert not int8_ws.available(x.float(), w.qweight)
    w8 = Int8Weight.quantize(torch.randn(64, 264, device=DEVICE))
    assert not int8_ws.available(torch.randn(8, 264, device=DEVICE).to(BF16), w8.qweight)


@pytest.fixture(params=["row", "tiled"])
def planes_format(request, monkeypatch):
    """The planes' scales: one per row, or one per row and 2,048-column group (AUTOGLM_PLANES_TILED)."""
    monkeypatch.setenv("AUTOGLM_PLANES_TILED", "1" if request.param == "tiled" else "0")
    return request.param


@needs_gluon_hopper
@pytest.mark.parametrize("shape", [(4608, 4096), (4096, 13696), (200, 1008)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_ws_gemm_matches_the_dequantized_reference(shape, dtype, bias, planes_format):
    # N not a multiple of the 64-channel tile and K not of the 128-byte tile (TMA fills zeros past the ends);
    # row counts across the 8/16/32 buckets, larger ones first so the padding rows hold stale planes
    n, k = shape
    for rows in (32, 17, 16, 9, 8, 7, 5, 2):
        w, x, b, exact = int8_linear_case(n, k, rows, dtype, bias)
        out = poisoned((rows, n), dtype)
        int8_ws.ws_linear(x, w.qweight, w.scale, b, out)
        assert_close(out, exact, dtype)


@needs_gluon_hopper
def test_ws_in_a_cuda_graph_with_pdl_matches_eager(planes_format):
    # captured, the planes kernel lets the GEMM launch at once and the GEMM's producer warp sends its first
    # weight tiles before waiting for the planes (programmatic dependent launch); eager has no PDL
    w, x, b, exact = int8_linear_case(4608, 4096, 8, BF16, True)
    eager = int8_linear_triton(x, w.qweight, w.scale, b, ws=True)
    out = torch.empty_like(eager)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        int8_linear_triton(x, w.qweight, w.scale, b, out=out, ws=True)
    for _ in range(3):
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager)
    assert_close(out, exact, BF16)


@pytest.mark.parametrize("inference", [False, True], ids=["grad-mode", "inference-mode"])
def test_planes_count_as_made_only_for_the_rows_written_with_them(inference):
    # the record the norm leaves for the projection (no GPU needed): the same rows, unchanged, and only those;
    # the engine's tensors are inference tensors, which have no version counter (an H100 run of the engine
    # raised on it)
    with torch.inference_mode(inference):
        rows = torch.randn(8, 64, dtype=BF16)
        key = int8_ws._planes_key(rows)
        int8_ws._MADE.clear()
        assert not int8_ws._planes_made(rows, key)
        int8_ws.planes_written(rows)
        assert int8_ws._planes_made(rows, key) and int8_ws._planes_made(rows.view(8, 64), key)
        assert not int8_ws._planes_made(rows.clone(), key)  # other memory
        assert not int8_ws._planes_made(rows[:4], int8_ws._planes_key(rows))  # other rows at that address
        assert not int8_ws._planes_made(rows.view(torch.float16), key)  # other dtype
    if not inference:
        rows.mul_(2)  # changed by torch since: its planes are stale
        assert not int8_ws._planes_made(rows, key)
    int8_ws._MADE.clear()


def test_planes_made_in_one_format_are_not_read_in_the_other(monkeypatch):
    # row-scaled and tiled planes live in their own buffers: a product never reads one as the other
    rows = torch.randn(8, 256, dtype=BF16)
    int8_ws._MADE.clear()
    monkeypatch.setenv("AUTOGLM_PLANES_TILED", "0")
    int8_ws.planes_written(rows)
    assert int8_ws._planes_made(rows, int8_ws._planes_key(rows))
    monkeypatch.setenv("AUTOGLM_PLANES_TILED", "1")
    assert not int8_ws._planes_made(rows, int8_ws._planes_key(rows))
    tiled_key = int8_ws._planes_key(rows)
    monkeypatch.setenv("AUTOGLM_PLANES_TILED", "0")
    row_key = int8_ws._planes_key(rows)
    (row_planes, row_sx), (tiled_planes, tiled_sx) = (
        int8_ws._planes_buffers(*k) for k in (row_key, tiled_key)
    )
    assert row_planes.data_ptr() != tiled_planes.data_ptr() and row_sx.data_ptr() != tiled_sx.data_ptr()
    assert row_sx.shape == (8,) and tiled_sx.shape == (int8_ws.scale_groups(256), int8_ws.WS_ROWS)
    int8_ws._MADE.clear()


@needs_gluon_hopper
@pytest.mark.parametrize("rows", [2, 8, 17, 32])
def test_projection_takes_the_planes_its_norm_wrote(rows, planes_format):
    # the RMSNorm before an INT8 projection writes its rows' planes (planes=True): the projection then skips
    # the planes kernel and gives the bits it gives when it makes them itself; rows changed since (by torch),
    # other rows at the norm's shape, or the norm's planes overwritten by another product: it makes its own
    w, _, b, _ = int8_linear_case(4608, 4096, rows, BF16, True)
    x = torch.randn(rows, 4096, dtype=BF16, device=DEVICE)
    nw = (1 + 0.1 * torch.randn(4096, device=DEVICE)).to(BF16)
    y = rms_norm_triton(x, nw, 1e-5, planes=True)
    assert int8_ws._planes_made(y, int8_ws._planes_key(y))
    own = int8_ws.ws_linear(
        y.clone(), w.qweight, w.scale, b, torch.empty(rows, 4608, dtype=BF16, device=DEVICE)
    )
    made = int8_ws.ws_linear(y, w.qweight, w.scale, b, poisoned((rows, 4608), BF16))
    assert torch.equal(made, own)
    exact = y.float() @ w.dequantize(torch.float32).T + b.float()
    assert_close(made, exact, BF16)
    y.mul_(2)  # a torch write bumps the version: its planes are no longer the rows'
    assert not int8_ws._planes_made(y, int8_ws._planes_key(y))
    assert_close(int8_ws.ws_linear(y, w.qweight, w.scale, b, poisoned((rows, 4608), BF16)),
                 y.float() @ w.dequantize(torch.float32).T + b.float(), BF16)  # fmt: skip
    y2 = rms_norm_triton(x, nw, 1e-5, planes=True)
    other = torch.randn_like(x)
    int8_ws.ws_linear(other, w.qweight, w.scale, b, poisoned((rows, 4608), BF16))  # overwrites the buffers
    assert torch.equal(int8_ws.ws_linear(y2, w.qweight, w.scale, b, poisoned((rows, 4608), BF16)), own)


def _replays_match_eager(step) -> None:
    """step() captured in a CUDA graph: every replay (outputs poisoned first) gives the bits eager gave."""
    eager = step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step()
    for _ in range(3):
        for t in outs:
            t.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert all(torch.equal(t, e) for t, e in zip(outs, eager, strict=True))


@needs_gluon_hopper
def test_norm_and_projection_in_a_cuda_graph_with_pdl_match_eager(planes_format):
    # captured: the norm writes the planes and lets the projection launch at once (PDL); the projection's
    # producer sends its first weight tiles, then waits for the norm. Two products, as a decode step's layer has
    w, _, b, _ = int8_linear_case(4608, 4096, 8, BF16, True)
    w2, _, _, _ = int8_linear_case(27392, 4096, 8, BF16, False)
    x = torch.randn(8, 4096, dtype=BF16, device=DEVICE)
    nw = (1 + 0.1 * torch.randn(4096, device=DEVICE)).to(BF16)

    def step():
        y = rms_norm_triton(x, nw, 1e-5, planes=True)
        qkv = int8_linear_triton(y, w.qweight, w.scale, b, ws=True)
        y2, _ = rms_norm_triton(qkv[:, :4096].contiguous(), nw, 1e-5, x, planes=True)
        return qkv, int8_linear_triton(y2, w2.qweight, w2.scale, None, ws=True)

    _replays_match_eager(step)


def _decode_case(rows: int, ctx: int = 300):
    """A decode batch of ``rows`` sequences of ``ctx`` cached tokens (GLM-4's 32 / 2 heads, d=128) over a
    bf16 cache of shuffled 16-token blocks."""
    nblk = rows * -(-ctx // 16)
    k = torch.randn(nblk, 16, 2, 128, dtype=BF16, device=DEVICE)
    v = torch.randn_like(k)
    tables = torch.randperm(nblk, device=DEVICE).int().view(rows, -1)
    seq = torch.full((rows,), ctx, dtype=torch.int32, device=DEVICE)
    cu = torch.arange(rows + 1, dtype=torch.int32, device=DEVICE)
    q = torch.randn(rows, 32, 128, dtype=BF16, device=DEVICE)
    return q, k, v, tables, seq, cu, 1, 128**-0.5


def _takes_made_planes(x: torch.Tensor, w: Int8Weight) -> None:
    """The kernel that wrote rows x also wrote their planes: the projection on w takes them (no planes kernel)
    and gives the bits it gives when it makes them itself, close to the exact product."""
    rows, k = x.shape
    n = w.qweight.shape[0]
    assert int8_ws._planes_made(x, int8_ws._planes_key(x))
    own = int8_ws.ws_linear(
        x.clone(), w.qweight, w.scale, None, torch.empty(rows, n, dtype=BF16, device=DEVICE)
    )
    made = int8_ws.ws_linear(x, w.qweight, w.scale, None, poisoned((rows, n), BF16))
    assert torch.equal(made, own)
    assert_close(made, x.float() @ w.dequantize(torch.float32).T, BF16)


@needs_gluon_hopper
@pytest.mark.parametrize("rows", [2, 8, 17, 32])
@pytest.mark.parametrize("splits", [1, 2, 8, 16], ids=["1split", "fused", "8splits", "merge-kernel"])
def test_projection_takes_the_planes_the_decode_attention_wrote(rows, splits, planes_format):
    # the decode attention before an INT8 o_proj writes its output rows' tiled planes (planes=True): the
    # projection then skips the planes kernel and gives the bits it gives when it makes them itself. They take
    # a KV group's heads, which no program of the merge kernel holds: at up to TILED_FUSE_SPLITS splits the
    # merge is the decode kernel's (its bits), beyond them no planes are written; nor are row-scaled planes
    # (the planes kernel's to make)
    w, _, _, _ = int8_linear_case(4096, 4096, rows, BF16, False)
    args = _decode_case(rows)
    o = flash_decode_triton(*args, num_splits=splits, planes=True)
    x = o.view(rows, 4096)
    tiled = planes_format == "tiled"
    fuse = True if tiled and splits == 8 else None
    assert torch.equal(o, flash_decode_triton(*args, num_splits=splits, fuse_merge=fuse))
    made = tiled and splits <= 8
    assert int8_ws._planes_made(x, int8_ws._planes_key(x)) == made
    if made:
        _takes_made_planes(x, w)


@needs_gluon_hopper
@pytest.mark.parametrize("rows", [2, 8, 17, 32])
def test_projection_takes_the_planes_the_silu_wrote(rows, planes_format):
    # SiLU-and-multiply before the INT8 down projection writes its rows' tiled planes (planes=True): the
    # projection then skips the planes kernel and gives the bits it gives when it makes them itself;
    # row-scaled planes are the planes kernel's to make
    w, _, _, _ = int8_linear_case(4096, 13696, rows, BF16, False)
    g = torch.randn(rows, 2 * 13696, dtype=BF16, device=DEVICE) * 2
    x = silu_and_mul_triton(g, planes=True)
    assert torch.equal(x, silu_and_mul_triton(g))
    x = silu_and_mul_triton(g, planes=True)
    assert int8_ws._planes_made(x, int8_ws._planes_key(x)) == (planes_format == "tiled")
    if planes_format == "tiled":
        _takes_made_planes(x, w)


@needs_gluon_hopper
@pytest.mark.parametrize("splits", [1, 2, 8], ids=["1split", "fused", "merge-kernel"])
def test_layer_of_products_on_made_planes_in_a_cuda_graph_with_pdl_matches_eager(splits, planes_format):
    # captured: norm (planes) -> q/k/v -> decode attention (planes) -> o_proj -> norm (planes) -> gate/up ->
    # SiLU (planes) -> down, as a decode step's layer runs them, the products skipping their planes kernels:
    # replays give eager's bits
    wq, _, _, _ = int8_linear_case(4608, 4096, 8, BF16, False)
    wo, _, _, _ = int8_linear_case(4096, 4096, 8, BF16, False)
    wg, _, _, _ = int8_linear_case(27392, 4096, 8, BF16, False)
    wd, _, _, _ = int8_linear_case(4096, 13696, 8, BF16, False)
    args = list(_decode_case(8))
    x = torch.randn(8, 4096, dtype=BF16, device=DEVICE)
    nw = (1 + 0.1 * torch.randn(4096, device=DEVICE)).to(BF16)

    def step():
        y = rms_norm_triton(x, nw, 1e-5, planes=True)
        qkv = int8_linear_triton(y, wq.qweight, wq.scale, None, ws=True)
        args[0] = qkv[:, :4096].reshape(8, 32, 128)
        o = flash_decode_triton(*args, num_splits=splits, planes=True)
        a = int8_linear_triton(o.view(8, 4096), wo.qweight, wo.scale, None, ws=True)
        y2, _ = rms_norm_triton(a, nw, 1e-5, x, planes=True)
        gu = int8_linear_triton(y2, wg.qweight, wg.scale, None, ws=True)
        act = silu_and_mul_triton(gu, planes=True)
        return qkv, o, a, gu, act, int8_linear_triton(act, wd.qweight, wd.scale, None, ws=True)

    _replays_match_eager(step)


@needs_gluon_hopper
def test_ws_modes_pick_the_path_and_auto_measures_once(monkeypatch):
    w, x, b, exact = int8_linear_case(4096, 4096, 8, BF16, False)
    ws = int8_linear_triton(x, w.qweight, w.scale, b, ws=True)
    other = int8_linear_triton(x, w.qweight, w.scale, b, ws=False)
    for out in (ws, other):
        assert_close(out, exact, BF16)
    for value, want in (("on", ws), ("1", ws), ("off", other), ("0", other)):
        monkeypatch.setenv("AUTOGLM_W8_WS", value)
        assert torch.equal(int8_linear_triton(x, w.qweight, w.scale, b), want)
    monkeypatch.delenv("AUTOGLM_W8_WS")
    int8_matmul._WS.clear()
    out = int8_linear_triton(x, w.qweight, w.scale, b)
    (decision,) = int8_matmul.ws_decisions()
    assert (decision["rows_bucket"], decision["N"], decision["K"]) == (8, 4096, 4096)
    assert torch.equal(out, ws if decision["ws"] else other)
    int8_linear_triton(x, w.qweight, w.scale, b)
    assert len(int8_matmul.ws_decisions()) == 1
