"""Choices between two ways of computing the same thing, measured once per shape on this GPU.

Which kernel is faster for a given shape depends on the card (an H100 and an H200 differ in bandwidth, not
in compute units), so the few places where two correct paths compete within a few per cent (``skinny``:
cuBLAS or our few-rows kernel for 16-bit weights; ``int8_matmul``: converting the int8 weights or splitting
the rows into int8 planes for the int8 tensor cores) time both on the first call of each shape and keep the
faster. The engine makes its first calls eagerly before capturing CUDA graphs, so every choice a graph uses
is measured; a first call during capture takes the library's (or the established) way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

# ours must be at least this much faster to be chosen (timing noise of ~10 us kernels is a few per cent; a
# wrong pick of equals costs nothing, a flip-flop between runs only confuses)
MARGIN = 0.97


def graph_time(fn: Callable) -> float:
    """Milliseconds of one ``fn()`` replayed from a CUDA graph, L2 flushed before each replay.

    NOTE: as the engine runs it (a captured decode step, weights not in L2). Timed eagerly instead, the
    few-rows kernel's Python launch path (~40-80 us: the autotuner's key, the partial-sum buffer) outlasted
    its ~10 us on the GPU and cuBLAS won every narrow layer (H200: qkv at one row 39.8 vs 20.6 us eagerly,
    13.1 vs 14.7 us in graphs)."""
    import triton.testing

    fn()  # compiled and autotuned before capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    # thread_local: a first call while another thread uses CUDA (the API's embedder) neither breaks it nor fails
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        fn()
    try:
        return triton.testing.do_bench(graph.replay, warmup=5, rep=25)
    finally:
        del graph


def decide(memo: dict, key: tuple, ours: Callable, theirs: Callable, label: str) -> bool:
    """``memo[key]``, else the graph timings of ``ours`` and ``theirs`` (the library's or the established
    way), kept: ours must win by ``MARGIN``. During a CUDA graph capture nothing can be timed: theirs."""
    choice = memo.get(key)
    if choice is None:
        if torch.cuda.is_current_stream_capturing():
            return False
        t_ours = graph_time(ours)
        t_theirs = graph_time(theirs)
        choice = memo[key] = t_ours < MARGIN * t_theirs
        log.info(
            "%s %.1f us, otherwise %.1f us -> %s",
            label,
            t_ours * 1e3,
            t_theirs * 1e3,
            "yes" if choice else "no",
        )
    return choice
