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


def __getattr__(name: str):
    """A name this package lacks. Hugging Face's own ``kernels`` distribution shares this import name, and
    transformers >= 5.25 requires it and imports names from it on every model load: beside it, those imports
    reach this package. Say so instead of a bare "cannot import name" (pyproject.toml bounds transformers)."""
    from importlib import metadata

    try:
        other = metadata.version("kernels")
    except metadata.PackageNotFoundError:
        other = None
    if other is not None and not name.startswith("__"):
        raise ImportError(
            f"cannot import name {name!r} from Open-AutoGLM's `kernels` package: Hugging Face's `kernels` "
            f"{other} is installed in this environment and shares the import name (transformers >= 5.25 "
            "requires it). Run `pip uninstall kernels` and keep transformers < 5.25, as pyproject.toml does."
        )
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
