"""Sampling parameters and the sampler (greedy, temperature, top-k, top-p, penalties, seeds)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .staging import Staging

MAX_TOP_LOGPROBS = 20  # alternatives per token (OpenAI's chat top_logprobs limit)


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
    top_logprobs: int = 0  # with logprobs: also each step's N likeliest tokens (0..MAX_TOP_LOGPROBS)
    # the prompt tokens' log-probabilities (each given the ones before it) and their N likeliest alternatives;
    # None: not computed. NOTE: such a request skips the prefix cache (its cached positions have no logits)
    prompt_logprobs: int | None = None
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
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=True")
        if self.prompt_logprobs is not None and not 0 <= self.prompt_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(
                f"prompt_logprobs must be None or in [0, {MAX_TOP_LOGPROBS}], got {self.prompt_logprobs}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        """Any repetition, presence or frequency penalty (they count the tokens generated so far)."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


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


def score_rows(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """logits (n, V) float32, targets (n,) int64 -> (n, 1 + 2k) float32: each row's log-probability of its
    target, then its k likeliest token ids and their log-probabilities, likeliest first (ids < 2^24 are
    exact in float32: one tensor, one copy to the host)."""
    lsm = logits.log_softmax(-1)
    lp = lsm.gather(1, targets[:, None])  # (n, 1)
    if not k:
        return lp
    top = lsm.topk(k, dim=-1)  # sorted, descending
    return torch.cat([lp, top.indices.float(), top.values], dim=1)


def unpack_top(row: list[float], k: int, at: int = 1) -> list[tuple[int, float]]:
    """The k (token id, log-probability) pairs that `score_rows` packed into a host row from column `at`."""
    return [(int(t), lp) for t, lp in zip(row[at : at + k], row[at + k : at + 2 * k], strict=True)]


Row = tuple[SamplingParams, list[int], list[int], torch.Generator | None]  # params, prompt, output, generator

# columns of the per-row parameter table uploaded once per step
_TEMP, _TOP_P, _TOP_K, _GREEDY, _REP, _PRES, _FREQ = range(7)


class SampledTokens:
    """One step's sampled tokens (and chosen-token logprobs), possibly still being computed on the
    device. `wait()` blocks until they are on the host: the step's only device-to-host copy."""

    def __init__(
        self,
        tokens: torch.Tensor,
        packed: torch.Tensor,
        host: torch.Tensor | None,
        want: list[bool],
        top: list[int] | None = None,
    ) -> None:
        """packed: (R, 2) float32 (token id, logprob), (R, 2 + 2k) with each row's k likeliest ids and their
        logprobs after them when `top` (each row's own count, <= k) is given, or the (R,) int64 ids alone
        when no row wants logprobs; host: a pinned buffer of packed's dtype and at least its size (flat for
        the (R, 2 + 2k) form; None on the CPU)."""
        self.tokens = tokens  # (R,) int64 on the logits' device: the next step may read them there
        self._want = want
        self._top = top
        # after wait(): each row's likeliest (token id, logprob) pairs, None for a row that did not ask
        self.top: list[list[tuple[int, float]] | None] = [None] * len(want)
        if host is None:  # CPU: already computed
            self._packed, self._event = packed, None
        else:
            R = packed.shape[0]
            dst = host[: packed.numel()].view(packed.shape) if top is not None else host[:R]
            dst.copy_(packed, non_blocking=True)
            self._packed = dst
            self._event = torch.cuda.Event()
            self._event.record()

    def wait(self) -> tuple[list[int], list[float | None]]:
        if self._event is not None:
            self._event.synchronize()
        rows = self._packed.tolist()
        if self._packed.dim() == 1:
            return rows, [None] * len(rows)
        if self._top is not None:
            k = (len(rows[0]) - 2) // 2
            self.top = [
                unpack_top(r, k, at=2)[:n] if n else None for r, n in zip(rows, self._top, strict=True)
            ]
        return [int(r[0]) for r in rows], [r[1] if w else None for r, w in zip(rows, self._want, strict=True)]


class Sampler:
    """Picks one token per row for the whole batch with batched tensor ops, no host sync.

    Contract: `sample_async(logits, rows)` with logits (R, V) float32 and one (params, prompt_ids,
    output_ids, generator) per row -> SampledTokens; `sample(...)` waits for them. Per row: penalties
    (repetition over prompt + output, presence/frequency over output: a (R, V) count tensor built by
    scatter_add from the ids uploaded once per step), then argmax for greedy rows; sampled rows take
    temperature, top-k, top-p and draw with the exponential race argmax(p / E), E ~ Exp(1) - the same
    distribution as multinomial. Rows with a generator (seeded requests) draw E from it, so a seeded
    request's tokens do not depend on what it is batched with; the others share one draw from the
    device's default generator. Logprobs are of the raw logits (before penalties and temperature).
    """

    def __init__(self) -> None:
        # two sets of host buffers used in turn: the engine launches a step's sampling before it reads the
        # previous step's tokens, so that step's output buffer must not be the one this copy writes
        self._sets: list[tuple[Staging, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._turn = 0

    def sample(self, logits: torch.Tensor, rows: list[Row]) -> tuple[list[int], list[float | None]]:
        return self.sample_async(logits, rows).wait()

    def sample_async(
        self, logits: torch.Tensor, rows: list[Row], argmax: torch.Tensor | None = None
    ) -> SampledTokens:
        """argmax: the logits' row-wise argmax (R,) int64 if already computed (a decode graph's greedy ids,
        ``ModelRunner.last_argmax``): an all-greedy batch without penalties then takes it as it is, and
        without logprobs launches nothing but the copy of the ids to the host."""
        R, V = logits.shape
        assert len(rows) == R, f"{len(rows)=} {R=}"
        staging, table_host, out_host, ids_host, wide_host = self._buffers(logits.device, R)
        staging.claim()
        params = [r[0] for r in rows]
        penalized = any(p.penalized for p in params)
        greedy = all(p.greedy for p in params)
        want = [p.logprobs for p in params]
        if greedy and not penalized and argmax is not None and not any(want):
            return SampledTokens(argmax, argmax, ids_host if staging.cuda else None, want)
        t = None
        if penalized or not greedy:
            table = table_host.numpy()[:R]
            table[:, _TEMP] = [p.temperature or 1.0 for p in params]
            table[:, _TOP_P] = [p.top_p if p.top_p < 1.0 else float("inf") for p in params]
            table[:, _TOP_K] = [p.top_k if 0 < p.top_k < V else V for p in params]
            table[:, _GREEDY] = [p.greedy for p in params]
            table[:, _REP] = [p.repetition_penalty for p in params]
            table[:, _PRES] = [p.presence_penalty for p in params]
            table[:, _FREQ] = [p.frequency_penalty for p in params]
            t = staging.upload(table_host[:R])
        x = self._penalize(logits, rows, t, staging) if penalized else logits
        staging.uploaded()
        if greedy:
            tokens = argmax if argmax is not None and not penalized else x.argmax(-1)
        else:
            s = x / t[:, _TEMP, None]
            if any(0 < p.top_k < V for p in params):
                k_max = max(p.top_k for p in params if 0 < p.top_k < V)
                top = torch.topk(s, k_max, dim=-1).values  # (R, k_max)
                k = t[:, _TOP_K].long().clamp(max=k_max) - 1
                kth = torch.where(t[:, _TOP_K] < V, top.gather(1, k[:, None])[:, 0], float("-inf"))
                s = s.masked_fill(s < kth[:, None], float("-inf"))
            if any(p.top_p < 1.0 for p in params):
                s = _top_p_batched(s, t[:, _TOP_P])
            probs = s.softmax(-1)
            # NOTE: Exp(1) draws can round to 0 in float32; 0 / 0 would be NaN, which argmax picks
            noise = torch.empty_like(probs).exponential_()
            for i, (_, _, _, gen) in enumerate(rows):
                if gen is not None:
                    noise[i].exponential_(generator=gen)
            drawn = (probs / noise.clamp_min_(1e-20)).argmax(-1)
            tokens = torch.where(t[:, _GREEDY] > 0, x.argmax(-1), drawn)
        tops = [p.top_logprobs if p.logprobs else 0 for p in params]
        k = max(tops)
        # token ids < 2^24 are exact in float32: one (R, 2) tensor of each row's token id and its logprob (0
        # where no row asks), one copy to the host; with top_logprobs (only when a row asks) the (R, 2 + 2k)
        # form of `score_rows` and its own host buffer
        if any(want):
            scored = score_rows(logits, tokens, k)
        else:
            scored = torch.zeros(R, 1, dtype=torch.float32, device=logits.device)
        packed = torch.cat([tokens.float()[:, None], scored], dim=1)
        if k:
            return SampledTokens(tokens, packed, wide_host if staging.cuda else None, want, tops)
        return SampledTokens(tokens, packed, out_host if staging.cuda else None, want)

    def _buffers(
        self, device: torch.device, R: int
    ) -> tuple[Staging, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This call's (staging, parameter table (rows, 7), output (rows, 2): token id, logprob, output
        (rows,): token id alone, output (rows * (2 + 2 * MAX_TOP_LOGPROBS),) flat: with the top tokens)
        host buffers."""
        if not self._sets or self._sets[0][0].device != device or self._sets[0][1].shape[0] < R:
            for st, *_ in self._sets:
                st.claim()
            cap = max(R, 64)
            self._sets = []
            for _ in range(2):
                st = Staging(device)
                self._sets.append(
                    (st, st.empty((cap, 7), torch.float32), st.empty((cap, 2), torch.float32),
                     st.empty((cap,), torch.int64), st.empty((cap * (2 + 2 * MAX_TOP_LOGPROBS),), torch.float32))
                )  # fmt: skip
        self._turn ^= 1
        return self._sets[self._turn]

    def _penalize(
        self, logits: torch.Tensor, rows: list[Row], t: torch.Tensor, staging: Staging
    ) -> torch.Tensor:
        """Apply each row's penalties (rows without any are left exactly as they are)."""
        R, V = logits.shape
        flat: list[np.ndarray] = []
        is_out: list[np.ndarray] = []
        for i, (p, prompt, output, _) in enumerate(rows):
            if not p.penalized:
                continue
            if p.repetition_penalty != 1.0:
                flat.append(np.asarray(prompt, dtype=np.int64) + i * V)
                is_out.append(np.zeros(len(prompt), dtype=np.float32))
            flat.append(np.asarray(output, dtype=np.int64) + i * V)
            is_out.append(np.ones(len(output), dtype=np.float32))
        ids = torch.from_numpy(np.concatenate(flat))
        weights = torch.from_numpy(np.concatenate(is_out))
        if staging.cuda:  # pinned copies from the caching host allocator, kept alive until the upload ran
            ids, weights = ids.pin_memory(), weights.pin_memory()
        ids, weights = staging.upload(ids), staging.upload(weights)
        # NOTE: scatter_add_ with device tensors only: `seen[ids] = True` would copy the True from the host
        # and synchronize (caught by the sync-debug-mode test)
        zeros = torch.zeros(2, R * V, dtype=torch.float32, device=logits.device)
        seen = zeros[0].scatter_add_(0, ids, torch.ones_like(weights)).view(R, V) > 0  # prompt and output
        counts = zeros[1].scatter_add_(0, ids, weights).view(R, V)  # output tokens
        rep = t[:, _REP, None]
        x = torch.where(seen & (rep != 1.0), torch.where(logits > 0, logits / rep, logits * rep), logits)
        return x - t[:, _PRES, None] * (counts > 0) - t[:, _FREQ, None] * counts


def _top_p_batched(s: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """filter_top_k_top_p's nucleus rule per row (top_p (R,); inf keeps every token)."""
    sorted_s, order = torch.sort(s, dim=-1, descending=True)
    probs = sorted_s.softmax(-1)
    drop = (probs.cumsum(-1) - probs) >= top_p[:, None]
    drop[:, :1].fill_(False)
    return s.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen
