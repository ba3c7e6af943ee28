"""GLM-4 (`GlmForCausalLM`, glm-4-9b-chat-hf) and GLM-4-0414 (`Glm4ForCausalLM`) over a paged KV cache.

One forward runs the packed tokens of every scheduled sequence (prefill chunks and decodes
together, T tokens in all) through the layers; every op goes through `kernels`, so the Triton
kernels replace the torch references on CUDA without touching this file. Numerics follow
transformers: RMSNorm in float32, QKV bias, grouped-query attention, partial interleaved rotary,
fused gate_up SwiGLU, untied lm_head; GLM-4-0414 adds a norm after attention and after the MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import kernels
from kernels import Int8Weight

from .config import ModelConfig


@dataclass
class AttentionMetadata:
    """Where the step's tokens sit in the paged cache (see kernels/dispatch.py for the layout)."""

    slot_mapping: torch.Tensor  # (T,) int64: cache slot of each token
    block_tables: torch.Tensor  # (B, max_blocks) int32
    seq_lens: torch.Tensor  # (B,) int32: cached tokens after this step
    cu_seqlens_q: torch.Tensor  # (B+1,) int32
    max_seqlen_q: int
    invariant: bool = False  # batch-invariant matmuls and attention (kernels.linear's `invariant`)


@dataclass
class LayerCache:
    """One layer's paged K/V: (num_blocks, block_size, nkv, hd); scales (num_blocks, block_size, nkv) for int8."""

    k: torch.Tensor
    v: torch.Tensor
    k_scale: torch.Tensor | None = None
    v_scale: torch.Tensor | None = None


Weight = torch.Tensor | Int8Weight


def empty_weight(n: int, k: int, device: torch.device, dtype: torch.dtype, int8: bool) -> Weight:
    """An (n, k) matmul weight to be filled by the loader: per-output-channel INT8 or `dtype`."""
    if int8:
        return Int8Weight(
            torch.empty(n, k, dtype=torch.int8, device=device),
            torch.empty(n, dtype=torch.float32, device=device),
        )
    return torch.empty(n, k, dtype=dtype, device=device)


class DecoderLayer:
    """Weights of one decoder layer; q/k/v are fused into one (nh + 2 nkv) * hd projection."""

    def __init__(self, cfg: ModelConfig, device: torch.device, dtype: torch.dtype, int8: bool) -> None:
        H, hd = cfg.hidden_size, cfg.head_dim
        qkv_out = (cfg.num_heads + 2 * cfg.num_kv_heads) * hd

        def mat(n: int, k: int) -> Weight:
            return empty_weight(n, k, device, dtype, int8)

        def vec(n: int) -> torch.Tensor:
            return torch.empty(n, dtype=dtype, device=device)

        self.input_norm = vec(H)
        self.qkv = mat(qkv_out, H)
        self.qkv_bias = vec(qkv_out) if cfg.attention_bias else None
        self.o_proj = mat(H, cfg.num_heads * hd)
        self.post_attention_norm = vec(H)
        self.gate_up = mat(2 * cfg.intermediate_size, H)
        self.down = mat(H, cfg.intermediate_size)
        self.post_self_attn_norm = vec(H) if cfg.post_norms else None
        self.post_mlp_norm = vec(H) if cfg.post_norms else None


class GlmModel:
    """GLM-4 causal LM. Contract: `forward(input_ids, positions, meta, caches)` writes the step's K/V
    into `caches` and returns final hidden states (T, H); `compute_logits(h)` -> float32 (R, V)."""

    def __init__(
        self,
        cfg: ModelConfig,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        int8: bool = False,
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.int8 = int8
        self.embed = torch.empty(cfg.vocab_size, cfg.hidden_size, dtype=dtype, device=self.device)
        self.layers = [DecoderLayer(cfg, self.device, dtype, int8) for _ in range(cfg.num_layers)]
        self.norm = torch.empty(cfg.hidden_size, dtype=dtype, device=self.device)
        # INT8 too when the layers are: at batch 1 it is ~13% of the bytes a GLM-4-9B decode step reads
        self.lm_head = empty_weight(cfg.vocab_size, cfg.hidden_size, self.device, dtype, int8)
        # rotary inverse frequencies over the rotated part of each head, in float32 as transformers computes them
        rd = cfg.rotary_dim
        self.inv_freq = 1.0 / (
            cfg.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.float32, device=self.device) / rd)
        )
        self.scale = cfg.head_dim**-0.5

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (T,) -> cos, sin (T, rotary_dim // 2) float32."""
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        return freqs.cos(), freqs.sin()

    def attention(
        self,
        layer: DecoderLayer,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        meta: AttentionMetadata,
        cache: LayerCache,
    ) -> torch.Tensor:
        cfg = self.cfg
        T = x.shape[0]
        nh, hd = cfg.num_heads, cfg.head_dim
        inv = meta.invariant
        # [q | k | v] = x @ qkv.T + bias; q and k rotated, k and v written to the cache: q (T, nh, hd)
        q = kernels.qkv_rotary_cache(
            x, layer.qkv, layer.qkv_bias, cos, sin, cache.k, cache.v, meta.slot_mapping, cache.k_scale,
            cache.v_scale, nh, invariant=inv,
        )  # fmt: skip
        o = kernels.paged_attention(
            q,
            cache.k,
            cache.v,
            meta.block_tables,
            meta.seq_lens,
            meta.cu_seqlens_q,
            meta.max_seqlen_q,
            self.scale,
            cache.k_scale,
            cache.v_scale,
            invariant=inv,
            planes_for=layer.o_proj,  # (an INT8 o_proj's input rows written also as its int8 planes)
        )  # (T, nh, hd)
        return kernels.linear(o.reshape(T, nh * hd), layer.o_proj, invariant=inv)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        caches: list[LayerCache],
    ) -> torch.Tensor:
        """input_ids, positions (T,) -> final hidden states (T, H)."""
        eps = self.cfg.rms_norm_eps
        cos, sin = self.rotary(positions)
        h = self.embed[input_ids]  # (T, H)
        residual = None
        # GLM-4's post-attention and post-MLP norms (None for GLM) apply to a block's output right before the
        # residual add, which the next norm follows at once: each goes into that norm's launch (pre_weight)
        post_mlp = None
        for layer, cache in zip(self.layers, caches, strict=True):
            # (planes_for: an INT8 projection's input rows written, by the norm, also as its int8 planes)
            if residual is None:
                residual = h
                x = kernels.rms_norm(h, layer.input_norm, eps, planes_for=layer.qkv)
            else:
                x, residual = kernels.rms_norm(h, layer.input_norm, eps, residual, post_mlp, layer.qkv)
            a = self.attention(layer, x, cos, sin, meta, cache)
            x, residual = kernels.rms_norm(
                a, layer.post_attention_norm, eps, residual, layer.post_self_attn_norm, layer.gate_up
            )
            act = kernels.gate_up_silu(x, layer.gate_up, invariant=meta.invariant, planes_for=layer.down)
            h = kernels.linear(act, layer.down, invariant=meta.invariant)
            post_mlp = layer.post_mlp_norm
        out, _ = kernels.rms_norm(h, self.norm, eps, residual, post_mlp)
        return out

    def compute_logits(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (R, H) -> logits (R, V) float32 (written into `out` when given, e.g. a graph's buffer)."""
        logits = kernels.linear(hidden, self.lm_head)
        return logits.float() if out is None else out.copy_(logits)
