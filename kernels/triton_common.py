"""Small helpers shared by the Triton kernel files (no kernels of their own).

NOTE: the CPU interpreter (``TRITON_INTERPRET=1``, newer Triton) multiplies bfloat16 tiles in ``tl.dot`` as
raw 16-bit integers and returns garbage, so under the interpreter every kernel upcasts its dot operands to
float32 first (``UPCAST_DOT``). On the GPU the operands stay 16-bit and run on the tensor cores.
"""

from __future__ import annotations

import functools
import inspect
import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
UPCAST_DOT = INTERPRET
# NOTE: the interpreter also truncates float32 -> bfloat16 instead of rounding to nearest even, as the GPU
# does; ``to_dtype`` rounds explicitly there so CPU results match the GPU's (and torch's) bit for bit.
_FIX_BF16_ROUNDING: tl.constexpr = tl.constexpr(INTERPRET)

try:  # programmatic dependent launch (Triton >= 3.3)
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    _HAS_GDC = True
except ImportError:  # pragma: no cover - an older Triton: no PDL
    _HAS_GDC = False

TORCH_TO_TL = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _quick_bench(kernel_call, quantiles):
    """The autotuner's timing of one config: 5 ms warm-up and 20 ms of runs (Triton's default is 25 + 100 ms).
    Our kernels run for 5-500 us, so that is still tens to thousands of runs per config, and an INT8 engine
    that tunes ~5 layer shapes per row count at start-up is ready about 5x sooner."""
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def autotune(**kwargs):
    """``triton.autotune`` with quick timing, and its choices kept on disk in Triton's cache directory
    (``cache_results``; a restarted engine does not tune again) where this Triton version has these options."""
    params = inspect.signature(triton.autotune).parameters
    if "do_bench" in params:
        kwargs.setdefault("do_bench", _quick_bench)
    if "cache_results" in params:
        kwargs.setdefault("cache_results", True)
    return triton.autotune(**kwargs)


def check_float(name: str, t: torch.Tensor) -> None:
    """Raise ValueError unless ``t`` is a float16/bfloat16/float32 tensor."""
    if t.dtype not in TORCH_TO_TL:
        raise ValueError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")


def dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs are multiplied in full precision (the fp32 tolerance is 1e-4; tf32 gives ~3e-4)."""
    return "ieee" if dtype == torch.float32 else "tf32"


@functools.cache
def num_sms(device_index: int) -> int:
    """Multiprocessors of a CUDA device; a nominal 132 (an H100/H200) for the CPU interpreter."""
    if INTERPRET or not torch.cuda.is_available():
        return 132
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def device_sms(t: torch.Tensor) -> int:
    """Multiprocessors of the tensor's device (the nominal 132 for CPU tensors)."""
    return num_sms(t.device.index or 0) if t.is_cuda else 132


@functools.cache
def _pdl_device(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def pdl_enabled(t: torch.Tensor) -> bool:
    """Whether kernels on ``t``'s device launch with programmatic dependent launch (PDL, sm_90+).

    NOTE: a decode layer is a chain of short launches; with PDL each kernel lets the next one start at its
    own start (``pdl_trigger``), and the next one waits (``pdl_wait``) for it to finish, and its writes to be
    visible, before it reads activations or writes anything: reads of weights may come before the wait (the
    one-row matmul loads its first weight tiles there, while the previous kernels run). H200, torch CUDA
    graph: a dependent kernel's CTAs started 19.6 us before a 20 us kernel ended and passed the wait 0.48 us
    after it (0.77 us without PDL; RESULTS.md "Where a one-row matmul's time goes"). Every kernel that
    triggers must be followed only by kernels that wait before touching its data, or by ordinary launches
    (which wait for it to finish anyway). AUTOGLM_PDL=0 turns it off.
    NOTE: only while a CUDA graph is captured (the engine's decode steps and short prefills): launched
    eagerly, the one-row matmul took 126 instead of 67 us per call on the H200 (`benchmarks/kernels.py`,
    eager column), and an eager step is bound by the host's launches, which PDL does not shorten."""
    if INTERPRET or not _HAS_GDC or not t.is_cuda or os.environ.get("AUTOGLM_PDL", "1") == "0":
        return False
    return _pdl_device(t.device.index or 0) and torch.cuda.is_current_stream_capturing()


@triton.jit
def pdl_trigger(PDL: tl.constexpr):
    """Let the next kernel on the stream launch now (it waits in ``pdl_wait`` for this one to finish)."""
    if PDL:
        gdc_launch_dependents()


@triton.jit
def pdl_wait(PDL: tl.constexpr):
    """Wait until the kernels this one depends on have finished and their writes are visible."""
    if PDL:
        gdc_wait()


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


@triton.jit
def to_dtype(x, dtype: tl.constexpr):
    """``x.to(dtype)`` with round-to-nearest-even for bfloat16 also under the interpreter."""
    if _FIX_BF16_ROUNDING:
        if dtype == tl.bfloat16:
            bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


def out_tensor(
    out: torch.Tensor | None, shape: tuple, like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A caller's contiguous output buffer (checked) or a fresh one (tests pass NaN-filled buffers)."""
    dtype = like.dtype if dtype is None else dtype
    if out is None:
        return torch.empty(shape, dtype=dtype, device=like.device)
    if (
        tuple(out.shape) != tuple(shape)
        or out.dtype != dtype
        or out.device != like.device
        or not out.is_contiguous()
    ):
        raise ValueError(
            f"out must be a contiguous {dtype} {tuple(shape)} on {like.device}, got {out.dtype} {tuple(out.shape)}"
        )
    return out


_COUNTERS: dict[tuple[str, torch.device], list[torch.Tensor]] = {}


def arrival_counters(kind: str, device: torch.device, n: int, minimum: int) -> torch.Tensor:
    """A zeroed int32 buffer of at least n arrival counters for the kernels of ``kind`` (their last program to
    arrive at a counter acts and sets it back to 0, so every launch leaves it zeroed), kept per device, at least
    ``minimum`` entries; a larger need gets a larger buffer and the old ones stay allocated (a captured CUDA
    graph may hold their address). NOTE: launches on one stream at a time (the engine's) share a kind's buffer;
    the first call should come before CUDA graph capture (the engine runs each step eagerly first), else the
    zeroing is captured too."""
    kept = _COUNTERS.setdefault((kind, device), [])
    if not kept or kept[-1].numel() < n:
        kept.append(torch.zeros(max(n, minimum), dtype=torch.int32, device=device))
    return kept[-1]
