"""What the Gluon kernels (``int8_ws``, ``int8_gemm_ws``) share: Gluon itself where this Triton has it, the
names that differ between Triton 3.6 (the GPU image) and 3.9 (CI), and the Hopper check (no kernels here).

Gluon is experimental: Triton 3.6 and 3.9 have it, an older one does not (``HAS_GLUON`` False, the names
None; the kernel modules then define no kernels and their ``available`` says no)."""

from __future__ import annotations

import functools

import torch

from .triton_common import INTERPRET

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    HAS_GLUON = True
except ImportError:  # pragma: no cover - depends on the installed Triton
    gluon = gl = fence_async_shared = mbarrier = tma = warpgroup_mma = warpgroup_mma_wait = None
    TensorDescriptor = None
    HAS_GLUON = False

if HAS_GLUON:
    # the TMA copies: async_copy_global_to_shared / _shared_to_global in 3.6, async_load / async_store in 3.9
    tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
    tma_store = getattr(tma, "async_store", None) or tma.async_copy_shared_to_global
    # a barrier of the partition's warps: thread_barrier in 3.6, barrier in 3.9
    barrier = getattr(gl, "thread_barrier", None) or gl.barrier
else:  # pragma: no cover - depends on the installed Triton
    tma_load = tma_store = barrier = None


@functools.lru_cache(maxsize=16)
def _capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def gluon_hopper(t: torch.Tensor) -> bool:
    """Whether a Gluon kernel for sm_90 (wgmma, TMA) can run on t's device: Gluon present, not the CPU
    interpreter (which cannot run Gluon), a CUDA tensor on an H100/H200."""
    return HAS_GLUON and not INTERPRET and t.is_cuda and _capability(t.device) == (9, 0)
