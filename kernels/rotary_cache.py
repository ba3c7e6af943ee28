"""Rotary embedding on q and k fused with writing k and v into their paged-cache slots (Triton).

GLM rotates only the first ``rotary_dim`` dims of each head, in the interleaved (GPT-J) layout: the pair
(x[2i], x[2i+1]) turns by the angle of frequency i,

    out[2i]   = x[2i]   * cos_i - x[2i+1] * sin_i
    out[2i+1] = x[2i+1] * cos_i + x[2i]   * sin_i

and the remaining dims pass through (Su et al., "RoFormer", 2021). One program handles one token: it
writes the rotated q to a new tensor and the rotated k and the v straight into the cache slot
``slot_mapping[t]`` (block = slot // block_size). With INT8 caches each (token, head) row is quantized
symmetrically on the way, ``scale = absmax / 127``, and the scale goes to ``k_scale`` / ``v_scale``.
A negative slot (padding) writes nothing to the cache.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .rotary import rotary_and_cache_ref  # noqa: F401  (the torch reference of this kernel)
from .triton_common import check_float, next_pow2, out_tensor, pdl_enabled, pdl_trigger, pdl_wait, to_dtype


@triton.jit
def _rotate(ptr, heads, cols, n_heads, stride_h, cos, sin, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Load a (heads, head_dim) tile and turn each (even, odd) column pair by its angle, in float32.
    cos/sin are per pair (BLOCK_D // 2,), 1 and 0 past the rotary dims, so those pass through unchanged."""
    mask = (heads[:, None] < n_heads) & (cols[None, :] < HEAD_DIM)
    x = tl.load(ptr + heads[:, None] * stride_h + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    even, odd = tl.split(tl.reshape(x, (x.shape[0], BLOCK_D // 2, 2)))  # (heads, BLOCK_D // 2) each
    c = cos[None, :]
    s = sin[None, :]
    out = tl.join(even * c - odd * s, odd * c + even * s)  # (heads, BLOCK_D // 2, 2)
    return tl.reshape(out, (x.shape[0], BLOCK_D)), mask


@triton.jit
def _store_cache(
    C_ptr,
    S_ptr,
    x,
    mask,
    slot,
    heads,
    cols,
    block_size,
    stride_cb,
    stride_co,
    stride_ch,
    stride_sb,
    stride_so,
    n_heads,
    QUANT: tl.constexpr,
):
    blk = (slot // block_size).to(tl.int64)
    off = (slot % block_size).to(tl.int64)
    base = C_ptr + blk * stride_cb + off * stride_co
    if QUANT:
        absmax = tl.max(tl.abs(x), axis=1)
        scale = absmax / 127.0
        y = x / tl.where(scale > 0, scale, 1.0)[:, None]
        # round half away from zero, then clamp (rounding can never exceed 127 here, the clamp is belt and braces)
        y = tl.where(y >= 0, tl.floor(y + 0.5), -tl.floor(0.5 - y))
        y = tl.minimum(tl.maximum(y, -127.0), 127.0)
        tl.store(base + heads[:, None] * stride_ch + cols[None, :], y.to(tl.int8), mask=mask)
        s_ptr = S_ptr + blk * stride_sb + off * stride_so + heads
        tl.store(s_ptr, scale, mask=heads < n_heads)
    else:
        tl.store(
            base + heads[:, None] * stride_ch + cols[None, :], to_dtype(x, C_ptr.dtype.element_ty), mask=mask
        )


@triton.jit
def _rotary_cache_kernel(
    Q_ptr,
    K_ptr,
    V_ptr,
    COS_ptr,
    SIN_ptr,
    QO_ptr,
    KC_ptr,
    VC_ptr,
    KS_ptr,
    VS_ptr,
    SLOT_ptr,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_cos,
    stride_qot,
    stride_qoh,
    stride_cb,
    stride_co,
    stride_ch,
    stride_sb,
    stride_so,
    n_q_heads,
    n_kv_heads,
    block_size,
    HEAD_DIM: tl.constexpr,
    ROT: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    QUANT: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_trigger(PDL)
    t = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    pair = tl.arange(0, BLOCK_D // 2)
    pdl_wait(PDL)
    cos = tl.load(COS_ptr + t * stride_cos + pair, mask=pair < ROT // 2, other=1.0)
    sin = tl.load(SIN_ptr + t * stride_cos + pair, mask=pair < ROT // 2, other=0.0)

    hq = tl.arange(0, BLOCK_HQ)
    q, qmask = _rotate(Q_ptr + t * stride_qt, hq, cols, n_q_heads, stride_qh, cos, sin, HEAD_DIM, BLOCK_D)
    tl.store(
        QO_ptr + t * stride_qot + hq[:, None] * stride_qoh + cols[None, :],
        to_dtype(q, QO_ptr.dtype.element_ty),
        mask=qmask,
    )

    slot = tl.load(SLOT_ptr + t)
    if slot >= 0:
        hk = tl.arange(0, BLOCK_HK)
        k, kmask = _rotate(
            K_ptr + t * stride_kt, hk, cols, n_kv_heads, stride_kh, cos, sin, HEAD_DIM, BLOCK_D
        )
        # round to the activation dtype first, as the reference (rotate in torch, then cache) does
        k = to_dtype(k, K_ptr.dtype.element_ty).to(tl.float32)
        _store_cache(
            KC_ptr,
            KS_ptr,
            k,
            kmask,
            slot,
            hk,
            cols,
            block_size,
            stride_cb,
            stride_co,
            stride_ch,
            stride_sb,
            stride_so,
            n_kv_heads,
            QUANT,
        )
        v = tl.load(V_ptr + t * stride_vt + hk[:, None] * stride_vh + cols[None, :], mask=kmask, other=0.0)
        _store_cache(
            VC_ptr,
            VS_ptr,
            v.to(tl.float32),
            kmask,
            slot,
            hk,
            cols,
            block_size,
            stride_cb,
            stride_co,
            stride_ch,
            stride_sb,
            stride_so,
            n_kv_heads,
            QUANT,
        )


def rotary_and_cache_triton(
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
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``rotary_and_cache`` of the kernel contract on the Triton kernel; returns a new rotated q."""
    check_float("q", q)
    if (
        q.dim() != 3
        or k.dim() != 3
        or v.shape != k.shape
        or k.shape[0] != q.shape[0]
        or k.shape[2] != q.shape[2]
    ):
        raise ValueError(
            f"expected q (T, nh, hd), k/v (T, nkv, hd); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    T, nh, hd = q.shape
    nkv = k.shape[1]
    rot = 2 * cos.shape[-1]
    if cos.shape != (T, rot // 2) or sin.shape != cos.shape or rot > hd:
        raise ValueError(
            f"cos/sin must be (T, rotary_dim // 2) with rotary_dim <= {hd}, got {tuple(cos.shape)}"
        )
    if k_cache.dim() != 4 or k_cache.shape[2:] != (nkv, hd) or v_cache.shape != k_cache.shape:
        raise ValueError(f"caches must be (num_blocks, block_size, {nkv}, {hd}), got {tuple(k_cache.shape)}")
    if k_cache.stride() != v_cache.stride():
        raise ValueError("k_cache and v_cache must share a layout")
    quant = k_scale is not None
    if quant != (v_scale is not None) or quant != (k_cache.dtype == torch.int8):
        raise ValueError("int8 caches need both k_scale and v_scale; float caches take neither")
    if quant and (
        k_scale.shape != k_cache.shape[:3]
        or k_scale.dtype != torch.float32
        or v_scale.stride() != k_scale.stride()
    ):
        raise ValueError(
            f"k_scale/v_scale must be float32 {tuple(k_cache.shape[:3])}, got {tuple(k_scale.shape)}"
        )
    if slot_mapping.shape != (T,):
        raise ValueError(f"slot_mapping must be ({T},), got {tuple(slot_mapping.shape)}")
    for name, t in (("q", q), ("k", k), ("v", v), ("k_cache", k_cache)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in its last dim")
    cos = cos.float().contiguous()
    sin = sin.float().contiguous()
    q_out = out_tensor(out, (T, nh, hd), q)
    if T == 0:
        return q_out
    scale_strides = (k_scale.stride(0), k_scale.stride(1)) if quant else (0, 0)
    block_d = next_pow2(hd)
    _rotary_cache_kernel[(T,)](
        q,
        k,
        v,
        cos,
        sin,
        q_out,
        k_cache,
        v_cache,
        k_scale if quant else cos,
        v_scale if quant else cos,
        slot_mapping,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        cos.stride(0),
        q_out.stride(0),
        q_out.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        *scale_strides,
        nh,
        nkv,
        k_cache.shape[1],
        HEAD_DIM=hd,
        ROT=rot,
        BLOCK_D=block_d,
        BLOCK_HQ=next_pow2(nh),
        BLOCK_HK=next_pow2(nkv),
        QUANT=quant,
        PDL=(pdl := pdl_enabled(q)),
        num_warps=4 if nh * block_d <= 4096 else 8,
        launch_pdl=pdl,
    )
    return q_out
