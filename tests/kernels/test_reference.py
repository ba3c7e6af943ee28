"""The torch reference ops against transformers' GLM code and plain dense math."""

import pytest
import torch
import torch.nn.functional as F
from transformers.models.glm.modeling_glm import GlmRMSNorm, apply_rotary_pos_emb

import kernels
from kernels import Int8Weight
from kernels.attention import paged_attention_ref
from kernels.quant import quantize_kv_ref


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_transformers(dtype):
    torch.manual_seed(0)
    x = torch.randn(5, 123, dtype=dtype)
    hf = GlmRMSNorm(123, eps=1e-6).to(dtype)
    with torch.no_grad():
        hf.weight.copy_(torch.randn(123))
        expected = hf(x)
    out = kernels.rms_norm(x, hf.weight.data, 1e-6)
    assert out.dtype == dtype
    assert torch.equal(out, expected)


def test_rms_norm_fused_residual():
    torch.manual_seed(0)
    x, r, w = torch.randn(7, 64), torch.randn(7, 64), torch.randn(64)
    out, h = kernels.rms_norm(x, w, 1e-5, residual=r)
    assert torch.equal(h, x + r)
    assert torch.equal(out, kernels.rms_norm(x + r, w, 1e-5))


def test_rms_norm_with_a_preceding_norm_is_two_norms_and_the_add():
    # GLM-4's post-attention/post-MLP norm then the residual add and the next norm, in one call
    torch.manual_seed(0)
    x, r = torch.randn(7, 64, dtype=torch.bfloat16), torch.randn(7, 64, dtype=torch.bfloat16)
    w, pw = torch.randn(64, dtype=torch.bfloat16), torch.randn(64, dtype=torch.bfloat16)
    out, h = kernels.rms_norm(x, w, 1e-5, residual=r, pre_weight=pw)
    pre = kernels.rms_norm(x, pw, 1e-5)
    assert torch.equal(h, pre + r)
    assert torch.equal(out, kernels.rms_norm(pre + r, w, 1e-5))
    assert torch.equal(kernels.rms_norm(x, w, 1e-5, pre_weight=pw), kernels.rms_norm(pre, w, 1e-5))


def _cos_sin(positions: torch.Tensor, rotary_dim: int, base: float = 10000.0):
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = positions[:, None].float() * inv_freq  # (T, rd/2)
    return freqs.cos(), freqs.sin()


@pytest.mark.parametrize("hd,rotary_dim", [(16, 8), (128, 64), (32, 32)])
def test_rotary_and_cache_matches_transformers(hd, rotary_dim):
    torch.manual_seed(0)
    T, nh, nkv, bs, nb = 11, 4, 2, 4, 6
    q, k, v = torch.randn(T, nh, hd), torch.randn(T, nkv, hd), torch.randn(T, nkv, hd)
    positions = torch.tensor([0, 1, 2, 3, 4, 5, 6, 100, 101, 1000, 4095])
    cos, sin = _cos_sin(positions, rotary_dim)
    k_cache = torch.full((nb, bs, nkv, hd), float("nan"))
    v_cache = torch.full((nb, bs, nkv, hd), float("nan"))
    slots = torch.randperm(nb * bs)[:T]
    q_out = kernels.rotary_and_cache(q, k, v, cos, sin, k_cache, v_cache, slots)
    # transformers builds cos/sin over the full rotary dim as cat(freqs, freqs), (B, heads, T, hd) layout
    hf_cos, hf_sin = torch.cat([cos, cos], -1)[None], torch.cat([sin, sin], -1)[None]
    q_hf, k_hf = apply_rotary_pos_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], hf_cos, hf_sin)
    assert rel_err(q_out, q_hf[0].transpose(0, 1)) < 1e-6
    assert rel_err(k_cache.view(-1, nkv, hd)[slots], k_hf[0].transpose(0, 1)) < 1e-6
    assert torch.equal(v_cache.view(-1, nkv, hd)[slots], v)
    untouched = torch.ones(nb * bs, dtype=torch.bool)
    untouched[slots] = False
    assert k_cache.view(-1, nkv, hd)[untouched].isnan().all()


def _dense_causal(q, k, v, scale, prefix):
    """q (L, nh, hd), k/v (S, nkv, hd) with S = prefix + L; plain softmax attention."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, 1)
    v = v.repeat_interleave(group, 1)
    scores = torch.einsum("lhd,shd->hls", q.double(), k.double()) * scale
    L, S = q.shape[0], k.shape[0]
    mask = torch.arange(S)[None, :] <= (torch.arange(L)[:, None] + prefix)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("hls,shd->lhd", scores.softmax(-1), v.double())


def _scatter_to_cache(seqs_kv, bs, nb, nkv, hd, dtype=torch.float32):
    """Place each sequence's (S, nkv, hd) K/V in random blocks of a NaN-poisoned cache."""
    k_cache = torch.full((nb, bs, nkv, hd), float("nan"), dtype=dtype)
    v_cache = torch.full((nb, bs, nkv, hd), float("nan"), dtype=dtype)
    free = torch.randperm(nb).tolist()
    max_blocks = max((k.shape[0] + bs - 1) // bs for k, _ in seqs_kv)
    tables = torch.full((len(seqs_kv), max_blocks), 10**6, dtype=torch.int32)  # unused entries: garbage
    for b, (k, v) in enumerate(seqs_kv):
        for j in range((k.shape[0] + bs - 1) // bs):
            blk = free.pop()
            tables[b, j] = blk
            n = min(bs, k.shape[0] - j * bs)
            k_cache[blk, :n] = k[j * bs : j * bs + n]
            v_cache[blk, :n] = v[j * bs : j * bs + n]
    return k_cache, v_cache, tables


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_paged_attention_mixed_prefill_prefix_and_decode(softcap):
    torch.manual_seed(0)
    nh, nkv, hd, bs = 8, 2, 16, 4
    # (cached prefix, new queries): fresh prefill, prefix hit + chunk, decode, decode at block edge
    shapes = [(0, 7), (9, 5), (12, 1), (15, 1), (3, 1)]
    seqs_kv = [(torch.randn(p + n, nkv, hd), torch.randn(p + n, nkv, hd)) for p, n in shapes]
    qs = [torch.randn(n, nh, hd) for _, n in shapes]
    k_cache, v_cache, tables = _scatter_to_cache(seqs_kv, bs, 40, nkv, hd)
    seq_lens = torch.tensor([p + n for p, n in shapes], dtype=torch.int32)
    cu = torch.tensor([0] + torch.tensor([n for _, n in shapes]).cumsum(0).tolist(), dtype=torch.int32)
    scale = hd**-0.5
    out = kernels.paged_attention(
        torch.cat(qs), k_cache, v_cache, tables, seq_lens, cu, 7, scale, softcap=softcap
    )
    assert not out.isnan().any()
    for b, (p, _n) in enumerate(shapes):
        k, v = seqs_kv[b]
        if softcap is None:
            ref = _dense_causal(qs[b], k, v, scale, p)
        else:
            group = nh // nkv
            s = torch.einsum("lhd,shd->hls", qs[b].double(), k.repeat_interleave(group, 1).double()) * scale
            s = softcap * torch.tanh(s / softcap)
            mask = torch.arange(k.shape[0])[None, :] <= (torch.arange(qs[b].shape[0])[:, None] + p)
            s = s.masked_fill(~mask, float("-inf")).softmax(-1)
            ref = torch.einsum("hls,shd->lhd", s, v.repeat_interleave(group, 1).double())
        assert rel_err(out[cu[b] : cu[b + 1]], ref) < 1e-5, b


def test_paged_attention_int8_cache_dequantizes_per_token_head():
    torch.manual_seed(0)
    nh, nkv, hd, bs = 4, 2, 16, 4
    k, v, q = torch.randn(10, nkv, hd), torch.randn(10, nkv, hd), torch.randn(3, nh, hd)
    k_cache = torch.zeros(5, bs, nkv, hd, dtype=torch.int8)
    v_cache = torch.zeros(5, bs, nkv, hd, dtype=torch.int8)
    k_scale = torch.zeros(5, bs, nkv)
    v_scale = torch.zeros(5, bs, nkv)
    slots = torch.tensor([8, 9, 10, 11, 0, 1, 2, 3, 16, 17])  # blocks 2, 0, 4
    cos, sin = _cos_sin(torch.zeros(10), 8)  # position 0: identity rotation
    kernels.rotary_and_cache(
        torch.zeros(10, nh, hd), k, v, cos, sin, k_cache, v_cache, slots, k_scale, v_scale
    )
    qk, sk = quantize_kv_ref(k)
    assert torch.equal(k_cache.view(-1, nkv, hd)[slots], qk)
    assert torch.equal(k_scale.view(-1, nkv)[slots], sk)
    tables = torch.tensor([[2, 0, 4]], dtype=torch.int32)
    out = paged_attention_ref(
        q,
        k_cache,
        v_cache,
        tables,
        torch.tensor([10], dtype=torch.int32),
        torch.tensor([0, 3], dtype=torch.int32),
        3,
        hd**-0.5,
        k_scale,
        v_scale,
    )
    ref = _dense_causal(q, k, v, hd**-0.5, 7)
    assert rel_err(out, ref) < 2e-2


def test_silu_and_mul():
    x = torch.randn(5, 2 * 33)
    gate, up = x[:, :33], x[:, 33:]
    assert torch.allclose(kernels.silu_and_mul(x), F.silu(gate) * up)


def test_int8_weight_quantization_and_linear():
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    w[3] = 0.0  # an all-zero row must not divide by zero
    qw = Int8Weight.quantize(w)
    assert qw.qweight.dtype == torch.int8 and qw.scale.dtype == torch.float32
    assert qw.scale[3] == 0 and (qw.qweight[3] == 0).all()
    assert torch.equal(qw.scale, w.abs().amax(1) / 127)
    assert (qw.dequantize() - w).abs().max() <= qw.scale.max() / 2 + 1e-6
    x, bias = torch.randn(5, 64), torch.randn(48)
    out = kernels.linear(x, qw, bias)
    assert torch.allclose(out, F.linear(x, qw.dequantize(), bias), atol=1e-4)
    assert rel_err(out, F.linear(x, w, bias)) < 1e-2
    assert torch.equal(kernels.linear(x, w, bias), F.linear(x, w, bias))
    with pytest.raises(ValueError, match="2-D"):
        Int8Weight.quantize(torch.randn(3))


def test_quantize_kv_roundtrip():
    x = torch.randn(6, 2, 16) * 5
    x[0, 1] = 0
    q, s = kernels.quantize_kv(x)
    assert q.shape == x.shape and s.shape == (6, 2) and q.dtype == torch.int8
    assert (q.float() * s[..., None] - x).abs().le(s[..., None] / 2 + 1e-6).all()
    assert q.abs().amax(-1)[s > 0].eq(127).all()


def test_dispatch_uses_reference_off_cuda(monkeypatch):
    """A Triton entry in the table is ignored for CPU tensors and under AUTOGLM_KERNELS=torch."""
    calls = []
    monkeypatch.setitem(kernels.TRITON_KERNELS, "silu_and_mul", "tests.kernels.test_reference:_fake_kernel")
    globals()["_fake_kernel"] = lambda x: calls.append(x) or x
    x = torch.randn(2, 8)
    assert torch.equal(kernels.silu_and_mul(x), F.silu(x[:, :4]) * x[:, 4:])
    assert calls == []


@pytest.mark.parametrize("int8", [False, True])
def test_paged_attention_all_decode_batch(int8):
    """The batched all-decode path: garbage table entries and a NaN-poisoned cache outside each sequence."""
    torch.manual_seed(0)
    nh, nkv, hd, bs = 8, 2, 16, 4
    lens = [1, 4, 5, 17, 9]
    seqs_kv = [(torch.randn(n, nkv, hd), torch.randn(n, nkv, hd)) for n in lens]
    k_cache, v_cache, tables = _scatter_to_cache(seqs_kv, bs, 30, nkv, hd)
    k_scale = v_scale = None
    if int8:
        k_scale, v_scale = torch.ones(30, bs, nkv), torch.ones(30, bs, nkv)
        k_cache, v_cache = k_cache.nan_to_num(127).round().clamp(-127, 127), v_cache.nan_to_num(-127)
        k_cache, v_cache = k_cache.to(torch.int8), v_cache.round().clamp(-127, 127).to(torch.int8)
        for b, (k, v) in enumerate(seqs_kv):  # the dense reference sees what the int8 cache holds
            seqs_kv[b] = (k.round().clamp(-127, 127), v.round().clamp(-127, 127))
    q = torch.randn(len(lens), nh, hd)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    cu = torch.arange(len(lens) + 1, dtype=torch.int32)
    out = kernels.paged_attention(q, k_cache, v_cache, tables, seq_lens, cu, 1, hd**-0.5, k_scale, v_scale)
    assert not out.isnan().any()
    for b, (k, v) in enumerate(seqs_kv):
        ref = _dense_causal(q[b : b + 1], k, v, hd**-0.5, lens[b] - 1)
        assert rel_err(out[b : b + 1], ref) < 1e-5, b
