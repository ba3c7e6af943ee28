"""W8A16 matmul against the dequantized torch reference (kernels.quant.linear_ref)."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from kernels import int8_matmul
from kernels.int8_matmul import int8_linear_triton, linear_int8_triton
from kernels.quant import Int8Weight, linear_ref
from tests.kernels.conftest import DEVICE, GPU, assert_close, poisoned

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
# (N, K): GLM-4-9B's fused q/k/v and down projections on the GPU; small odd shapes on the CPU
SHAPES = [(4608, 4096), (4096, 13696), (77, 123)] if GPU else [(48, 64), (77, 123)]
ROWS = [1, 8, 17, 32, 100, 1000] if GPU else [1, 2, 17, 100]


def _weight(n, k):
    return Int8Weight.quantize(torch.randn(n, k, device=DEVICE) * 0.05)


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_int8_linear_matches_dequantized_reference(dtype, shape, rows, bias):
    n, k = shape
    w = _weight(n, k)
    x = torch.randn(rows, k, dtype=dtype, device=DEVICE)
    b = torch.randn(n, dtype=dtype, device=DEVICE) if bias else None
    out = poisoned((rows, n), dtype)
    int8_linear_triton(x, w.qweight, w.scale, b, out=out)
    # against the float32 product with the dequantized weight (the reference rounds its bf16 GEMM output
    # once more before scaling, so compare both to the exact value)
    exact = x.float() @ w.dequantize(FP32).T + (b.float() if bias else 0)
    assert_close(out, exact, dtype)
    assert_close(linear_ref(x, w, b), exact, dtype)


@pytest.mark.parametrize(
    "config",
    [
        {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_N": 1, "SWAP": True},
        {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 64, "GROUP_N": 4, "SWAP": True},
        {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 64, "GROUP_N": 4, "SWAP": False},
    ],
    ids=["few-rows", "many-rows-swapped", "many-rows"],
)
def test_int8_linear_block_configs(config):
    # both config families, with K not a multiple of BLOCK_K and N, M not multiples of their tiles
    w = _weight(45, 100)
    x = torch.randn(37, 100, dtype=FP16, device=DEVICE)
    out = int8_linear_triton(x, w.qweight, w.scale, config=config)
    assert_close(out, x.float() @ w.dequantize(FP32).T, FP16)


def test_int8_linear_many_rows_dequantizes_then_multiplies():
    # from DEQUANT_ROWS rows on: a transient dequantized weight and torch.matmul
    w = _weight(24, 40)
    x = torch.randn(int8_matmul.DEQUANT_ROWS + 3, 40, dtype=BF16, device=DEVICE)
    b = torch.randn(24, dtype=BF16, device=DEVICE)
    out = poisoned((x.shape[0], 24), BF16)
    int8_linear_triton(x, w.qweight, w.scale, b, out=out)
    assert_close(out, x.float() @ w.dequantize(FP32).T + b.float(), BF16)
    assert torch.equal(int8_matmul.dequantize_triton(w.qweight, w.scale, FP32), w.dequantize(FP32))
    # into a caller's buffer (a view of a larger one, as benchmarks/w8_overlap.py double-buffers them); a
    # buffer of the wrong shape or dtype is refused
    buf = poisoned((2 * 24 * 40,), BF16)
    into = buf[: 24 * 40].view(24, 40)
    assert int8_matmul.dequantize_triton(w.qweight, w.scale, BF16, out=into) is into
    assert torch.equal(into, w.dequantize(BF16))
    assert buf[24 * 40 :].isnan().all()
    with pytest.raises(ValueError, match="contiguous"):
        int8_matmul.dequantize_triton(w.qweight, w.scale, FP32, out=into)


@pytest.mark.parametrize(
    "config",
    [
        {"BLOCK_N": 4, "BLOCK_K": 64, "SPLIT_K": 1, "DOT": False},
        {"BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 3, "DOT": False},
        {"BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 2, "DOT": True},
        {"BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 2, "DOT": True, "CVT": 1, "STAGES": 3},
        {"BLOCK_N": 16, "BLOCK_K": 64, "SPLIT_K": 1, "DOT": True, "CVT": 2, "STAGES": 3},
        {"BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 3, "DOT": False, "PRE_BYTES": 256},
        {"BLOCK_N": 4, "BLOCK_K": 64, "SPLIT_K": 1, "DOT": False, "PRE_BYTES": 1024},
    ],
    ids=[
        "fma",
        "fma-split3",
        "dot-split2",
        "dot-split2-convert-first",
        "dot-triton-convert",
        "fma-preload-split3",
        "fma-preload-all",
    ],
)
def test_int8_few_rows_one_row_configs(config):
    # one row: elementwise (FMA) and dot variants (each int8 conversion placement), with and without split K
    # (3 splits of 48 leave the last split a partial tile), K a multiple of BLOCK_K or not, N not a multiple
    # of BLOCK_N
    w = _weight(45, 128)
    x = torch.randn(1, 128, dtype=BF16, device=DEVICE)
    b = torch.randn(45, dtype=BF16, device=DEVICE)
    out = poisoned((1, 45), BF16)
    int8_linear_triton(x, w.qweight, w.scale, b, config=config, out=out)
    assert_close(out, x.float() @ w.dequantize(FP32).T + b.float(), BF16)
    w = _weight(45, 100)
    x = torch.randn(1, 100, dtype=BF16, device=DEVICE)
    assert_close(
        int8_linear_triton(x, w.qweight, w.scale, config=config), x.float() @ w.dequantize(FP32).T, BF16
    )


@pytest.mark.parametrize("rows", [2, 17, 32])
@pytest.mark.parametrize("split", [1, 4])
def test_int8_few_rows_split_k(rows, split):
    # the dot variant over several rows; 4 splits of K=200 with 32-wide tiles leave one split empty-handed
    # past K (it must still write its zero partial), float32 activations (fp32 tolerance)
    w = _weight(37, 200)
    x = torch.randn(rows, 200, dtype=FP32, device=DEVICE)
    b = torch.randn(37, dtype=FP32, device=DEVICE)
    out = poisoned((rows, 37), FP32)
    config = {"BLOCK_M": max(16, 1 << (rows - 1).bit_length()), "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": split,
              "DOT": True}  # fmt: skip
    int8_linear_triton(x, w.qweight, w.scale, b, config=config, out=out)
    assert_close(out, x.double() @ w.dequantize(FP32).double().T + b.double(), FP32)
    # the last split of each column tile summed the partials and reset its arrival counter: a second launch
    # (as a CUDA-graph replay would do) gets the same result
    assert int8_matmul._split_counters(x.device, 1).count_nonzero().item() == 0
    assert torch.equal(int8_linear_triton(x, w.qweight, w.scale, b, config=config), out)


IMMA_ROWS = [2, 8, 17, 32, 64] if GPU else [2, 5, 17, 33]


def _outlier_case(rows: int, shape: tuple[int, int], dtype):
    """A weight, rows with one activation 100x the others (as LLM hidden states have: it coarsens every other
    element's share of a row scale), a bias, and the exact product."""
    n, k = shape
    w = _weight(n, k)
    x = torch.randn(rows, k, dtype=FP32, device=DEVICE)
    x[:, 7 % k] *= 100
    x = x.to(dtype)
    b = torch.randn(n, dtype=dtype, device=DEVICE)
    return w, x, b, x.double() @ w.dequantize(FP32).double().T + b.double()


@pytest.mark.parametrize("rows", IMMA_ROWS)
@pytest.mark.parametrize("split", [1, 3])
@pytest.mark.parametrize("dtype", [BF16, FP16])
def test_int8_imma_rows_match_the_dequantized_reference(rows, split, dtype):
    # the rows as two int8 planes on int8 x int8 dots (IMMA): K not a multiple of the tile, split K, rows
    # not a multiple of the row tile, a bias, and an activation outlier 100x the others (as LLM hidden
    # states have) that coarsens every other element's share of the row scale
    n = 4608 if GPU else 37
    w, x, b, exact = _outlier_case(rows, (n, 4096) if GPU else (n, 123), dtype)
    bm = max(16, 1 << (rows - 1).bit_length())
    base = {
        "BLOCK_M": bm,
        "BLOCK_N": 64 if GPU else 16,
        "BLOCK_K": 256 if GPU else 32,
        "SPLIT_K": split,
        "DOT": True,
    }
    out = poisoned((rows, n), dtype)
    int8_linear_triton(x, w.qweight, w.scale, b, config={**base, "IMMA": True}, out=out)
    assert_close(out, exact, dtype)
    # the dots are exact: from the rows the planes stand for, as close as converting the weights to 16 bits
    # gets from the rows themselves (both round only the output to the dtype); the planes' own rounding is
    # test_split_rows_planes_rebuild_the_rows' (with this outlier, fp16: ~5e-4 of the output, bf16 below its
    # own rounding)
    converted = int8_linear_triton(x, w.qweight, w.scale, b, config=base)
    planes, sx = int8_matmul.split_rows(x)
    rebuilt = sx.double()[:, None] * (planes[0].double() + planes[1].double() / int8_matmul.LO_STEPS.value)
    of_planes = rebuilt @ w.dequantize(FP32).double().T + b.double()
    err = (out.double() - of_planes).norm() / of_planes.norm()
    assert err <= 1.5 * (converted.double() - exact).norm() / exact.norm() + 1e-6
    assert int8_matmul._split_counters(x.device, 1).count_nonzero().item() == 0


@pytest.mark.parametrize("rows", [100, 300] if not GPU else [100, 256, 1000])
@pytest.mark.parametrize("dtype", [BF16, FP16])
def test_int8_imma_gemm_matches_the_dequantized_reference(rows, dtype, monkeypatch):
    # the many-rows GEMM on the planes: rows not a multiple of the row tile, K not of the K tile, a bias, an
    # activation outlier; forced small tiles on the CPU, the IMMA autotuner's on the GPU
    monkeypatch.setenv("AUTOGLM_W8_IMMA", "1")
    n = 4608 if GPU else 40
    w, x, b, exact = _outlier_case(rows, (n, 4096) if GPU else (n, 100), dtype)
    tile = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_N": 2}
    out = poisoned((rows, n), dtype)
    int8_linear_triton(
        x, w.qweight, w.scale, b, config=None if GPU else {**tile, "SWAP": False, "IMMA": True}, out=out
    )
    assert_close(out, exact, dtype)
    with pytest.raises(ValueError, match="SWAP off"):
        int8_linear_triton(x, w.qweight, w.scale, config={**tile, "SWAP": True, "IMMA": True})


def test_split_rows_planes_rebuild_the_rows():
    k = 300
    x = torch.randn(4, k, dtype=FP32, device=DEVICE)
    x[1] = 0  # a zero row: scale 1, zero planes
    x[2] = torch.arange(-127, 173, dtype=FP32, device=DEVICE).clamp(max=127)  # integers up to 127: exact
    x[3, 5] = 1e4  # an outlier
    x = x.to(BF16)
    planes, sx = int8_matmul.split_rows(x)
    assert planes.shape == (2, 4, k) and planes.dtype == torch.int8 and sx.shape == (4,)
    assert planes.abs().max() <= 127
    rebuilt = sx[:, None] * (planes[0].float() + planes[1].float() / 254)
    amax = x.float().abs().amax(dim=1)
    assert ((rebuilt - x.float()).abs().amax(dim=1) <= amax / (2 * 127 * 254) * 1.01 + 1e-30).all()
    assert sx[1] == 1 and not planes[:, 1].any()
    assert torch.equal(planes[0, 2].float(), x[2].float()) and not planes[1, 2].any()


def test_imma_switch_routes_16bit_rows_and_keeps_float32(monkeypatch):
    # AUTOGLM_W8_IMMA=1: 2..FEW_ROWS rows of 16-bit activations take the planes; float32 rows and one row do
    # not (float32's tolerance is tighter than the planes' rounding); a forced IMMA config must fit
    monkeypatch.setenv("AUTOGLM_W8_IMMA", "1")
    monkeypatch.setenv("AUTOGLM_W8_WS", "off")  # on a Hopper GPU the warp-specialized path comes first
    w = _weight(40, 96)
    for rows, dtype in ((1, BF16), (3, BF16), (int8_matmul.FEW_ROWS, FP16), (3, FP32)):
        x = torch.randn(rows, 96, dtype=dtype, device=DEVICE)
        assert_close(
            int8_linear_triton(x, w.qweight, w.scale), x.double() @ w.dequantize(FP32).double().T, dtype
        )
    x = torch.randn(3, 96, dtype=FP32, device=DEVICE)
    with pytest.raises(ValueError, match="16-bit rows"):
        int8_linear_triton(x, w.qweight, w.scale, config={"BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "DOT": True,
                                                          "IMMA": True})  # fmt: skip


@pytest.mark.parametrize("rows", [3, 20, 100])
def test_imma_modes_pick_the_path_and_auto_measures_once_per_shape(rows, monkeypatch):
    # AUTOGLM_W8_IMMA=on / off force the int8 x int8 path / the converting (or dequantizing) one; auto (the
    # default) measures both once per shape on the GPU and keeps the faster (the interpreter: converting).
    # The two paths round differently (an outlier row makes the planes coarse), so each result shows its path
    monkeypatch.setenv("AUTOGLM_W8_WS", "off")  # on a Hopper GPU the warp-specialized path comes first
    w, x, b, exact = _outlier_case(rows, (48, 96), BF16)
    planes = int8_linear_triton(x, w.qweight, w.scale, b, imma=True)
    converted = int8_linear_triton(x, w.qweight, w.scale, b, imma=False)
    assert not torch.equal(planes, converted)
    for out in (planes, converted):
        assert_close(out, exact, BF16)
    for value, mode, want in (("1", "on", planes), ("on", "on", planes), ("0", "off", converted),
                              ("off", "off", converted)):  # fmt: skip
        monkeypatch.setenv("AUTOGLM_W8_IMMA", value)
        assert int8_matmul.imma_mode() == mode
        assert torch.equal(int8_linear_triton(x, w.qweight, w.scale, b), want)
    # one row and float32 rows never take the planes, whatever the mode
    assert not int8_matmul.imma_eligible(x[:1], 1)
    assert not int8_matmul.imma_eligible(x.float(), rows)
    assert not int8_matmul.imma_eligible(x, int8_matmul.IMMA_ROWS + 1)
    monkeypatch.delenv("AUTOGLM_W8_IMMA")
    assert int8_matmul.imma_mode() == "auto"
    int8_matmul._IMMA.clear()
    out = int8_linear_triton(x, w.qweight, w.scale, b)
    if not GPU or rows < int8_matmul.IMMA_MIN_ROWS:
        assert torch.equal(out, converted) and not int8_matmul._IMMA
        return
    (decision,) = int8_matmul.imma_decisions()
    assert (decision["rows_bucket"], decision["N"], decision["K"]) == (triton.next_power_of_2(rows), 48, 96)
    assert torch.equal(out, planes if decision["imma"] else converted)
    int8_linear_triton(x, w.qweight, w.scale, b)
    assert len(int8_matmul.imma_decisions()) == 1


def test_int8_few_rows_rejects_a_row_tile_smaller_than_the_rows():
    w = _weight(8, 32)
    x = torch.randn(20, 32, dtype=BF16, device=DEVICE)
    with pytest.raises(ValueError, match="cannot cover 20 rows"):
        int8_linear_triton(x, w.qweight, w.scale, config={"BLOCK_M": 16, "BLOCK_N": 8, "BLOCK_K": 32,
                                                          "SPLIT_K": 1, "DOT": True})  # fmt: skip


def test_max_split_k_bounds_the_partial_traffic():
    # partial sums: 8 bytes per row and split, at most half of K (the weight bytes of a column)
    assert int8_matmul.max_split_k(1, 4096) == int8_matmul.MAX_SPLIT_K
    assert int8_matmul.max_split_k(64, 4096) == 4
    assert int8_matmul.max_split_k(64, 13696) == 8
    assert int8_matmul.max_split_k(32, 1000) == 1
    assert int8_matmul.max_split_k(8, 100) == 1


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "effects"])
@pytest.mark.parametrize("dtype", [BF16, FP32, FP16])
def test_int8_to_float_is_exact_for_every_int8_value(dtype, pure):
    # the conversion the int8 kernels use (on the GPU the byte-permute trick, under the interpreter .to)
    vals = torch.arange(-128, 128, dtype=torch.int8, device=DEVICE).repeat(4)
    out = poisoned((vals.numel(),), dtype)
    _convert_kernel[(1,)](vals, out, BLOCK=vals.numel(), FAST=int8_matmul.FAST_CVT, PURE=pure)
    assert torch.equal(out, vals.to(dtype))


@triton.jit
def _convert_kernel(X_ptr, Y_ptr, BLOCK: tl.constexpr, FAST: tl.constexpr, PURE: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    y = int8_matmul.int8_to_float(tl.load(X_ptr + offs), Y_ptr.dtype.element_ty, FAST, PURE)
    tl.store(Y_ptr + offs, y)


def test_linear_int8_wrapper_keeps_leading_dims():
    w = _weight(24, 32)
    x = torch.randn(2, 3, 32, dtype=BF16, device=DEVICE)
    out = linear_int8_triton(x, w)
    assert out.shape == (2, 3, 24)
    assert_close(out, linear_ref(x.reshape(6, 32), w).reshape(2, 3, 24), BF16)


def test_int8_linear_rejects_float_weight():
    with pytest.raises(ValueError, match="int8"):
        int8_linear_triton(
            torch.randn(2, 8, device=DEVICE), torch.randn(4, 8, device=DEVICE), torch.ones(4, device=DEVICE)
        )


# --- the same few-rows kernel with 16-bit weights (kernels.skinny's alternative to cuBLAS) ---


@pytest.mark.parametrize("dtype", [BF16, FP16, FP32])
@pytest.mark.parametrize("rows", [1, 3, 17, int8_matmul.FEW_ROWS])
@pytest.mark.parametrize("split", [1, 3])
def test_few_rows_16bit_weights_match_linear(dtype, rows, split):
    # the weight multiplies as it is (no int8 conversion, no scale); bias, K not a multiple of BLOCK_K, N not a
    # multiple of BLOCK_N, split K with a partial last split; one row takes the FMA variant, more the dot
    n, k = (45, 100)
    w = torch.randn(n, k, dtype=dtype, device=DEVICE) * 0.05
    x = torch.randn(rows, k, dtype=dtype, device=DEVICE)
    b = torch.randn(n, dtype=dtype, device=DEVICE)
    config = {"BLOCK_M": max(16, 1 << (rows - 1).bit_length()), "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": split,
              "DOT": rows > 1}  # fmt: skip
    out = poisoned((rows, n), dtype)
    int8_matmul.few_rows_linear_triton(x, w, b, config=config, out=out)
    assert_close(out, x.double() @ w.double().T + b.double(), dtype)
    assert torch.equal(int8_matmul.few_rows_linear_triton(x, w, b, config=config), out)


@pytest.mark.parametrize("split", [1, 3])
def test_one_row_preload_before_the_wait_matches_linear(split):
    # one row under PDL loads the first PRE_BYTES of each program's weight rows before waiting for the previous
    # kernel, and sums them after the loop: 16 of 100 columns (K past a tile boundary), or all of a split
    n, k = 45, 100
    w = torch.randn(n, k, dtype=BF16, device=DEVICE) * 0.05
    x = torch.randn(1, k, dtype=BF16, device=DEVICE)
    b = torch.randn(n, dtype=BF16, device=DEVICE)
    for pre in (512, 4096):
        config = {"BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": split, "DOT": False, "PRE_BYTES": pre}
        out = poisoned((1, n), BF16)
        int8_matmul.few_rows_linear_triton(x, w, b, config=config, out=out)
        assert_close(out, x.double() @ w.double().T + b.double(), BF16)


@pytest.mark.parametrize("rows", [2, 17])
@pytest.mark.parametrize("split", [1, 3, 8])
def test_dot_preload_before_the_wait_matches_linear(rows, split):
    # several rows under PDL: each program loads its first whole K tile before waiting for the previous kernel
    # and multiplies it just after; K=100 with 32-wide tiles: 3 splits leave the last a partial tile, 8 splits
    # leave some splits shorter than a tile (nothing preloaded) or empty (a zero partial). int8 weights and
    # 16-bit ones (the tile's bytes decide: PRE_BYTES 128 preloads no 16x32 tile, 256 the int8 one, 512 both)
    n, k = 45, 100
    x = torch.randn(rows, k, dtype=BF16, device=DEVICE)
    b = torch.randn(n, dtype=BF16, device=DEVICE)
    w8 = _weight(n, k)
    w16 = torch.randn(n, k, dtype=BF16, device=DEVICE) * 0.05
    for pre in (128, 256, 512):
        config = {"BLOCK_M": 16 if rows <= 16 else 32, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": split, "DOT": True,
                  "PRE_BYTES": pre}  # fmt: skip
        out = poisoned((rows, n), BF16)
        int8_linear_triton(x, w8.qweight, w8.scale, b, config=dict(config), out=out)
        assert_close(out, x.float() @ w8.dequantize(FP32).T + b.float(), BF16)
        out = poisoned((rows, n), BF16)
        int8_matmul.few_rows_linear_triton(x, w16, b, config=dict(config), out=out)
        assert_close(out, x.double() @ w16.double().T + b.double(), BF16)


def test_few_rows_16bit_autotuned_path_and_checks():
    # without a config (the interpreter's fixed one on the CPU, the autotuner on the GPU), leading dims kept
    w = torch.randn(24, 64, dtype=BF16, device=DEVICE)
    x = torch.randn(2, 3, 64, dtype=BF16, device=DEVICE)
    out = int8_matmul.few_rows_linear_triton(x, w)
    assert out.shape == (2, 3, 24)
    assert_close(out, (x.reshape(6, 64).float() @ w.float().T).reshape(2, 3, 24), BF16)
    with pytest.raises(ValueError, match="at most"):
        int8_matmul.few_rows_linear_triton(
            torch.randn(int8_matmul.FEW_ROWS + 1, 64, dtype=BF16, device=DEVICE), w
        )
    with pytest.raises(ValueError, match="weight"):
        int8_matmul.few_rows_linear_triton(x, w.float())


def test_skinny_linear_modes(monkeypatch):
    from kernels import skinny

    w = torch.randn(40, 64, dtype=BF16, device=DEVICE)
    b = torch.randn(40, dtype=BF16, device=DEVICE)
    x = torch.randn(8, 64, dtype=BF16, device=DEVICE)
    monkeypatch.setenv("AUTOGLM_SKINNY", "off")
    assert not skinny.use_few_rows(x, w, b)
    monkeypatch.setenv("AUTOGLM_SKINNY", "on")
    assert skinny.use_few_rows(x, w, b)
    assert not skinny.use_few_rows(torch.randn(int8_matmul.FEW_ROWS + 1, 64, dtype=BF16, device=DEVICE), w, b)
    assert_close(skinny.linear_triton(x, w, b), x.float() @ w.float().T + b.float(), BF16)
    monkeypatch.setenv("AUTOGLM_SKINNY", "auto")
    skinny._CHOICE.clear()
    # auto: measured once per shape (on the GPU; the interpreter always takes the kernel), then remembered
    assert_close(skinny.linear_triton(x, w, b), x.float() @ w.float().T + b.float(), BF16)
    if GPU:
        assert len(skinny._CHOICE) == 1


@pytest.mark.skipif(not GPU, reason="needs a CUDA device")
def test_pdl_chain_in_a_cuda_graph_matches_eager():
    """Captured in a CUDA graph the decode kernels launch with programmatic dependent launch (sm_90+): norm ->
    one-row int8 matmul (weights preloaded before its wait) -> SiLU-and-mul -> one-row 16-bit matmul give the
    eager chain's result (eagerly nothing launches that way)."""
    from kernels import dispatch
    from kernels.triton_common import pdl_enabled

    torch.manual_seed(0)
    h = torch.randn(1, 4096, dtype=BF16, device=DEVICE)
    norm_w = torch.rand(4096, dtype=BF16, device=DEVICE) + 0.5
    up = _weight(2 * 1536, 4096)
    down = torch.randn(4096, 1536, dtype=BF16, device=DEVICE) * 0.02

    def chain():
        x = dispatch.rms_norm(h, norm_w, 1e-5)
        g = int8_linear_triton(x, up.qweight, up.scale)
        return int8_matmul.few_rows_linear_triton(dispatch.silu_and_mul(g), down)

    assert not pdl_enabled(h)
    eager = chain()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        assert pdl_enabled(h) == (torch.cuda.get_device_capability()[0] >= 9)
        out = chain()
    graph.replay()
    torch.cuda.synchronize()
    assert_close(out, eager.float(), BF16, tol=5e-3)
