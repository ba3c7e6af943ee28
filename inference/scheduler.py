"""Continuous batching: which requests run how many tokens this step.

Policy only: block bookkeeping is the KVCacheManager's, execution is the runner's.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .kv_cache import KVCacheManager
from .sampling import SamplingParams

_arrival = itertools.count()
PENDING = -1  # token_ids placeholder of a token sampled on the device but not yet read back


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Request:
    """A sequence being generated. token_ids = prompt + output; the first num_computed of them have
    their K/V in the cache (in block_ids). The engine appends PENDING for a token still on the device
    (num_unresolved of them, at the end) and writes the id in when it arrives; output_ids holds only
    arrived tokens. all_launched: the last token it may generate is sampled, so it runs no more steps."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    token_ids: list[int] = field(init=False)
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0
    block_ids: list[int] = field(default_factory=list)
    num_cached_blocks: int = 0
    status: Status = Status.WAITING
    seq: int = field(default_factory=lambda: next(_arrival))  # FCFS order
    prefix_hit_tokens: int | None = None  # set at first admission
    num_preemptions: int = 0
    num_unresolved: int = 0
    all_launched: bool = False
    state: Any = None  # the engine's per-request data (sink, detokenizer, timings)

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt_ids)

    @property
    def num_remaining(self) -> int:
        """Tokens to run before the next token can be sampled."""
        return len(self.token_ids) - self.num_computed

    def append(self, token: int) -> None:
        self.output_ids.append(token)
        self.token_ids.append(token)


@dataclass
class Batch:
    """One step's work: requests[i] runs num_tokens[i] tokens from its num_computed on."""

    requests: list[Request] = field(default_factory=list)
    num_tokens: list[int] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_tokens)

    def samples(self, i: int) -> bool:
        """Whether requests[i] reaches the end of its tokens this step (and so samples one)."""
        r = self.requests[i]
        return r.num_computed + self.num_tokens[i] == len(r.token_ids)


class Scheduler:
    """FCFS continuous batching with chunked prefill.

    Contract: `schedule()` gives every running request its next tokens, decodes first (one token
    each), then the rest of partly-prefilled ones, then admits waiting requests (after a prefix-cache
    match) in arrival order, all within `max_num_batched_tokens` and `max_num_seqs`. When blocks run
    out, the newest running request is preempted: its blocks are freed and it goes back to the front
    of the waiting queue to be recomputed (prompt + output so far), so its output is unchanged.
    """

    def __init__(
        self, kv: KVCacheManager, max_num_seqs: int = 64, max_num_batched_tokens: int = 2048
    ) -> None:
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order
        self.num_preemptions = 0

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, req: Request) -> None:
        req.status = Status.WAITING
        self.waiting.append(req)

    def finish(self, req: Request) -> None:
        """Remove a request wherever it is and free its blocks (finish, cancel, timeout)."""
        if req.status is Status.RUNNING:
            self.running.remove(req)
        elif req.status is Status.WAITING and req in self.waiting:
            self.waiting.remove(req)
        self.kv.free(req)
        req.status = Status.FINISHED

    def _preempt(self, req: Request) -> None:
        self.running.remove(req)
        self.kv.free(req)
        req.num_computed = 0
        req.status = Status.WAITING
        req.num_preemptions += 1
        self.num_preemptions += 1
        # older preempted requests end up ahead: we always preempt the newest first
        self.waiting.appendleft(req)

    def schedule(self) -> Batch:
        batch = Batch()
        budget = self.max_num_batched_tokens
        order = [r for r in self.running if r.num_remaining == 1] + [
            r for r in self.running if r.num_remaining > 1
        ]
        for req in order:
            if req.status is not Status.RUNNING or budget == 0 or req.all_launched:
                continue  # preempted earlier in this loop, out of budget, or waiting for its last token
            n = min(req.num_remaining, budget)
            while not self.kv.allocate_slots(req, n):
                victim = max(self.running, key=lambda r: r.seq)
                if victim in batch.requests:
                    i = batch.requests.index(victim)
                    budget += batch.num_tokens.pop(i)
                    batch.requests.pop(i)
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is req:
                    break
            if req.status is not Status.RUNNING:
                continue
            batch.requests.append(req)
            batch.num_tokens.append(n)
            budget -= n
        if batch.preempted:
            return batch  # memory is short: admit nothing new this step
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            req = self.waiting[0]
            if req.num_unresolved:
                break  # preempted with a token still on the device: its prompt is not known yet
            # NOTE: a request that wants prompt logprobs needs the logits of every prompt position, which a
            # cached prefix does not have: it recomputes the prefix instead (its own blocks are cached after)
            hit = self.kv.match_prefix(req) if req.params.prompt_logprobs is None else 0
            n = min(req.num_remaining, budget)
            if not self.kv.allocate_slots(req, n):
                self.kv.free(req)
                req.num_computed = 0
                break
            if req.prefix_hit_tokens is None:  # first admission (not a recompute after preemption)
                req.prefix_hit_tokens = hit
                self.kv.record_hit(len(req.prompt_ids), hit)
            self.waiting.popleft()
            req.status = Status.RUNNING
            self.running.append(req)
            batch.requests.append(req)
            batch.num_tokens.append(n)
            budget -= n
        return batch
