"""Rotary + cache write against the torch reference: rotated q, the written cache slots (float and INT8),
and that no other slot is touched."""

from __future__ import annotations

import pytest
import torch

from kernels.rotary import rotary_and_cache_ref
from kernels.rotary_cache import rotary_and_cache_triton
from tests.kernels.conftest import DEVICE, GPU, assert_close, poisoned

BF16, FP32 = torch.bfloat16, torch.float32
# (nh, nkv, hd, rotary_dim): GLM-4-9B (half of d=128 rotated), and an odd head dim with full rotation
HEADS = [(32, 2, 128, 64), (3, 1, 80, 80)] if GPU else [(4, 2, 64, 32), (3, 1, 40, 40)]
LENGTHS = [1, 17, 1000] if GPU else [1, 17]
BLOCK_SIZE = 16


def _cos_sin(positions: torch.Tensor, rotary_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, device=DEVICE).float() / rotary_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, rotary_dim // 2)
    return angles.cos(), angles.sin()


def _caches(num_blocks, nkv, hd, dtype, quant):
    if quant:
        # int8 has no NaN: fill with a sentinel and poison the scales instead
        kc = torch.full((num_blocks, BLOCK_SIZE, nkv, hd), -128, dtype=torch.int8, device=DEVICE)
        scales = [poisoned((num_blocks, BLOCK_SIZE, nkv), FP32) for _ in range(2)]
        return kc, kc.clone(), *scales
    return (
        poisoned((num_blocks, BLOCK_SIZE, nkv, hd), dtype),
        poisoned((num_blocks, BLOCK_SIZE, nkv, hd), dtype),
        None,
        None,
    )


def _dequant(cache, scale):
    return cache if scale is None else cache.float() * scale[..., None]


# the interpreter runs one program per token slowly: the ~100-token case once per cache kind
CASES = [
    (dtype, quant, heads, length)
    for dtype in (BF16, FP32)
    for quant in (False, True)
    for heads in HEADS
    for length in LENGTHS
] + ([] if GPU else [(BF16, True, HEADS[0], 100)])


@pytest.mark.parametrize(("dtype", "quant", "heads", "length"), CASES)
def test_rotary_and_cache_matches_reference(dtype, quant, heads, length):
    nh, nkv, hd, rot = heads
    num_blocks = length // BLOCK_SIZE + 4
    q = torch.randn(length, nh, hd, dtype=dtype, device=DEVICE)
    k = torch.randn(length, nkv, hd, dtype=dtype, device=DEVICE)
    v = torch.randn(length, nkv, hd, dtype=dtype, device=DEVICE)
    # positions after a cached prefix of 5 tokens; slots scattered over the pool
    cos, sin = _cos_sin(torch.arange(5, 5 + length, device=DEVICE), rot)
    slots = torch.randperm(num_blocks * BLOCK_SIZE, device=DEVICE)[:length]
    kc, vc, ks, vs = _caches(num_blocks, nkv, hd, dtype, quant)
    kc_ref, vc_ref = kc.clone(), vc.clone()
    ks_ref, vs_ref = (ks.clone(), vs.clone()) if quant else (None, None)
    q_out = poisoned((length, nh, hd), dtype)

    rotary_and_cache_triton(q, k, v, cos, sin, kc, vc, slots, ks, vs, out=q_out)
    q_ref = rotary_and_cache_ref(q, k, v, cos, sin, kc_ref, vc_ref, slots, ks_ref, vs_ref)

    assert_close(q_out, q_ref, dtype)
    for got, ref, s_got, s_ref in ((kc, kc_ref, ks, ks_ref), (vc, vc_ref, vs, vs_ref)):
        flat, flat_ref = got.view(-1, nkv, hd), ref.view(-1, nkv, hd)
        written = _dequant(flat[slots], None if s_got is None else s_got.view(-1, nkv)[slots])
        expected = _dequant(flat_ref[slots], None if s_ref is None else s_ref.view(-1, nkv)[slots])
        # INT8: within one quantization step of the reference's rounding
        assert_close(written, expected, dtype, tol=1e-2 if quant else None)
        untouched = torch.ones(flat.shape[0], dtype=torch.bool, device=DEVICE)
        untouched[slots] = False
        if quant:
            assert (flat[untouched] == -128).all() and s_got.view(-1, nkv)[untouched].isnan().all()
        else:
            assert flat[untouched].isnan().all()


def test_negative_slot_writes_nothing():
    nh, nkv, hd, rot = HEADS[1]
    q, k, v = (torch.randn(3, h, hd, device=DEVICE) for h in (nh, nkv, nkv))
    cos, sin = _cos_sin(torch.arange(3, device=DEVICE), rot)
    kc, vc, _, _ = _caches(2, nkv, hd, FP32, False)
    slots = torch.tensor([4, -1, 9], device=DEVICE)
    rotary_and_cache_triton(q, k, v, cos, sin, kc, vc, slots)
    written = ~kc.view(-1, nkv, hd).isnan().all(-1).all(-1)
    assert written.nonzero().flatten().tolist() == [4, 9]
    assert torch.equal(vc.view(-1, nkv, hd)[9], v[2])


def test_rejects_int8_cache_without_scales():
    nh, nkv, hd, rot = HEADS[1]
    q, k, v = (torch.randn(2, h, hd, device=DEVICE) for h in (nh, nkv, nkv))
    cos, sin = _cos_sin(torch.arange(2, device=DEVICE), rot)
    kc = torch.zeros(2, BLOCK_SIZE, nkv, hd, dtype=torch.int8, device=DEVICE)
    with pytest.raises(ValueError, match="k_scale"):
        rotary_and_cache_triton(q, k, v, cos, sin, kc, kc.clone(), torch.arange(2, device=DEVICE))
