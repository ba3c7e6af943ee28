"""16-bit ``linear`` at few rows: cuBLAS or our split-K few-rows kernel, whichever is faster on this GPU.

A decode step multiplies a handful to a few dozen rows by every weight matrix: memory bound, so what counts
is how close a kernel streams the weights to the copy bandwidth. In CUDA graphs with L2 cold (an H200,
GLM-4-9B shapes, `benchmarks/skinny.py`), cuBLAS read the narrow layers qkv (4608 x 4096) and o_proj
(4096 x 4096) at 56-69% of the copy bandwidth at 1-64 rows, down at 73-82%, gate_up at 83-93%, lm_head at
83-95%. The W8A16 few-rows kernel (``int8_matmul``: split K, the splits summed in the same launch) with
16-bit weights is the same kernel without the int8 conversion; it was faster at one row (qkv 1.12x, o_proj
1.24x, down 1.08x, lm_head 1.19x: 102% of copy, a read-only stream) and for o_proj up to 32 rows, and slower
at 64 rows on qkv, o_proj and gate_up.

Which one runs is measured, not assumed: the first call of each (row bucket, N, K, dtype, bias) times both
as CUDA-graph replays with L2 flushed (``measure.graph_time``; after the few-rows kernel's own autotuning) and
keeps the faster; the few-rows kernel must win by ``measure.MARGIN``. The choice happens in the engine's eager warm-up
before any CUDA graph is captured; a first call during capture takes cuBLAS (nothing can be timed then).
AUTOGLM_SKINNY=off keeps cuBLAS everywhere, =on forces the few-rows kernel up to FEW_ROWS rows (benchmarks
compare the two).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from . import measure
from .int8_matmul import FEW_ROWS, few_rows_linear_triton
from .quant import linear_ref
from .triton_common import INTERPRET, next_pow2

_CHOICE: dict[tuple, bool] = {}  # plain projections: (row bucket, N, K, dtype, bias, device) -> few-rows
_FUSED: dict[tuple, bool] = {}  # projections with an epilogue: (what, *the same) -> fused


def mode() -> str:
    """'auto' (measure), 'on' (few-rows kernel up to FEW_ROWS rows) or 'off' (cuBLAS): AUTOGLM_SKINNY."""
    value = os.environ.get("AUTOGLM_SKINNY", "auto").lower()
    return value if value in ("on", "off") else "auto"


def use_few_rows(x2: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether ``x2 (M, K) @ w.T`` runs the few-rows kernel (see the module docstring)."""
    M = x2.shape[0]
    if M > FEW_ROWS or M == 0 or w.dtype != x2.dtype:
        return False
    key = (next_pow2(M), *w.shape, w.dtype, bias is not None, x2.device)
    return _decide(
        _CHOICE,
        key,
        lambda: few_rows_linear_triton(x2, w, bias),
        lambda: linear_ref(x2, w, bias),
        f"linear {M} rows x ({w.shape[0]}, {w.shape[1]}) {str(w.dtype).removeprefix('torch.')}: few-rows kernel",
        (x2,),
    )


def use_fused(
    what: str,
    x2: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    fused: Callable,
    unfused: Callable,
) -> bool:
    """Whether a projection with an epilogue in the few-rows kernel (``fused()``, one launch: ``what``, e.g. the
    q/k/v projection with rotary and the cache write) runs instead of the projection as ``linear_triton``
    runs it followed by the op the epilogue replaces (``unfused()``). Measured once per (what, shape) as
    ``use_few_rows`` is, against the pair: the epilogue saves a launch, so the few-rows kernel can win the
    pair where the library wins the bare projection.
    NOTE: an H100 (2026-12-06) gave bf16 q/k/v at one row to cuBLAS when only the projections were compared,
    which also dropped the fused rotary: the separate rotary launch (~2 us a layer on the H200) came back."""
    if x2.shape[0] > FEW_ROWS or x2.shape[0] == 0 or w.dtype != x2.dtype:
        return False
    key = (what, next_pow2(x2.shape[0]), *w.shape, w.dtype, bias is not None, x2.device)
    return _decide(
        _FUSED, key, fused, unfused, f"{what} {x2.shape[0]} rows x ({w.shape[0]}, {w.shape[1]}): fused", (x2,)
    )


def _decide(memo: dict, key: tuple, few: Callable, lib: Callable, label: str, inputs: tuple = ()) -> bool:
    """The mode's answer, else ``measure.decide`` (measured once per key: our kernel must win by its MARGIN)."""
    how = mode()
    if how == "off":
        return False
    if how == "on" or INTERPRET:
        return True
    return measure.decide(memo, key, few, lib, label, inputs)


def decisions() -> list[dict]:
    """What this process decided so far, per shape (benchmarks record it)."""
    plain = [
        {"rows_bucket": k[0], "N": k[1], "K": k[2], "dtype": str(k[3]), "bias": k[4], "few_rows": v}
        for k, v in _CHOICE.items()
    ]
    return plain + [
        {
            "fused": k[0],
            "rows_bucket": k[1],
            "N": k[2],
            "K": k[3],
            "dtype": str(k[4]),
            "bias": k[5],
            "few_rows": v,
        }
        for k, v in _FUSED.items()
    ]


def linear_triton(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``linear`` of the kernel contract for a 16-bit weight: the few-rows kernel where it is faster, else
    the library (cuBLAS through ``F.linear``)."""
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) == 1 and use_few_rows(x2, w, bias):
        return few_rows_linear_triton(x, w, bias)
    return linear_ref(x, w, bias)
