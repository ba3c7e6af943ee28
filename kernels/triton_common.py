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
