"""Partial rotary embedding in GLM's interleaved (GPT-J) layout + KV cache write (torch reference).

For pair i of the first rotary_dim dims (x1 = x[2i], x2 = x[2i+1]) at position p with angle
theta = p * inv_freq[i] (RoFormer, Su et al. 2021):
    out[2i]   = x1 cos(theta) - x2 sin(theta)
    out[2i+1] = x2 cos(theta) + x1 sin(theta)
Dims past rotary_dim pass through. This equals transformers' GLM apply_rotary_pos_emb.
"""

from __future__ import annotations

import torch

from .quant import quantize_kv_ref


def apply_rotary_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (T, h, hd); cos/sin (T, rotary_dim // 2) float32 -> rotated copy of x (same dtype)."""
    rd = cos.shape[-1] * 2
    xr = x[..., :rd].float()
    x1, x2 = xr[..., 0::2], xr[..., 1::2]  # (T, h, rd/2)
    c, s = cos[:, None, :].float(), sin[:, None, :].float()
    rot = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)  # (T, h, rd)
    return torch.cat([rot.to(x.dtype), x[..., rd:]], dim=-1)


def write_kv_ref(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
) -> None:
    """Store k/v (T, nkv, hd) into cache slots (slot = block * block_size + offset)."""
    nkv, hd = k_cache.shape[-2], k_cache.shape[-1]
    slots = slot_mapping.long()
    kc, vc = k_cache.view(-1, nkv, hd), v_cache.view(-1, nkv, hd)
    if k_scale is None:
        kc[slots] = k.to(kc.dtype)
        vc[slots] = v.to(vc.dtype)
        return
    assert v_scale is not None and k_cache.dtype == torch.int8, f"{k_cache.dtype=}"
    qk, sk = quantize_kv_ref(k)
    qv, sv = quantize_kv_ref(v)
    kc[slots] = qk
    vc[slots] = qv
    k_scale.view(-1, nkv)[slots] = sk
    v_scale.view(-1, nkv)[slots] = sv


def rotary_and_cache_ref(
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
    """Rotate q (T, nh, hd) and k (T, nkv, hd), write rotated k and v to the cache; return rotated q."""
    q_rot = apply_rotary_ref(q, cos, sin)
    k_rot = apply_rotary_ref(k, cos, sin)
    write_kv_ref(k_rot, v, k_cache, v_cache, slot_mapping, k_scale, v_scale)
    return q_rot
