"""A decode row's q/k/v projection with rotary and the K/V cache write in its epilogue (Triton).

At one row (batch-1 decode) the projection runs the few-rows kernel (``int8_matmul``: INT8 weights, or 16-bit
ones where ``kernels.skinny`` measured it faster than cuBLAS followed by ``rotary_and_cache``), whose programs each own a few whole output
columns: enough to turn GLM's interleaved rotary pairs and store the k and v columns straight into the cache
slot (``_rope_epilogue``), so ``rotary_and_cache`` is not a launch of its own. Everything else (more rows, an
INT8 cache: its per-head scale needs a whole head in one program, cuBLAS layers) is the projection followed by
``rotary_and_cache``, as before (``kernels.dispatch.qkv_rotary_cache``). AUTOGLM_QKV_ROPE=0 turns the fusion off.
NOTE: H200, GLM-4-9B shapes, batch-1 decode graph: the rotary kernel held the critical path ~1.8-2.0 us a
layer after the projection (RESULTS.md "Where a batch-1 step goes").
"""

from __future__ import annotations

import os

import torch

from . import skinny
from .int8_matmul import Rope, few_rows_linear_triton, int8_linear_triton
from .quant import Int8Weight
from .rotary_cache import rotary_and_cache_triton


def qkv_rotary_cache_triton(
    x: torch.Tensor,
    w: torch.Tensor | Int8Weight,
    bias: torch.Tensor | None,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: torch.Tensor | None,
    v_scale: torch.Tensor | None,
    num_heads: int,
) -> torch.Tensor | None:
    """The rotated q (1, nh, hd) of one row, k and v written to the cache; None where this does not fuse
    (the caller then runs the projection and ``rotary_and_cache``)."""
    if os.environ.get("AUTOGLM_QKV_ROPE", "1") == "0":
        return None
    if x.dim() != 2 or x.shape[0] != 1 or k_scale is not None or x.stride(-1) != 1:
        return None
    nkv, hd = k_cache.shape[2], k_cache.shape[3]
    n = (num_heads + 2 * nkv) * hd
    rows = w.qweight.shape[0] if isinstance(w, Int8Weight) else w.shape[0]
    if rows != n or cos.shape[0] != 1 or cos.shape[-1] * 2 > hd or hd % 2:
        return None
    # the epilogue indexes cos/sin by pair and both caches with k_cache's strides (unit stride along head dims)
    if (
        cos.stride(-1) != 1
        or sin.stride(-1) != 1
        or k_cache.stride(-1) != 1
        or v_cache.stride() != k_cache.stride()
    ):
        return None
    rope = Rope(cos, sin, k_cache, v_cache, slot_mapping, num_heads * hd, nkv * hd)
    if isinstance(w, Int8Weight):
        qkv = int8_linear_triton(x, w.qweight, w.scale, bias, rope=rope)
    elif w.dtype == x.dtype and skinny.use_fused(
        "qkv_rope",
        x,
        w,
        bias,
        fused := lambda: few_rows_linear_triton(x, w, bias, rope=rope),
        lambda: _unfused(x, w, bias, cos, sin, k_cache, v_cache, slot_mapping, num_heads),
    ):
        qkv = fused()
    else:
        return None
    return qkv[:, : num_heads * hd].view(1, num_heads, hd)


def _unfused(x, w, bias, cos, sin, k_cache, v_cache, slot_mapping, num_heads: int) -> torch.Tensor:
    """What ``kernels.dispatch.qkv_rotary_cache`` runs where this does not fuse (16-bit weights, one row): the
    projection (``skinny``'s pick) and ``rotary_and_cache``. Timed against the fused launch."""
    nkv, hd = k_cache.shape[2], k_cache.shape[3]
    q, k, v = skinny.linear_triton(x, w, bias).split([num_heads * hd, nkv * hd, nkv * hd], dim=-1)
    return rotary_and_cache_triton(
        q.view(1, num_heads, hd),
        k.view(1, nkv, hd),
        v.view(1, nkv, hd),
        cos,
        sin,
        k_cache,
        v_cache,
        slot_mapping,
    )
