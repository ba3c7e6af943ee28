"""The q/k/v projection with rotary and the cache write in its epilogue (kernels.qkv_rope), one decode row,
against the projection followed by the rotary + cache reference."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.qkv_rope import _unfused, qkv_rotary_cache_triton
from kernels.quant import Int8Weight, linear_ref
from kernels.rotary import rotary_and_cache_ref
from tests.kernels.conftest import DEVICE, GPU, assert_close, poisoned

BF16, FP32 = torch.bfloat16, torch.float32
# (heads, KV heads, head dim, hidden): GLM-4-9B's on the GPU; small ones with a partial rotary on the CPU
SHAPES = [(32, 2, 128, 4096), (4, 2, 16, 64)] if GPU else [(4, 2, 16, 64), (2, 1, 32, 40)]


def _inputs(nh, nkv, hd, hidden, dtype, int8):
    n = (nh + 2 * nkv) * hd
    w = torch.randn(n, hidden, device=DEVICE) * 0.05
    w = Int8Weight.quantize(w) if int8 else w.to(dtype)
    x = torch.randn(1, hidden, dtype=dtype, device=DEVICE)
    b = torch.randn(n, dtype=dtype, device=DEVICE)
    # GLM's partial rotary: half of each head turns; a position past the first block
    pos = torch.tensor([37.0], device=DEVICE)
    inv = 1.0 / (10000 ** (torch.arange(0, hd // 2, 2, dtype=FP32, device=DEVICE) / (hd // 2)))
    freqs = pos[:, None] * inv[None, :]
    return w, x, b, freqs.cos(), freqs.sin()


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("int8", [False, True], ids=["16bit", "int8"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_rotary_epilogue_matches_projection_then_rotary(dtype, int8, shape, monkeypatch):
    # 16-bit weights fuse where the few-rows kernel runs: on the GPU kernels.skinny would time it against cuBLAS
    monkeypatch.setenv("AUTOGLM_SKINNY", "on")
    nh, nkv, hd, hidden = shape
    w, x, b, cos, sin = _inputs(nh, nkv, hd, hidden, dtype, int8)
    blocks, bs = 4, 16
    slot = torch.tensor([2 * bs + 5], dtype=torch.int64, device=DEVICE)
    kc, vc = poisoned((blocks, bs, nkv, hd), dtype), poisoned((blocks, bs, nkv, hd), dtype)
    q = qkv_rotary_cache_triton(x, w, b, cos, sin, kc, vc, slot, None, None, nh)
    assert q is not None and q.shape == (1, nh, hd)

    kr, vr = poisoned((blocks, bs, nkv, hd), dtype), poisoned((blocks, bs, nkv, hd), dtype)
    qkv = linear_ref(x, w, b)
    qp, kp, vp = qkv.split([nh * hd, nkv * hd, nkv * hd], dim=-1)
    q_ref = rotary_and_cache_ref(
        qp.reshape(1, nh, hd), kp.reshape(1, nkv, hd), vp.reshape(1, nkv, hd), cos, sin, kr, vr, slot
    )
    assert_close(q, q_ref, dtype)
    # the slot holds the rotated k and the v; every other cache element is left as it was
    assert_close(kc[2, 5], kr[2, 5], dtype)
    assert_close(vc[2, 5], vr[2, 5], dtype)
    written = torch.zeros(blocks, bs, dtype=torch.bool, device=DEVICE)
    written[2, 5] = True
    assert kc[~written].isnan().all() and vc[~written].isnan().all()
    # the rotary dims really turned (position 37): q differs from the unrotated projection there
    assert not torch.allclose(q[0, :, : hd // 2].float(), qp.reshape(nh, hd)[:, : hd // 2].float(), atol=1e-3)


def test_negative_slot_writes_no_cache_and_unfusable_calls_fall_back():
    nh, nkv, hd, hidden = 4, 2, 16, 64
    w, x, b, cos, sin = _inputs(nh, nkv, hd, hidden, FP32, True)
    kc, vc = poisoned((2, 16, nkv, hd), FP32), poisoned((2, 16, nkv, hd), FP32)
    pad = torch.tensor([-1], dtype=torch.int64, device=DEVICE)
    q = qkv_rotary_cache_triton(x, w, b, cos, sin, kc, vc, pad, None, None, nh)
    assert q is not None and not q.isnan().any()
    assert kc.isnan().all() and vc.isnan().all()
    slot = torch.tensor([3], dtype=torch.int64, device=DEVICE)
    # two rows, or an INT8 cache (its per-head scale needs a whole head in one program): not fused
    x2 = torch.randn(2, hidden, device=DEVICE)
    assert (
        qkv_rotary_cache_triton(x2, w, b, cos.expand(2, -1), sin.expand(2, -1), kc, vc, slot, None, None, nh)
        is None
    )
    # a V cache laid out unlike the K cache (the epilogue indexes both with K's strides)
    v_other = poisoned((2, 16, hd, nkv), FP32).transpose(2, 3)
    assert qkv_rotary_cache_triton(x, w, b, cos, sin, kc, v_other, slot, None, None, nh) is None
    scale = torch.zeros(2, 16, nkv, device=DEVICE)
    kq = torch.zeros(2, 16, nkv, hd, dtype=torch.int8, device=DEVICE)
    assert qkv_rotary_cache_triton(x, w, b, cos, sin, kq, kq.clone(), slot, scale, scale, nh) is None


@pytest.mark.parametrize("int8", [False, True], ids=["16bit", "int8"])
def test_dispatch_op_equals_projection_then_rotary(int8):
    # kernels.qkv_rotary_cache: the fused launch on CUDA where it fuses, the composition elsewhere (CPU: the
    # references); both leave the same q and cache
    nh, nkv, hd, hidden = 4, 2, 16, 64
    dtype = BF16 if GPU else FP32
    w, x, b, cos, sin = _inputs(nh, nkv, hd, hidden, dtype, int8)
    slot = torch.tensor([7], dtype=torch.int64, device=DEVICE)
    kc, vc = poisoned((1, 16, nkv, hd), dtype), poisoned((1, 16, nkv, hd), dtype)
    q = kernels.qkv_rotary_cache(x, w, b, cos, sin, kc, vc, slot, None, None, nh)
    kr, vr = poisoned((1, 16, nkv, hd), dtype), poisoned((1, 16, nkv, hd), dtype)
    qp, kp, vp = linear_ref(x, w, b).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
    q_ref = rotary_and_cache_ref(
        qp.reshape(1, nh, hd), kp.reshape(1, nkv, hd), vp.reshape(1, nkv, hd), cos, sin, kr, vr, slot
    )
    assert_close(q, q_ref, dtype)
    assert_close(kc[0, 7], kr[0, 7], dtype)
    assert_close(vc[0, 7], vr[0, 7], dtype)


def test_fusion_is_decided_against_the_projection_and_rotary_pair(monkeypatch):
    # 16-bit weights, auto mode: kernels.skinny times the fused launch against the unfused pair (the
    # projection as `linear` runs it, then rotary_and_cache) once per shape, and the op's result is the same
    # whichever way it went; with AUTOGLM_SKINNY=off nothing fuses (the caller runs the pair)
    from kernels import skinny

    nh, nkv, hd, hidden = SHAPES[0]
    dtype = BF16 if GPU else FP32
    w, x, b, cos, sin = _inputs(nh, nkv, hd, hidden, dtype, False)
    slot = torch.tensor([3], dtype=torch.int64, device=DEVICE)
    kr, vr = poisoned((1, 16, nkv, hd), dtype), poisoned((1, 16, nkv, hd), dtype)
    qp, kp, vp = linear_ref(x, w, b).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
    q_ref = rotary_and_cache_ref(
        qp.reshape(1, nh, hd), kp.reshape(1, nkv, hd), vp.reshape(1, nkv, hd), cos, sin, kr, vr, slot
    )
    monkeypatch.setenv("AUTOGLM_SKINNY", "off")
    kc, vc = poisoned((1, 16, nkv, hd), dtype), poisoned((1, 16, nkv, hd), dtype)
    assert qkv_rotary_cache_triton(x, w, b, cos, sin, kc, vc, slot, None, None, nh) is None
    # the pair that the fused launch is timed against is the op too
    assert_close(_unfused(x, w, b, cos, sin, kc, vc, slot, nh), q_ref, dtype)
    assert_close(kc[0, 3], kr[0, 3], dtype)
    monkeypatch.setenv("AUTOGLM_SKINNY", "auto")
    monkeypatch.setattr(skinny, "_FUSED", {})
    for _ in range(2):
        kc, vc = poisoned((1, 16, nkv, hd), dtype), poisoned((1, 16, nkv, hd), dtype)
        q = kernels.qkv_rotary_cache(x, w, b, cos, sin, kc, vc, slot, None, None, nh)
        assert_close(q, q_ref, dtype)
        assert_close(kc[0, 3], kr[0, 3], dtype)
        assert_close(vc[0, 3], vr[0, 3], dtype)
    if GPU:  # measured once (the interpreter always fuses)
        assert [k[0] for k in skinny._FUSED] == ["qkv_rope"]
        assert any(d.get("fused") == "qkv_rope" for d in skinny.decisions())


@pytest.mark.skipif(not GPU, reason="times CUDA graphs")
def test_decide_keeps_the_faster_of_two_measured_calls(monkeypatch):
    from kernels import skinny

    monkeypatch.setenv("AUTOGLM_SKINNY", "auto")
    a = torch.randn(4096, 4096, device=DEVICE, dtype=BF16)
    cheap, costly = (lambda: a[0].add_(0)), (lambda: a @ a)
    memo: dict = {}
    assert skinny._decide(memo, ("fast",), cheap, costly, "test")
    assert not skinny._decide(memo, ("slow",), costly, cheap, "test")
    assert memo == {("fast",): True, ("slow",): False}
