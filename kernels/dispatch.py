"""The one place that picks an implementation for each op.

CUDA tensors, Triton importable and env AUTOGLM_KERNELS != "torch" -> the Triton kernel named in
TRITON_KERNELS (when the op has one); everything else -> the torch reference. The engine calls only
the functions below, never a kernel directly. Shapes: T packed tokens, B sequences, nh query heads,
nkv KV heads, hd head dim. KV cache per layer: (num_blocks, block_size, nkv, hd); for an INT8 cache
k_scale/v_scale are (num_blocks, block_size, nkv) float32. slot = block_id * block_size + offset.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable

import torch

from .activation import silu_and_mul_ref
from .attention import paged_attention_ref
from .norm import rms_norm_ref
from .quant import Int8Weight, linear_ref, quantize_kv_ref
from .rotary import rotary_and_cache_ref

# op name -> "module:function" of its Triton launcher (same signature as the public op).
# NOTE: an op missing here always runs its reference: `quantize_kv` only runs outside the hot path
# (rotary_and_cache quantizes). 16-bit `linear` goes to cuBLAS except at few rows, where `kernels.skinny`
# measures whether our split-K kernel streams the weights faster.
TRITON_KERNELS: dict[str, str] = {
    "rms_norm": "kernels.fused_norm:rms_norm_triton",
    "rotary_and_cache": "kernels.rotary_cache:rotary_and_cache_triton",
    "paged_attention": "kernels.flash_decode:paged_attention_triton",
    "silu_and_mul": "kernels.swiglu:silu_and_mul_triton",
    "linear_int8": "kernels.int8_matmul:linear_int8_triton",
    "linear": "kernels.skinny:linear_triton",
    # no reference of its own: the projection and rotary_and_cache, which it falls back to
    "qkv_rotary_cache": "kernels.qkv_rope:qkv_rotary_cache_triton",
    # no reference of its own either: the projection and silu_and_mul
    "gate_up_silu": "kernels.swiglu:gate_up_silu_triton",
}


@functools.cache
def triton_available() -> bool:
    """True when Triton can be imported (checked once, lazily: CPU boxes need not have it)."""
    return importlib.util.find_spec("triton") is not None


def backend() -> str:
    """'torch' forces the references everywhere; anything else lets CUDA tensors use Triton."""
    return os.environ.get("AUTOGLM_KERNELS", "auto").lower()


@functools.cache
def _load(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _pick(op: str, ref: Callable, x: torch.Tensor) -> Callable:
    target = TRITON_KERNELS.get(op)
    if target is None or not x.is_cuda or backend() == "torch" or not triton_available():
        return ref
    return _load(target)


def _planes_wanted(planes_for: torch.Tensor | Int8Weight | None, switch: str, default: str) -> bool:
    """Whether a kernel should also write its output rows as the int8 planes of the product after it: that
    product has INT8 weights, and the environment switch (``default`` when unset) is "1"."""
    return isinstance(planes_for, Int8Weight) and os.environ.get(switch, default) == "1"


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    pre_weight: torch.Tensor | None = None,
    planes_for: torch.Tensor | Int8Weight | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x (T, H) -> norm(x) * weight; with residual: h = x + residual -> (norm(h) * weight, h). With
    pre_weight, x is first replaced by norm(x) * pre_weight (two norms and the add in one launch).
    planes_for: the weight of the product the normed rows go to next; an Int8Weight lets the Triton kernel
    also write them in the form its int8 x int8 path reads (``kernels.int8_ws``), saving that a launch."""
    fn = _pick("rms_norm", rms_norm_ref, x)
    # NOTE: on unless AUTOGLM_NORM_PLANES=0. H100 2026-12-07 05:38 (RESULTS.md "The planes written by the
    # RMSNorm, re-run"): the engine's GPU tests pass with it, and norm + q/k/v takes 10.4-10.6 us at 2-16 rows
    # where norm + planes kernel + GEMM took 11.2-11.7 (11.5 vs 12.5 at 32 rows); gate/up unchanged (+-0.9 us)
    if fn is rms_norm_ref or not _planes_wanted(planes_for, "AUTOGLM_NORM_PLANES", "1"):
        return fn(x, weight, eps, residual, pre_weight)
    return fn(x, weight, eps, residual, pre_weight, planes=True)


def rotary_and_cache(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate q (T, nh, hd) and k (T, nkv, hd) (GLM interleaved partial rotary; cos/sin (T, rotary_dim // 2)
    float32), write rotated k and v into cache slots slot_mapping (T,) int64 (quantizing when scales are
    given); return rotated q."""
    fn = _pick("rotary_and_cache", rotary_and_cache_ref, q)
    return fn(q, k, v, cos, sin, k_cache, v_cache, slot_mapping, k_scale, v_scale)


def qkv_rotary_cache(
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
    invariant: bool = False,
) -> torch.Tensor:
    """The fused q/k/v projection x (T, H) @ w.T + bias -> [q | k | v], then ``rotary_and_cache``: returns the
    rotated q (T, nh, hd), k and v written to the cache. A decode row on CUDA runs it as one launch
    (``kernels.qkv_rope``) where it can."""
    fused = _pick("qkv_rotary_cache", None, x)
    if fused is not None:
        q = fused(x, w, bias, cos, sin, k_cache, v_cache, slot_mapping, k_scale, v_scale, num_heads)
        if q is not None:
            return q
    T = x.shape[0]
    nkv, hd = k_cache.shape[2], k_cache.shape[3]
    qkv = linear(x, w, bias, invariant)
    q, k, v = qkv.split([num_heads * hd, nkv * hd, nkv * hd], dim=-1)
    return rotary_and_cache(
        q.reshape(T, num_heads, hd),
        k.reshape(T, nkv, hd),
        v.reshape(T, nkv, hd),
        cos,
        sin,
        k_cache,
        v_cache,
        slot_mapping,
        k_scale,
        v_scale,
    )


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    max_seqlen_q: int,
    scale: float,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
    softcap: float | None = None,
    invariant: bool = False,
    planes_for: torch.Tensor | Int8Weight | None = None,
) -> torch.Tensor:
    """Causal attention of packed queries q (T, nh, hd) over each sequence's cached K/V -> (T, nh, hd).
    block_tables (B, max_blocks) int32, seq_lens (B,) int32 (cached tokens after this step's writes),
    cu_seqlens_q (B+1,) int32. Query head h reads KV head h // (nh // nkv).
    invariant: a query's result does not depend on how many queries its sequence has in this step (the
    prefill kernel runs one fixed tile configuration instead of the one tuned for max_seqlen_q).
    planes_for: the weight of the product the output rows go to next (o_proj); an Int8Weight lets the decode
    kernel also write them in the form its int8 x int8 path reads (``kernels.int8_ws``), saving that a launch."""
    fn = _pick("paged_attention", paged_attention_ref, q)
    args = (q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, max_seqlen_q, scale, k_scale, v_scale,
            softcap)  # fmt: skip
    if fn is paged_attention_ref:
        return fn(*args)
    if invariant and max_seqlen_q > 1:
        return _load("kernels.flash_prefill:flash_prefill_invariant")(*args)
    # NOTE: on unless AUTOGLM_ATTN_PLANES=0 (tiled planes only: the call leaves row-scaled ones to o_proj's
    # planes kernel). H100 2026-12-07 15:05 (RESULTS.md "Tiled planes"): the attention + o_proj pair 20.0 vs
    # 20.5 us at 16 rows, 27.8 vs 28.8 at 32 (18.0 vs 17.7 at 2), and with SiLU's planes the batch-8 decode
    # step 1.7-2.0% faster
    return fn(*args, planes=True) if _planes_wanted(planes_for, "AUTOGLM_ATTN_PLANES", "1") else fn(*args)


def silu_and_mul(x: torch.Tensor, planes_for: torch.Tensor | Int8Weight | None = None) -> torch.Tensor:
    """x (T, 2I) = [gate | up] -> silu(gate) * up, (T, I). planes_for: the weight of the product the rows go to
    next (down); an Int8Weight lets the Triton kernel also write them in the form its int8 x int8 path reads
    (``kernels.int8_ws``), saving that a launch."""
    fn = _pick("silu_and_mul", silu_and_mul_ref, x)
    # NOTE: on unless AUTOGLM_SILU_PLANES=0 (tiled planes only: the call leaves row-scaled ones to down's
    # planes kernel). H100 2026-12-07 15:05 (RESULTS.md "Tiled planes"): each program writes its own
    # 2,048-column chunks' planes, and the SiLU + down pair takes 24.3-26.8 us at 2-32 rows where SiLU + planes
    # kernel + GEMM took 25.0-30.4 (1.73-1.85x of SiLU + cuBLAS)
    if fn is silu_and_mul_ref or not _planes_wanted(planes_for, "AUTOGLM_SILU_PLANES", "1"):
        return fn(x)
    return fn(x, planes=True)


def gate_up_silu(
    x: torch.Tensor,
    w: torch.Tensor | Int8Weight,
    invariant: bool = False,
    planes_for: torch.Tensor | Int8Weight | None = None,
) -> torch.Tensor:
    """The MLP's fused gate/up projection and activation: silu_and_mul(x (T, H) @ w.T) -> (T, I) for
    w = [gate; up] (2I, H). A decode row on CUDA runs it as one launch (``kernels.swiglu``) where it can.
    planes_for: as ``silu_and_mul``'s."""
    fused = _pick("gate_up_silu", None, x)
    if fused is not None:
        h = fused(x, w)
        if h is not None:
            return h
    return silu_and_mul(linear(x, w, None, invariant), planes_for)


# keyword arguments of the public ops that dispatch consumes (launchers do not take them; `planes_for`
# becomes rms_norm_triton's, paged_attention_triton's and silu_and_mul_triton's `planes`)
DISPATCH_OPTIONS = frozenset({"invariant", "planes_for"})

# Rows per matmul call in batch-invariant mode (see `linear`). 256 rows keep a prefill chunk's GEMMs near
# the matmul rate (H200: each call is compute bound, cuBLAS ~80% of one large call) and cost about as much
# as one weight read for a short chunk (a question after a cached prefix).
INVARIANT_ROWS = 256


def linear(
    x: torch.Tensor, w: torch.Tensor | Int8Weight, bias: torch.Tensor | None = None, invariant: bool = False
) -> torch.Tensor:
    """x (T, K) -> (T, N) for a (N, K) weight tensor or an Int8Weight.

    invariant: each row's result does not depend on T or on the row's place in x (16-bit weights): the rows
    go through one matmul shape, INVARIANT_ROWS rows per call (the last call zero-padded), so the library
    picks the same kernel, tiles and reduction order for every row. A token then gets the same values
    whether its prompt is computed in one chunk, in other chunks, or after a cached prefix.
    """
    if isinstance(w, Int8Weight):
        return _pick("linear_int8", linear_ref, x)(x, w, bias)
    if invariant and x.shape[0] > 1:
        return linear_invariant(x, w, bias)
    return _pick("linear", linear_ref, x)(x, w, bias)


def linear_invariant(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, rows: int = INVARIANT_ROWS
) -> torch.Tensor:
    """`linear` in fixed blocks of `rows` rows (see its `invariant`)."""
    T = x.shape[0]
    out = torch.empty(T, w.shape[0], dtype=x.dtype, device=x.device)
    full = T - T % rows
    for s in range(0, full, rows):
        out[s : s + rows] = linear_ref(x[s : s + rows], w, bias)
    if full < T:
        pad = x.new_zeros(rows, x.shape[1])
        pad[: T - full] = x[full:]
        out[full:] = linear_ref(pad, w, bias)[: T - full]
    return out


def quantize_kv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., hd) -> (int8 (..., hd), float32 scale (...)), scale = absmax / 127 per token and head."""
    return _pick("quantize_kv", quantize_kv_ref, x)(x)
