"""Model ops for the GLM engine: one function per op, dispatched in kernels/dispatch.py
(Triton on CUDA when available, the plain-torch reference everywhere else)."""

from .dispatch import (
    TRITON_KERNELS,
    backend,
    gate_up_silu,
    linear,
    paged_attention,
    qkv_rotary_cache,
    quantize_kv,
    rms_norm,
    rotary_and_cache,
    silu_and_mul,
    triton_available,
)
from .quant import Int8Weight

__all__ = [
    "TRITON_KERNELS",
    "Int8Weight",
    "backend",
    "gate_up_silu",
    "linear",
    "paged_attention",
    "qkv_rotary_cache",
    "quantize_kv",
    "rms_norm",
    "rotary_and_cache",
    "silu_and_mul",
    "triton_available",
]
