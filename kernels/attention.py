"""Paged attention over a block KV cache, for prefill, chunked prefill and decode (torch reference).

Each sequence's K/V are gathered from its blocks (dequantized for an INT8 cache) and fed to
`F.scaled_dot_product_attention` with a causal mask offset by the number of cached tokens
before the step's queries (query i of a sequence with q_len queries and seq_len cached tokens
sits at position seq_len - q_len + i and sees cache positions <= that). Slow but plainly correct:
this is the ground truth the Triton kernels are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_kv_ref(
    cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_len: int,
    scale: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """cache (num_blocks, block_size, nkv, hd) -> this sequence's (seq_len, nkv, hd) in `dtype`."""
    bs = cache.shape[1]
    nblocks = (seq_len + bs - 1) // bs
    blocks = block_table[:nblocks].long()
    kv = cache[blocks].flatten(0, 1)[:seq_len]  # (S, nkv, hd)
    if scale is None:
        return kv.to(dtype)
    s = scale[blocks].flatten(0, 1)[:seq_len]  # (S, nkv)
    return (kv.float() * s[..., None]).to(dtype)


def decode_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """All-decode batch: q (B, nh, hd), one query per sequence at its last position, so it sees its whole
    cache. One padded SDPA for the batch; padding is masked out and reads the sequence's first slot (a
    written, finite value) so stale cache contents never reach the arithmetic."""
    nb, bs, nkv, hd = k_cache.shape
    group = q.shape[1] // nkv
    S = -(-int(seq_lens.max()) // bs) * bs
    pos = torch.arange(S, device=q.device)
    valid = pos[None, :] < seq_lens[:, None].long()  # (B, S)
    tables = block_tables[:, : S // bs].long().clamp(0, nb - 1)  # unused entries are arbitrary
    slots = tables[:, pos // bs] * bs + pos % bs  # (B, S) cache slot of each position
    slots = torch.where(valid, slots, slots[:, :1]).flatten()

    def gather(cache: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
        x = cache.flatten(0, 1).index_select(0, slots).view(-1, S, nkv, hd)  # (B, S, nkv, hd)
        if scales is not None:
            x = x.float() * scales.flatten(0, 1).index_select(0, slots).view(-1, S, nkv, 1)
        return x.to(q.dtype).transpose(1, 2)  # (B, nkv, S, hd)

    o = F.scaled_dot_product_attention(
        q[:, :, None, :],  # (B, nh, 1, hd)
        gather(k_cache, k_scale),
        gather(v_cache, v_scale),
        attn_mask=valid[:, None, None, :],
        scale=scale,
        enable_gqa=group > 1,
    )
    return o[:, :, 0, :]


def paged_attention_ref(
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
) -> torch.Tensor:
    """q (T, nh, hd) packed queries of B sequences -> (T, nh, hd)."""
    nh = q.shape[1]
    nkv = k_cache.shape[2]
    assert nh % nkv == 0, f"{nh=} {nkv=}"
    group = nh // nkv
    if max_seqlen_q == 1 and q.shape[0] == seq_lens.shape[0] and softcap is None:
        return decode_attention_ref(q, k_cache, v_cache, block_tables, seq_lens, scale, k_scale, v_scale)
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    lens = seq_lens.tolist()
    for b in range(len(lens)):
        q0, q1, s = cu[b], cu[b + 1], lens[b]
        ql = q1 - q0
        if ql == 0:
            continue
        assert ql <= max_seqlen_q and ql <= s, f"{ql=} {max_seqlen_q=} {s=}"
        k = gather_kv_ref(k_cache, block_tables[b], s, k_scale, q.dtype)  # (S, nkv, hd)
        v = gather_kv_ref(v_cache, block_tables[b], s, v_scale, q.dtype)
        k, v = k.transpose(0, 1), v.transpose(0, 1)  # (nkv, S, hd)
        qb = q[q0:q1].transpose(0, 1)  # (nh, L, hd)
        pos_q = torch.arange(s - ql, s, device=q.device)
        mask = torch.arange(s, device=q.device)[None, :] <= pos_q[:, None]  # (L, S)
        if softcap is None:
            # NOTE: 4-D inputs (a batch of 1) take SDPA's fused CPU kernel; 3-D ones fall back to a far
            # slower path. enable_gqa: query head h reads KV head h // group (repeat_interleave semantics).
            o = F.scaled_dot_product_attention(
                qb[None], k[None], v[None], attn_mask=mask, scale=scale, enable_gqa=group > 1
            )[0]
        else:
            k = k.repeat_interleave(group, dim=0)  # (nh, S, hd)
            v = v.repeat_interleave(group, dim=0)
            scores = (qb.float() @ k.float().transpose(1, 2)) * scale
            scores = softcap * torch.tanh(scores / softcap)
            scores = scores.masked_fill(~mask, float("-inf"))
            o = (scores.softmax(dim=-1) @ v.float()).to(q.dtype)
        out[q0:q1] = o.transpose(0, 1)
    return out
