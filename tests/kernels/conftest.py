"""Triton kernel parity tests.

Without a GPU the kernels run on the CPU under Triton's interpreter, at small sizes; TRITON_INTERPRET must
be set before triton is first imported, hence here. With a GPU the same tests run compiled at full sizes.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
TOL = {torch.bfloat16: 1e-2, torch.float16: 1e-2, torch.float32: 1e-4}


def _gluon_hopper() -> bool:
    from kernels.gluon_common import HAS_GLUON  # after TRITON_INTERPRET is settled (above)

    return GPU and torch.cuda.get_device_capability() == (9, 0) and HAS_GLUON


def int8_linear_case(n: int, k: int, rows: int, dtype: torch.dtype, bias: bool) -> tuple:
    """An int8 weight (n, k), rows x (rows, k) of dtype, a bias (n,) or None, and the exact float32 product
    x @ dequantized W.T (+ bias) the W8A16 kernels are checked against."""
    from kernels.quant import Int8Weight

    w = Int8Weight.quantize(torch.randn(n, k, device=DEVICE) * 0.05)
    x = torch.randn(rows, k, device=DEVICE).to(dtype)
    b = torch.randn(n, device=DEVICE).to(dtype) if bias else None
    exact = x.float() @ w.dequantize(torch.float32).T + (b.float() if bias else 0)
    return w, x, b, exact


# the Gluon kernels (kernels/int8_ws.py, kernels/int8_gemm_ws.py) run on an H100/H200 only
GLUON_HOPPER = _gluon_hopper()
needs_gluon_hopper = pytest.mark.skipif(
    not GLUON_HOPPER,
    reason="SKIPPED LOUDLY: the Gluon GEMMs run only on an H100/H200 (wgmma, TMA); Triton's CPU interpreter "
    "cannot run Gluon: CI compiles them for sm_90 instead (test_hopper_compile)",
)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64."""
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, tol: float | None = None) -> None:
    """Every element written (no NaN left from the poisoned buffer) and the relative error in tolerance."""
    assert out.shape == ref.shape, f"{out.shape=} {ref.shape=}"
    assert not out.isnan().any(), f"{out.isnan().sum().item()} elements left unwritten (NaN)"
    err = rel_err(out, ref)
    limit = TOL[dtype] if tol is None else tol
    assert err <= limit, f"relative error {err:.3e} > {limit:.0e} ({dtype})"


def poisoned(shape, dtype) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def planes_buffers(rows: int, k: int, tiled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Planes and scales buffers (per row, or tiled: per row and 128-column tile), poisoned."""
    from kernels import int8_ws  # after TRITON_INTERPRET is settled (above)

    mp = int8_ws.row_bucket(rows)
    planes = torch.full((2, mp, k), 99, dtype=torch.int8, device=DEVICE)
    shape = (int8_ws.scale_groups(k), int8_ws.WS_ROWS) if tiled else (mp,)
    return planes, torch.full(shape, float("nan"), device=DEVICE)


def assert_planes_of(rows: torch.Tensor, planes: torch.Tensor, sx: torch.Tensor) -> None:
    """planes/sx hold the planes kernel's bits for ``rows`` in their first rows (tiled if sx is 2-D), the
    rest untouched."""
    from kernels import int8_matmul, int8_ws

    m = rows.shape[0]
    if sx.dim() == 2:
        want_planes, want_sx = planes_buffers(m, rows.shape[1], True)
        int8_ws.split_planes(rows, want_planes, want_sx)
        assert torch.equal(sx[:, :m], want_sx[:, :m]) and torch.isnan(sx[:, m:]).all()
    else:
        want_planes, want_sx = int8_matmul.split_rows(rows)
        assert torch.equal(sx[:m], want_sx)
    assert torch.equal(planes[:, :m], want_planes[:, :m])
    assert (planes[:, m:] == 99).all()
