"""Executes a scheduled batch on the model: packs tokens, builds paged-attention metadata, runs one
forward for all sequences (prefill chunks and decodes together) and returns the sampling rows' logits."""

from __future__ import annotations

import torch

from .config import ModelConfig
from .model import AttentionMetadata, GlmModel, LayerCache

KV_DTYPES = ("auto", "int8")


def kv_bytes_per_block(cfg: ModelConfig, block_size: int, elem_size: int, int8: bool) -> int:
    per_layer = 2 * block_size * cfg.num_kv_heads * cfg.head_dim * (1 if int8 else elem_size)
    if int8:
        per_layer += 2 * block_size * cfg.num_kv_heads * 4  # float32 scales
    return per_layer * cfg.num_layers


class ModelRunner:
    """Owns the paged KV tensors. Contract: `execute(seqs)` takes (token_ids, start, n, block_ids, sample)
    per sequence (run token_ids[start:start+n], whose K/V go to block_ids) and returns float32 logits
    (R, V) for the R sequences with sample=True, in order."""

    def __init__(
        self, model: GlmModel, num_blocks: int, block_size: int, kv_cache_dtype: str = "auto"
    ) -> None:
        if kv_cache_dtype not in KV_DTYPES:
            raise ValueError(
                f"unsupported kv_cache_dtype {kv_cache_dtype!r}; choose one of {', '.join(KV_DTYPES)}"
            )
        cfg = model.cfg
        self.model = model
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.device = model.device
        int8 = kv_cache_dtype == "int8"
        shape = (num_blocks, block_size, cfg.num_kv_heads, cfg.head_dim)
        dt = torch.int8 if int8 else model.dtype
        self.caches = [
            LayerCache(
                torch.zeros(shape, dtype=dt, device=self.device),
                torch.zeros(shape, dtype=dt, device=self.device),
                torch.zeros(shape[:3], dtype=torch.float32, device=self.device) if int8 else None,
                torch.zeros(shape[:3], dtype=torch.float32, device=self.device) if int8 else None,
            )
            for _ in range(cfg.num_layers)
        ]

    def prepare(
        self, seqs: list[tuple[list[int], int, int, list[int], bool]]
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, torch.Tensor]:
        bs = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        cu = [0]
        seq_lens: list[int] = []
        sample_rows: list[int] = []
        max_q = 0
        max_blocks = max(len(s[3]) for s in seqs)
        tables = torch.zeros(len(seqs), max_blocks, dtype=torch.int32)
        for b, (tokens, start, n, blocks, sample) in enumerate(seqs):
            assert n > 0 and start + n <= len(tokens), f"{start=} {n=} {len(tokens)=}"
            assert len(blocks) * bs >= start + n, f"{len(blocks)=} {start=} {n=}"
            input_ids.extend(tokens[start : start + n])
            pos = range(start, start + n)
            positions.extend(pos)
            slots.extend(blocks[p // bs] * bs + p % bs for p in pos)
            cu.append(cu[-1] + n)
            seq_lens.append(start + n)
            tables[b, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
            max_q = max(max_q, n)
            if sample:
                sample_rows.append(cu[-1] - 1)

        def dev(x, dtype):
            return torch.tensor(x, dtype=dtype).to(self.device, non_blocking=True)

        meta = AttentionMetadata(
            slot_mapping=dev(slots, torch.int64),
            block_tables=tables.to(self.device, non_blocking=True),
            seq_lens=dev(seq_lens, torch.int32),
            cu_seqlens_q=dev(cu, torch.int32),
            max_seqlen_q=max_q,
        )
        return dev(input_ids, torch.int64), dev(positions, torch.int64), meta, dev(sample_rows, torch.int64)

    @torch.inference_mode()
    def execute(self, seqs: list[tuple[list[int], int, int, list[int], bool]]) -> torch.Tensor:
        input_ids, positions, meta, rows = self.prepare(seqs)
        hidden = self.model.forward(input_ids, positions, meta, self.caches)  # (T, H)
        return self.model.compute_logits(hidden[rows])  # (R, V)
