"""Sampling parameters and the sampler (greedy, temperature, top-k, top-p, penalties, seeds)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    """Per-request decoding options. temperature 0 means greedy."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: disabled
    repetition_penalty: float = 1.0  # transformers-style, over prompt and output tokens
    presence_penalty: float = 0.0  # OpenAI-style, over output tokens
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # stop strings, not emitted
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the model's EOS ids
    ignore_eos: bool = False
    logprobs: bool = False  # return the log-probability of each chosen token
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = disabled), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not -2 <= self.presence_penalty <= 2 or not -2 <= self.frequency_penalty <= 2:
            raise ValueError("presence_penalty and frequency_penalty must be in [-2, 2]")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_penalties(
    logits: torch.Tensor, params: SamplingParams, prompt_ids: list[int], output_ids: list[int]
) -> torch.Tensor:
    """logits (V,) float32 -> penalized copy."""
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(prompt_ids) | set(output_ids)), device=logits.device, dtype=torch.long)
        s = logits[seen]
        logits = logits.clone()
        logits[seen] = torch.where(s > 0, s / params.repetition_penalty, s * params.repetition_penalty)
    if output_ids and (params.presence_penalty or params.frequency_penalty):
        counts = torch.bincount(torch.tensor(output_ids, device=logits.device), minlength=logits.shape[0]).to(
            logits.dtype
        )
        logits = logits - params.presence_penalty * (counts > 0) - params.frequency_penalty * counts
    return logits


def filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k and the top-p nucleus to -inf (always keeps the best token)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass strictly before it already reaches top_p
        drop = (probs.cumsum(-1) - probs) >= top_p
        drop[0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


class Sampler:
    """Picks one token per row. Contract: `sample(logits, rows)` with logits (R, V) float32 and one
    (params, prompt_ids, output_ids, generator) per row -> (token ids, chosen-token logprobs or None)."""

    def sample(
        self,
        logits: torch.Tensor,
        rows: list[tuple[SamplingParams, list[int], list[int], torch.Generator | None]],
    ) -> tuple[list[int], list[float | None]]:
        tokens: list[int] = []
        logprobs: list[float | None] = []
        plain_greedy = [i for i, (p, *_) in enumerate(rows) if p.greedy and not _penalized(p)]
        greedy_ids = logits[plain_greedy].argmax(-1).tolist() if plain_greedy else []
        greedy_map = dict(zip(plain_greedy, greedy_ids, strict=True))
        for i, (params, prompt_ids, output_ids, gen) in enumerate(rows):
            if i in greedy_map:
                tok = greedy_map[i]
            else:
                row = apply_penalties(logits[i], params, prompt_ids, output_ids)
                if params.greedy:
                    tok = int(row.argmax())
                else:
                    row = filter_top_k_top_p(row / params.temperature, params.top_k, params.top_p)
                    tok = int(torch.multinomial(row.softmax(-1), 1, generator=gen))
            tokens.append(tok)
            logprobs.append(float(logits[i].log_softmax(-1)[tok]) if params.logprobs else None)
        return tokens, logprobs


def _penalized(p: SamplingParams) -> bool:
    return p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen
