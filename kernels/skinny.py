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
as CUDA-graph replays with L2 flushed (``_graph_time``; after the few-rows kernel's own autotuning) and keeps
the faster; the few-rows kernel must win by ``MARGIN``. The choice happens in the engine's eager warm-up
before any CUDA graph is captured; a first call during capture takes cuBLAS (nothing can be timed then).
AUTOGLM_SKINNY=off keeps cuBLAS everywhere, =on forces the few-rows kernel up to FEW_ROWS rows (benchmarks
compare the two).
"""

from __future__ import annotations

import logging
import os

import torch

from .int8_matmul import FEW_ROWS, few_rows_linear_triton
from .quant import linear_ref
from .triton_common import INTERPRET, next_pow2

log = logging.getLogger(__name__)

# the few-rows kernel must be at least this much faster than cuBLAS to be chosen (timing noise of ~10 us
# kernels is a few per cent; a wrong pick of equals costs nothing, a flip-flop between runs only confuses)
MARGIN = 0.97

_CHOICE: dict[tuple, bool] = {}


def mode() -> str:
    """'auto' (measure), 'on' (few-rows kernel up to FEW_ROWS rows) or 'off' (cuBLAS): AUTOGLM_SKINNY."""
    value = os.environ.get("AUTOGLM_SKINNY", "auto").lower()
    return value if value in ("on", "off") else "auto"


def _graph_time(fn) -> float:
    """Milliseconds of one ``fn()`` replayed from a CUDA graph, L2 flushed before each replay.

    NOTE: as the engine runs it (a captured decode step, weights not in L2). Timed eagerly instead, the
    few-rows kernel's Python launch path (~40-80 us: the autotuner's key, the partial-sum buffer) outlasted
    its ~10 us on the GPU and cuBLAS won every narrow layer (H200: qkv at one row 39.8 vs 20.6 us eagerly,
    13.1 vs 14.7 us in graphs)."""
    import triton.testing

    fn()  # compiled and autotuned before capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    try:
        return triton.testing.do_bench(graph.replay, warmup=5, rep=25)
    finally:
        del graph


def use_few_rows(x2: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether ``x2 (M, K) @ w.T`` runs the few-rows kernel (see the module docstring)."""
    M = x2.shape[0]
    how = mode()
    if how == "off" or M > FEW_ROWS or M == 0 or w.dtype != x2.dtype:
        return False
    if how == "on" or INTERPRET:
        return True
    key = (next_pow2(M), *w.shape, w.dtype, bias is not None, x2.device)
    choice = _CHOICE.get(key)
    if choice is None:
        if torch.cuda.is_current_stream_capturing():
            return False  # not measured before capture (a warm-up would have): the library's kernel
        few = _graph_time(lambda: few_rows_linear_triton(x2, w, bias))
        lib = _graph_time(lambda: linear_ref(x2, w, bias))
        choice = _CHOICE[key] = few < MARGIN * lib
        log.info(
            "linear %d rows x (%d, %d) %s: few-rows kernel %.1f us, cuBLAS %.1f us -> %s",
            M, *w.shape, str(w.dtype).removeprefix("torch."), few * 1e3, lib * 1e3, "few-rows" if choice else "cuBLAS",
        )  # fmt: skip
    return choice


def decisions() -> list[dict]:
    """What this process decided so far, per shape (benchmarks record it)."""
    return [
        {"rows_bucket": k[0], "N": k[1], "K": k[2], "dtype": str(k[3]), "bias": k[4], "few_rows": v}
        for k, v in _CHOICE.items()
    ]


def linear_triton(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``linear`` of the kernel contract for a 16-bit weight: the few-rows kernel where it is faster, else
    the library (cuBLAS through ``F.linear``)."""
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) == 1 and use_few_rows(x2, w, bias):
        return few_rows_linear_triton(x, w, bias)
    return linear_ref(x, w, bias)
