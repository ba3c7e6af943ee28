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


# calls per timed graph; each follows a read of twice the L2 (its own weights come from memory, as in a step)
REPS = 8


def _capture(body: Callable) -> torch.cuda.CUDAGraph:
    graph = torch.cuda.CUDAGraph()
    # thread_local: a first call while another thread uses CUDA (the API's embedder) neither breaks it nor fails
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        body()
    return graph


def graph_time(fn: Callable, inputs: tuple[torch.Tensor, ...] = ()) -> float:
    """Milliseconds of one ``fn()`` in a CUDA graph, as the engine runs it (a captured step, weights not in L2).

    One graph replays REPS x (a read of twice the L2, ``fn()``), another only the reads; the difference over
    REPS is fn's time, without the graph's own launch. (A single-call replay included it: on an H100 it timed
    q/k/v at 32 rows as 21.0 vs 22.0 us where the two paths ran 15.1 vs 17.5 in a graph of layers, so the
    margin acted as ~6%, RESULTS.md "W8A16 on int8 tensor cores, measured".) The reads leave L2 full of clean
    lines, as a step that has streamed other layers' weights does; ``inputs`` (the activations) are read again
    after each flush, in both graphs, since in the step the kernel before leaves them in L2 (H100, 32 rows:
    that took 0.2-2.8 us off the int8-plane path, whose first launch reads the rows, and nothing off the
    converting one; RESULTS.md "Decisions timed without the graph's launch").
    NOTE: timed eagerly instead, the few-rows kernel's Python launch path (~40-80 us: the autotuner's key, the
    partial-sum buffer) outlasted its ~10 us on the GPU and cuBLAS won every narrow layer (H200: qkv at one row
    39.8 vs 20.6 us eagerly, 13.1 vs 14.7 us in graphs)."""
    import triton.testing

    fn()  # compiled and autotuned before capture
    dev = torch.cuda.current_device()
    buf = torch.ones(torch.cuda.get_device_properties(dev).L2_cache_size // 2, device=dev)  # 2 x L2 bytes
    total = torch.empty((), device=dev)

    def flush():
        torch.sum(buf, dim=0, out=total)
        for t in inputs:
            torch.sum(t.reshape(-1), dim=0, dtype=torch.float32, out=total)

    flush()
    torch.cuda.synchronize()
    both = _capture(lambda: [(flush(), fn()) for _ in range(REPS)])
    reads = _capture(lambda: [flush() for _ in range(REPS)])
    try:
        t_both = triton.testing.do_bench(both.replay, warmup=5, rep=40)
        t_reads = triton.testing.do_bench(reads.replay, warmup=5, rep=40)
        return max(t_both - t_reads, 1e-6) / REPS
    finally:
        del both, reads


def decide(
    memo: dict,
    key: tuple,
    ours: Callable,
    theirs: Callable,
    label: str,
    inputs: tuple[torch.Tensor, ...] = (),
) -> bool:
    """``memo[key]``, else the graph timings of ``ours`` and ``theirs`` (the library's or the established
    way), kept: ours must win by ``MARGIN``. During a CUDA graph capture nothing can be timed: theirs."""
    choice = memo.get(key)
    if choice is None:
        if torch.cuda.is_current_stream_capturing():
            return False
        t_ours = graph_time(ours, inputs)
        t_theirs = graph_time(theirs, inputs)
        choice = memo[key] = t_ours < MARGIN * t_theirs
        log.info(
            "%s %.1f us, otherwise %.1f us -> %s",
            label,
            t_ours * 1e3,
            t_theirs * 1e3,
            "yes" if choice else "no",
        )
    return choice
