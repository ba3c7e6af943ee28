"""The engine: a background loop that schedules, runs and samples, and the public API around it.

    engine = Engine.from_pretrained("/models/glm-4-9b-chat-hf", device="cuda", dtype="bfloat16")
    [c] = engine.generate(["Hello"], SamplingParams(max_tokens=32, temperature=0))
    async for ev in engine.stream([{"role": "user", "content": "Hi"}], params): ...

One loop thread owns the scheduler, the KV cache and the model; callers in any thread or asyncio
loop hand it requests through a locked inbox and get events back through per-request sinks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .kv_cache import KVCacheManager
from .model import GlmModel
from .runner import ModelRunner, kv_bytes_per_block
from .sampling import Sampler, SamplingParams, make_generator
from .scheduler import Request, Scheduler, Status
from .tokenizer import IncrementalDetokenizer, Message, Tokenizer
from .weights import load_model

log = logging.getLogger(__name__)

Prompt = str | list[int] | list[Message]


class EngineOverloaded(RuntimeError):
    """The bounded waiting queue is full; the caller should retry later (HTTP 503/429)."""


@dataclass
class TokenEvent:
    """One generated token; `text` is the newly printable text (may be empty while a UTF-8 character
    or a possible stop string is still incomplete)."""

    request_id: str
    token_id: int
    text: str
    logprob: float | None = None


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    prefix_hit_tokens: int  # prompt tokens whose K/V came from the prefix cache


@dataclass
class Timings:
    queue_s: float  # submit -> first scheduled
    prefill_s: float  # first scheduled -> first token
    ttft_s: float  # submit -> first token
    decode_s: float  # first token -> last token
    decode_tokens_per_s: float
    total_s: float


@dataclass
class Completion:
    """The final event of a request: full text (stop strings removed), tokens, reason, usage, timings."""

    request_id: str
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "abort" | "timeout" | "error"
    usage: Usage
    timings: Timings
    logprobs: list[float] | None = None
    error: str | None = None


@dataclass
class _State:
    """Engine-side data of a request (lives in Request.state)."""

    sink: Callable[[TokenEvent | Completion], None]
    detok: IncrementalDetokenizer
    generator: torch.Generator | None
    stop_ids: set[int]
    deadline: float | None
    submitted: float = field(default_factory=time.perf_counter)
    scheduled: float | None = None
    first_token: float | None = None
    text: str = ""  # decoded output so far
    emitted: int = 0  # characters of text already sent
    logprobs: list[float] = field(default_factory=list)


class Engine:
    """GLM-4 inference engine with a paged, prefix-reusing KV cache and continuous batching.

    Thread-safe: `generate` (blocking) and `stream` (asyncio) may be called from many threads and
    event loops at once; a single background thread runs the model.

    Options: block_size (tokens per KV block, 16); num_blocks (pool size; default from kv_cache_memory
    bytes, itself defaulting to 90% of free GPU memory less 1 GiB on CUDA, 1 GiB on the CPU);
    kv_cache_dtype ("auto" = model dtype, or "int8"); max_num_seqs (running requests, 64);
    max_num_batched_tokens (tokens per step, 2048: the chunked-prefill budget); max_waiting (queued
    requests before submit raises EngineOverloaded, 256); max_model_len (prompt + output cap; default
    the config's max_position_embeddings, never more than the pool holds); enable_prefix_caching (True);
    request_timeout_s (default per-request timeout, None).
    """

    def __init__(
        self,
        model: GlmModel,
        tokenizer: Tokenizer | None,
        *,
        block_size: int = 16,
        num_blocks: int | None = None,
        kv_cache_memory: int | None = None,
        kv_cache_dtype: str = "auto",
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 2048,
        max_waiting: int = 256,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        request_timeout_s: float | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        cfg = model.cfg
        if num_blocks is None:
            num_blocks = _default_num_blocks(model, block_size, kv_cache_dtype, kv_cache_memory)
        self.runner = ModelRunner(model, num_blocks, block_size, kv_cache_dtype)
        self.kv = KVCacheManager(num_blocks, block_size, enable_prefix_caching)
        self.scheduler = Scheduler(self.kv, max_num_seqs, max_num_batched_tokens)
        self.sampler = Sampler()
        self.max_model_len = min(max_model_len or cfg.max_position_embeddings, num_blocks * block_size)
        self.max_waiting = max_waiting
        self.request_timeout_s = request_timeout_s
        self.eos_ids = set(cfg.eos_token_ids)
        self.steps = 0
        self._requests: dict[str, Request] = {}
        self._inbox: list[Request] = []
        self._aborts: list[str] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    # construction --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "auto",
        quantization: str | None = None,
        kv_cache_dtype: str = "auto",
        **options: Any,
    ) -> Engine:
        """Load config, weights (streamed shard by shard) and tokenizer from a local checkpoint directory.
        dtype "auto" is bfloat16 on CUDA and float32 on the CPU; quantization None or "int8" (W8A16);
        kv_cache_dtype "auto" (the model dtype) or "int8". Other options go to Engine()."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if dtype == "auto":
            dtype = "bfloat16" if device.type == "cuda" else "float32"
        model = load_model(path, device=device, dtype=dtype, quantization=quantization)
        tokenizer = Tokenizer(path)
        gen_cfg = Path(path) / "generation_config.json"
        engine = cls(model, tokenizer, kv_cache_dtype=kv_cache_dtype, **options)
        if gen_cfg.is_file():
            import json

            eos = json.loads(gen_cfg.read_text()).get("eos_token_id")
            if eos is not None:
                engine.eos_ids |= {eos} if isinstance(eos, int) else set(eos)
        return engine

    # public API ---------------------------------------------------------------------------------
    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """A string (encoded as is), token ids, or chat messages (rendered with the chat template)."""
        if isinstance(prompt, str):
            self._need_tokenizer()
            ids = self.tokenizer.encode(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
            self._need_tokenizer()
            ids = self.tokenizer.encode_chat(prompt)
        elif isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
            ids = list(prompt)
        else:
            raise ValueError("a prompt must be a string, a list of token ids, or a list of chat messages")
        if not ids:
            raise ValueError("the prompt is empty")
        V = self.model.cfg.vocab_size
        if min(ids) < 0 or max(ids) >= V:
            raise ValueError(f"prompt token ids must be in [0, {V})")
        return ids

    def submit(
        self,
        prompt: Prompt,
        params: SamplingParams | None,
        sink: Callable[[TokenEvent | Completion], None],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Queue a request whose events go to `sink` (called on the engine thread); returns its id.
        Raises ValueError for a bad prompt or parameters, EngineOverloaded when the queue is full."""
        params = params or SamplingParams()
        ids = self.encode_prompt(prompt)
        if len(ids) + params.max_tokens > self.max_model_len:
            raise ValueError(
                f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                f"max_model_len ({self.max_model_len})"
            )
        rid = request_id or uuid.uuid4().hex
        timeout_s = timeout_s if timeout_s is not None else self.request_timeout_s
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else self.eos_ids)
        req = Request(rid, ids, params)
        req.state = _State(
            sink=sink,
            detok=IncrementalDetokenizer(self.tokenizer, params.skip_special_tokens)
            if self.tokenizer
            else None,
            generator=None if params.greedy else make_generator(params.seed, self.model.device),
            stop_ids=stop_ids,
            deadline=time.perf_counter() + timeout_s if timeout_s else None,
        )
        with self._cv:
            if rid in self._requests:
                raise ValueError(f"request id {rid!r} is already in use")
            if len(self.scheduler.waiting) + len(self._inbox) >= self.max_waiting:
                raise EngineOverloaded(
                    f"engine queue is full ({self.max_waiting} waiting requests); retry later"
                )
            self._requests[rid] = req
            self._inbox.append(req)
            self._ensure_thread()
            self._cv.notify()
        return rid

    def abort(self, request_id: str) -> None:
        """Cancel a request (e.g. the client went away); its blocks are freed at the next step."""
        with self._cv:
            self._aborts.append(request_id)
            self._cv.notify()

    def generate(
        self, prompts: Prompt | list[Prompt], params: SamplingParams | list[SamplingParams] | None = None
    ) -> list[Completion]:
        """Run a batch of prompts to completion (blocking); one Completion per prompt, in order."""
        if isinstance(prompts, str) or (prompts and not isinstance(prompts[0], str | list)):
            prompts = [prompts]  # one prompt: a string, token ids or messages
        plist = params if isinstance(params, list) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise ValueError(f"got {len(plist)} SamplingParams for {len(prompts)} prompts")
        results: list[Completion | None] = [None] * len(prompts)
        done = threading.Semaphore(0)

        def sink_for(i: int):
            def sink(ev):
                if isinstance(ev, Completion):
                    results[i] = ev
                    done.release()

            return sink

        ids = [self.submit(p, sp, sink_for(i)) for i, (p, sp) in enumerate(zip(prompts, plist, strict=True))]
        try:
            for _ in ids:
                done.acquire()
        except BaseException:
            for rid in ids:
                self.abort(rid)
            raise
        return results  # type: ignore[return-value]

    async def stream(
        self,
        prompt: Prompt,
        params: SamplingParams | None = None,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[TokenEvent | Completion]:
        """Yield TokenEvents, then one Completion. Leaving the loop early cancels the request."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TokenEvent | Completion] = asyncio.Queue()

        def sink(ev):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
            except RuntimeError:  # the caller's loop is closed
                pass

        rid = self.submit(prompt, params, sink, request_id=request_id, timeout_s=timeout_s)
        finished = False
        try:
            while True:
                ev = await queue.get()
                yield ev
                if isinstance(ev, Completion):
                    finished = True
                    return
        finally:
            if not finished:
                self.abort(rid)

    def stats(self) -> dict[str, float]:
        return {
            "prompt_tokens": self.kv.prompt_tokens,
            "prefix_hit_tokens": self.kv.hit_tokens,
            "prefix_hit_rate": self.kv.hit_rate,
            "num_preemptions": self.scheduler.num_preemptions,
            "free_blocks": self.kv.cache.pool.num_free,
            "cached_blocks": self.kv.cache.num_cached_blocks,
            "running": len(self.scheduler.running),
            "waiting": len(self.scheduler.waiting),
            "steps": self.steps,
        }

    def close(self) -> None:
        """Stop the loop thread (pending requests are aborted)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # loop ---------------------------------------------------------------------------------------
    def _need_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise ValueError("this engine has no tokenizer; pass token ids")

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="autoglm-engine", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._stop or self._inbox or self._aborts or self.scheduler.has_work()):
                    self._cv.wait()
                if self._stop:
                    pending = list(self._requests.values())  # includes the inbox
                    self._inbox = []
                    break
                inbox, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, []
                now = time.perf_counter()
                expired = [
                    r
                    for r in self._requests.values()
                    if r.state.deadline is not None and now > r.state.deadline
                ]
            for req in inbox:
                self.scheduler.add(req)
            for rid in aborts:
                req = self._requests.get(rid)
                if req is not None:
                    self._finish(req, "abort")
            for req in expired:
                self._finish(req, "timeout")
            if self.scheduler.has_work():
                try:
                    if not self.step():
                        time.sleep(0.001)  # nothing could run (e.g. only timed-out work left): do not spin
                except Exception as e:  # fail the requests in flight, keep serving
                    log.exception("engine step failed")
                    for req in list(self.scheduler.running):
                        self._finish(req, "error", error=f"{type(e).__name__}: {e}")
        for req in pending:
            if req.status is not Status.FINISHED:
                self._finish(req, "abort")

    def step(self) -> bool:
        """One scheduling + forward + sampling step (called by the loop thread); False if nothing ran."""
        batch = self.scheduler.schedule()
        if not batch.requests:
            return False
        self.steps += 1
        now = time.perf_counter()
        seqs = []
        for i, req in enumerate(batch.requests):
            if req.state.scheduled is None:
                req.state.scheduled = now
            seqs.append(
                (req.token_ids, req.num_computed, batch.num_tokens[i], req.block_ids, batch.samples(i))
            )
        logits = self.runner.execute(seqs)
        sampling = [r for i, r in enumerate(batch.requests) if batch.samples(i)]
        rows = [(r.params, r.prompt_ids, r.output_ids, r.state.generator) for r in sampling]
        tokens, logprobs = self.sampler.sample(logits, rows) if rows else ([], [])
        for req, n in zip(batch.requests, batch.num_tokens, strict=True):
            req.num_computed += n
            self.kv.cache_blocks(req)
        now = time.perf_counter()
        for req, tok, lp in zip(sampling, tokens, logprobs, strict=True):
            self._on_token(req, tok, lp, now)
        return True

    def _on_token(self, req: Request, tok: int, logprob: float | None, now: float) -> None:
        st: _State = req.state
        if st.first_token is None:
            st.first_token = now
        req.append(tok)
        if logprob is not None:
            st.logprobs.append(logprob)
        stopped = tok in st.stop_ids
        text = "" if stopped or st.detok is None else st.detok.add(tok)
        st.text += text
        reason = "stop" if stopped else None
        stops = req.params.stop
        if stops and text:
            # search only where a stop string could newly appear
            start = max(0, len(st.text) - len(text) - max(map(len, stops)) + 1)
            hits = [i for i in (st.text.find(s, start) for s in stops) if i >= 0]
            if hits:
                st.text = st.text[: min(hits)]
                reason = "stop"
        if reason is None and len(req.output_ids) >= req.params.max_tokens:
            reason = "length"
        if reason is None and len(req.token_ids) >= self.max_model_len:
            reason = "length"
        if reason == "length" and st.detok is not None:
            st.text += st.detok.flush()  # the last event carries any bytes still pending
        # hold back a tail that might still grow into a stop string
        hold = 0 if reason or not stops else max(map(len, stops)) - 1
        safe = max(st.emitted, len(st.text) - hold)
        delta = st.text[st.emitted : safe]
        st.emitted = safe
        _deliver(st, TokenEvent(req.request_id, tok, delta, logprob))
        if reason:
            self._finish(req, reason)

    def _finish(self, req: Request, reason: str, error: str | None = None) -> None:
        if req.status is Status.FINISHED:
            return
        self.scheduler.finish(req)
        st: _State = req.state
        log.debug(
            "request %s %s: %d prompt tokens (%d from the prefix cache), %d generated; hit rate %.1f%%",
            req.request_id, reason, len(req.prompt_ids), req.prefix_hit_tokens or 0, len(req.output_ids),
            100 * self.kv.hit_rate,
        )  # fmt: skip
        self._requests.pop(req.request_id, None)
        if reason not in ("stop", "length") and st.detok is not None:
            st.text += st.detok.flush()
        now = time.perf_counter()
        first = st.first_token or now
        sched = st.scheduled or now
        n_out = len(req.output_ids)
        decode_s = now - first if st.first_token else 0.0
        _deliver(
            st,
            Completion(
                request_id=req.request_id,
                text=st.text,
                token_ids=list(req.output_ids),
                finish_reason=reason,
                usage=Usage(len(req.prompt_ids), n_out, req.prefix_hit_tokens or 0),
                timings=Timings(
                    queue_s=sched - st.submitted,
                    prefill_s=first - sched,
                    ttft_s=first - st.submitted,
                    decode_s=decode_s,
                    decode_tokens_per_s=(n_out - 1) / decode_s if n_out > 1 and decode_s > 0 else 0.0,
                    total_s=now - st.submitted,
                ),
                logprobs=st.logprobs if req.params.logprobs else None,
                error=error,
            ),
        )


def _deliver(st: _State, ev: TokenEvent | Completion) -> None:
    """Hand an event to the caller's sink; a failing sink must not take the engine loop down."""
    try:
        st.sink(ev)
    except Exception:
        log.exception("event sink of request %s failed", ev.request_id)


def _default_num_blocks(model: GlmModel, block_size: int, kv_cache_dtype: str, budget: int | None) -> int:
    """Pool size from a byte budget: by default 90% of free GPU memory after the weights, 1 GiB on the CPU."""
    per_block = kv_bytes_per_block(
        model.cfg, block_size, torch.tensor([], dtype=model.dtype).element_size(), kv_cache_dtype == "int8"
    )
    if budget is None:
        if model.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(model.device)
            budget = int(free * 0.9) - (1 << 30)  # keep ~1 GiB for activations and logits
        else:
            budget = 1 << 30
    n = budget // per_block
    if n < 1:
        raise ValueError(f"kv_cache_memory of {budget} bytes is less than one block ({per_block} bytes)")
    return int(n)
