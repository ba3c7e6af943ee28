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
from .memory import blocks_for_budget, bytes_per_block, profile_kv_budget
from .model import GlmModel
from .runner import ModelRunner, graphs_supported, next_pow2
from .sampling import SampledTokens, Sampler, SamplingParams, make_generator, score_rows, unpack_top
from .scheduler import PENDING, Batch, Request, Scheduler, Status
from .tokenizer import Chat, IncrementalDetokenizer, Message, Tokenizer
from .weights import load_model

log = logging.getLogger(__name__)

Prompt = str | list[int] | list[Message] | Chat
TopLogprobs = list[tuple[int, float]]  # (token id, log-probability), likeliest first
# a prompt token's log-probability given the tokens before it, and that position's likeliest tokens; the first
# prompt token has none (None)
PromptLogprob = tuple[float, TopLogprobs] | None
# prompt positions whose logits exist at once while scoring (the profiled peak has max_num_seqs)
SCORE_ROWS = 64


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
    top_logprobs: TopLogprobs | None = None  # when SamplingParams.top_logprobs asks
    # on a request's first event, when prompt_logprobs asks
    prompt_logprobs: list[PromptLogprob] | None = None


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
    top_logprobs: list[TopLogprobs] | None = None
    prompt_logprobs: list[PromptLogprob] | None = None  # one per prompt token
    error: str | None = None


@dataclass
class _State:
    """Engine-side data of a request (lives in Request.state)."""

    sink: Callable[[TokenEvent | Completion], None]
    detok: IncrementalDetokenizer
    generator: torch.Generator | None
    stop_ids: set[int]
    deadline: float | None
    penalized: bool = False  # repetition/presence/frequency penalties: its steps are not overlapped
    submitted: float = field(default_factory=time.perf_counter)
    scheduled: float | None = None
    first_token: float | None = None
    text: str = ""  # decoded output so far
    emitted: int = 0  # characters of text already sent
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[TopLogprobs] = field(default_factory=list)
    prompt_logprobs: list[PromptLogprob] | None = None  # [None] at submit when asked; grows as chunks resolve
    # prompt positions whose scoring is launched (each one's logits score the next token)
    prompt_scored: int = 0
    prompt_sent: bool = False  # the first event (which carries prompt_logprobs) went out
    # sampled, not yet emitted: (token id, logprob, top logprobs)
    pending: list[tuple[int, float | None, TopLogprobs | None]] = field(default_factory=list)
    done: str | None = None  # finish reason decided when the token was sampled (stop id, length)
    completed: bool = False  # the Completion was delivered
    feed_row: int = -1  # row of its newest PENDING token in the last launched step's sampled ids


@dataclass
class _Launched:
    """A step whose forward and sampling are enqueued on the device: its requests, the sampling ones and
    the index in token_ids of each one's PENDING token, and the sampled ids on their way to the host."""

    requests: list[Request]
    sampling: list[Request]
    slots: list[int]
    sampled: SampledTokens | None
    scores: list[tuple[Request, torch.Tensor]] = field(default_factory=list)  # prompt logprobs (_score)


class Engine:
    """GLM-4 inference engine with a paged, prefix-reusing KV cache and continuous batching.

    Thread-safe: `generate` (blocking) and `stream` (asyncio) may be called from many threads and
    event loops at once; a single background thread runs the model.

    Options: block_size (tokens per KV block, 16); num_blocks (pool size; default from kv_cache_memory
    bytes, itself defaulting on CUDA to gpu_memory_utilization (0.9) of the device's memory less what
    is in use after loading, a profiled activation peak and the CUDA graphs' pool; 1 GiB on the CPU);
    cuda_graphs (decode graphs for batch sizes up to max_num_seqs, and prefill graphs for one sequence's
    chunks of fewer than prefill_graph_tokens (512) tokens, padded to a power of two; default on for CUDA
    with the Triton kernels) and enforce_eager (True turns graphs off);
    kv_cache_dtype ("auto" = model dtype, or "int8"); max_num_seqs (running requests, 64);
    max_num_batched_tokens (tokens per step, 2048: the chunked-prefill budget); max_waiting (queued
    requests before submit raises EngineOverloaded, 256); max_model_len (prompt + output cap; default
    the config's max_position_embeddings, never more than the pool holds); enable_prefix_caching (True);
    request_timeout_s (default per-request timeout, None); batch_invariant (False; True: a prompt token's
    values do not depend on how its prompt was split into chunks or found in the prefix cache, so a
    cached prefix gives the same output as a cold prompt, at some prefill speed; 16-bit weights only).

    Log-probabilities (SamplingParams): `logprobs` gives each chosen token's, `top_logprobs` each step's
    likeliest tokens too, `prompt_logprobs` each prompt token's given the ones before it (a request that asks
    runs its prefill eagerly, keeping every position's hidden state, and skips the prefix cache: a cached
    position has no logits). Requests that ask for none run exactly as before.
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
        cuda_graphs: bool | None = None,
        enforce_eager: bool = False,
        gpu_memory_utilization: float = 0.9,
        prefill_graph_tokens: int = 512,
        batch_invariant: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        cfg = model.cfg
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if cuda_graphs and not graphs_supported(model.device):
            raise ValueError(
                "cuda_graphs needs a CUDA device and the Triton kernels (AUTOGLM_KERNELS != torch)"
            )
        graphs = (
            graphs_supported(model.device) if cuda_graphs is None else cuda_graphs
        ) and not enforce_eager
        # one-sequence prefill chunks of fewer tokens replay a graph (e.g. a question after a cached prefix)
        prefill_graph_tokens = (
            min(prefill_graph_tokens, next_pow2(max_num_batched_tokens + 1)) if graphs else 0
        )
        if num_blocks is None:
            if kv_cache_memory is None and model.device.type == "cuda":
                kv_cache_memory = profile_kv_budget(
                    model, block_size, kv_cache_dtype, max_num_batched_tokens, max_num_seqs,
                    gpu_memory_utilization, graphs, prefill_graph_tokens, batch_invariant,
                )  # fmt: skip
                if kv_cache_memory < bytes_per_block(model, block_size, kv_cache_dtype):
                    raise ValueError(
                        f"no GPU memory left for the KV cache ({kv_cache_memory / 2**30:.2f} GiB); raise "
                        "gpu_memory_utilization, lower max_num_batched_tokens or use int8 weights"
                    )
            num_blocks = blocks_for_budget(model, block_size, kv_cache_dtype, kv_cache_memory)
        self.max_model_len = min(max_model_len or cfg.max_position_embeddings, num_blocks * block_size)
        self.runner = ModelRunner(
            model, num_blocks, block_size, kv_cache_dtype, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, max_model_len=self.max_model_len,
            batch_invariant=batch_invariant,
        )  # fmt: skip
        self.kv = KVCacheManager(num_blocks, block_size, enable_prefix_caching)
        self.scheduler = Scheduler(self.kv, max_num_seqs, max_num_batched_tokens)
        self.sampler = Sampler()
        if graphs:
            # (imported here: triton must not load before a CPU test run sets TRITON_INTERPRET)
            from kernels.int8_matmul import IMMA_ROWS, gemm_ws_mode, imma_mode

            # INT8 weights: eager chunks longer than the prefill graphs choose their W8A16 path now, one chunk
            # per power-of-two row bucket the measured choices are kept by (use_imma up to IMMA_ROWS rows,
            # use_gemm_ws at any)
            top = min(max_num_batched_tokens, num_blocks * block_size)
            if gemm_ws_mode() != "auto":
                top = min(top, IMMA_ROWS) if imma_mode() == "auto" else 0
            if model.int8:
                size = max(next_pow2(prefill_graph_tokens + 1), 1024)
                while size // 2 < top:
                    self.runner.warm_chunk(min(size, top))
                    size *= 2
            self.runner.capture_graphs(max_num_seqs, prefill_graph_tokens)
        log.info(
            "KV cache: %d blocks of %d tokens = %d tokens (%.2f GiB, %s); max_model_len %d; CUDA graphs %s",
            num_blocks, block_size, num_blocks * block_size,
            num_blocks * bytes_per_block(model, block_size, kv_cache_dtype) / 2**30, kv_cache_dtype,
            self.max_model_len, "on" if graphs else "off",
        )  # fmt: skip
        self.max_waiting = max_waiting
        self.request_timeout_s = request_timeout_s
        self.eos_ids = set(cfg.eos_token_ids)
        self.steps = 0
        self._unemitted: list[Request] = []  # requests with sampled tokens not yet delivered
        self._inflight: list[Request] | None = None  # the requests of the steps being run
        self._launched: _Launched | None = None  # the step whose tokens are still on the device
        self.overlapped_steps = 0  # steps launched before the previous step's tokens were read
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
        """A string (encoded as is), token ids, or chat messages or a Chat (rendered with the chat template)."""
        if isinstance(prompt, str):
            self._need_tokenizer()
            ids = self.tokenizer.encode(prompt)
        elif isinstance(prompt, Chat) or (
            isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt)
        ):
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
            # unseeded sampling draws from the device's shared generator (see Sampler)
            generator=None
            if params.greedy or params.seed is None
            else make_generator(params.seed, self.model.device),
            stop_ids=stop_ids,
            deadline=time.perf_counter() + timeout_s if timeout_s else None,
            penalized=params.penalized,
            prompt_logprobs=None if params.prompt_logprobs is None else [None],
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
        if isinstance(prompts, str | Chat) or (prompts and not isinstance(prompts[0], str | list | Chat)):
            prompts = [prompts]  # one prompt: a string, token ids, messages or a Chat
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
            "graph_steps": self.runner.graph_replays,  # decode steps replayed from a CUDA graph
            "overlapped_steps": self.overlapped_steps,
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
                while not (
                    self._stop
                    or self._inbox
                    or self._aborts
                    or self._unemitted
                    or self._launched
                    or self.scheduler.has_work()
                ):
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
            self._inflight = None
            try:
                if not self.step():
                    time.sleep(0.001)  # nothing could run (e.g. only timed-out work left): do not spin
            except Exception as e:  # fail the steps' requests (all running ones if it failed earlier)
                log.exception("engine step failed")
                failed = self._inflight if self._inflight is not None else list(self.scheduler.running)
                self._launched = None
                error = f"{type(e).__name__}: {e}"
                if isinstance(e, torch.OutOfMemoryError):
                    error = f"out of GPU memory in this step; retry with a shorter prompt ({error})"
                for req in failed:
                    self._finish(req, "error", error=error)
        self._emit_pending()
        for req in pending:
            if req.status is not Status.FINISHED:
                self._finish(req, "abort")

    def step(self) -> bool:
        """One step (called by the loop thread): schedule and launch a forward and its sampling, then read
        the PREVIOUS step's token ids (the one device-to-host copy per step) and deliver their events while
        the device runs this one. False if nothing ran or was delivered.

        A decode row's input is the token its request sampled in the previous step: it is still on the
        device at launch (a PENDING placeholder on the host), so the runner reads it there (`feed_rows`).
        The host never holds the device up: while step N runs, step N+1 is prepared and queued behind it.
        Consequences:
        - a request whose step-N token ends it (stop id, stop string) has already been launched in step
          N+1; that row's result is dropped (its blocks were freed and may be reused: later launches are
          ordered after step N+1 on the stream). Length limits are known at launch and cost nothing.
        - penalties count the output tokens on the host, so while a request with penalties runs, the engine
          reads each step's tokens before scheduling the next (no overlap).
        """
        prev, self._launched = self._launched, None
        if prev is not None and any(r.state.penalized for r in self.scheduler.running):
            self._resolve(prev)
            prev = None
        batch = self.scheduler.schedule()
        if batch.requests:
            self._inflight = list(batch.requests) + (prev.requests if prev is not None else [])
            self._launched = self._launch(batch)
            if prev is not None:
                self.overlapped_steps += 1
        if prev is not None:
            self._resolve(prev)
        elif not batch.requests:
            return self._emit_pending()
        self._inflight = self._launched.requests if self._launched is not None else None
        return True

    def _launch(self, batch: Batch) -> _Launched:
        """Enqueue the batch's forward and sampling; advance num_computed and append PENDING tokens."""
        self.steps += 1
        now = time.perf_counter()
        seqs, feed_rows = [], []
        scoring = []  # (request, its first position to score, that position's row in the step, count)
        row = 0
        for i, req in enumerate(batch.requests):
            st: _State = req.state
            if st.scheduled is None:
                st.scheduled = now
            n = batch.num_tokens[i]
            seqs.append((req.token_ids, req.num_computed, n, req.block_ids, batch.samples(i)))
            pending = req.token_ids[req.num_computed] == PENDING
            feed_rows.append(st.feed_row if pending else -1)
            if st.prompt_logprobs is not None:  # positions before the last prompt token score the next one
                lo = max(req.num_computed, st.prompt_scored)
                hi = min(req.num_computed + n, len(req.prompt_ids) - 1)
                if lo < hi:
                    scoring.append((req, lo, row + lo - req.num_computed, hi - lo))
                    st.prompt_scored = hi
            row += n
        logits = self.runner.execute(seqs, feed_rows, keep_hidden=bool(scoring))
        scores = [(req, self._score(req, first, r0, count)) for req, first, r0, count in scoring]
        sampling = [r for i, r in enumerate(batch.requests) if batch.samples(i)]
        sampled = None
        if sampling:
            rows = [(r.params, r.prompt_ids, r.output_ids, r.state.generator) for r in sampling]
            sampled = self.sampler.sample_async(logits, rows, argmax=self.runner.last_argmax)
            self.runner.feed_tokens(sampled.tokens)
        for req, n in zip(batch.requests, batch.num_tokens, strict=True):
            req.num_computed += n
        slots = []
        for j, req in enumerate(sampling):
            slots.append(len(req.token_ids))
            req.token_ids.append(PENDING)
            req.num_unresolved += 1
            req.state.feed_row = j
            n_out = len(req.output_ids) + req.num_unresolved
            if n_out >= req.params.max_tokens or len(req.token_ids) >= self.max_model_len:
                req.all_launched = True
        return _Launched(list(batch.requests), sampling, slots, sampled, scores)

    @torch.inference_mode()
    def _score(self, req: Request, first: int, row: int, count: int) -> torch.Tensor:
        """Prompt logprobs of positions first..first+count-1 (the logits of position p score prompt token p+1)
        from this step's kept hidden states (their rows from `row`), SCORE_ROWS positions at a time:
        (count, 1 + 2k) float32 on the device (`score_rows`), read when the step resolves."""
        hidden = self.runner.last_hidden
        assert hidden is not None and row + count <= hidden.shape[0], f"{row=} {count=}"
        k = req.params.prompt_logprobs
        targets = torch.tensor(req.prompt_ids[first + 1 : first + 1 + count], device=hidden.device)
        out = []
        for a in range(0, count, SCORE_ROWS):
            b = min(a + SCORE_ROWS, count)
            out.append(score_rows(self.model.compute_logits(hidden[row + a : row + b]), targets[a:b], k))
        return torch.cat(out)

    def _resolve(self, step: _Launched) -> None:
        """Wait for a launched step's token ids, record them, publish its full blocks, deliver events."""
        tokens, logprobs = step.sampled.wait() if step.sampled is not None else ([], [])
        tops = step.sampled.top if step.sampled is not None else []
        for req, scores in step.scores:  # before the tokens: a request's first event carries them all
            if req.status is not Status.FINISHED:
                k = req.params.prompt_logprobs
                req.state.prompt_logprobs.extend((r[0], unpack_top(r, k)) for r in scores.tolist())
        now = time.perf_counter()
        for req, slot, tok, lp, top in zip(step.sampling, step.slots, tokens, logprobs, tops, strict=True):
            req.num_unresolved -= 1
            if req.status is Status.FINISHED:
                continue  # ended while this step ran (stop id or string, abort): its result is dropped
            req.token_ids[slot] = tok
            self._on_sampled(req, tok, lp, now, top)
        for req in step.requests:
            # every token before num_computed is known now; blocks still being written by a later step are
            # safe to publish: any reader runs after it
            if req.status is Status.RUNNING:
                self.kv.cache_blocks(req)
        self._emit_pending()

    def _on_sampled(
        self, req: Request, tok: int, logprob: float | None, now: float, top: TopLogprobs | None = None
    ) -> None:
        """Record a sampled token; retire the request at once if a stop id or a length limit ends it (its
        events follow in the next _emit_pending)."""
        st: _State = req.state
        if st.first_token is None:
            st.first_token = now
        req.output_ids.append(tok)
        st.pending.append((tok, logprob, top))
        self._unemitted.append(req)
        if tok in st.stop_ids:
            st.done = "stop"
        elif (
            len(req.output_ids) >= req.params.max_tokens
            or len(req.prompt_ids) + len(req.output_ids) >= self.max_model_len
        ):
            st.done = "length"
        if st.done:
            self.scheduler.finish(req)

    def _emit_pending(self) -> bool:
        """Deliver the tokens sampled since the last call (and the Completions they end)."""
        reqs, self._unemitted = self._unemitted, []
        for req in reqs:
            st: _State = req.state
            if st.completed:
                continue
            reason = self._emit_tokens(req, st.done)
            if reason:
                self._finish(req, reason)
        return bool(reqs)

    def _emit_tokens(self, req: Request, final: str | None) -> str | None:
        """Detokenize the request's pending tokens into TokenEvents, the last one closing the text when the
        request ends with `final`; returns the finish reason (a stop string found here makes it "stop")."""
        st: _State = req.state
        pending, st.pending = st.pending, []
        reason = None
        for i, (tok, logprob, top) in enumerate(pending):
            if logprob is not None:
                st.logprobs.append(logprob)
            if top is not None:
                st.top_logprobs.append(top)
            last = i == len(pending) - 1
            stopped = tok in st.stop_ids
            text = "" if stopped or st.detok is None else st.detok.add(tok)
            st.text += text
            stops = req.params.stop
            if stops and text:
                # search only where a stop string could newly appear
                start = max(0, len(st.text) - len(text) - max(map(len, stops)) + 1)
                hits = [j for j in (st.text.find(s, start) for s in stops) if j >= 0]
                if hits:
                    st.text = st.text[: min(hits)]
                    reason = "stop"
            if reason is None and last:
                reason = final
            if reason == "length" and st.detok is not None:
                st.text += st.detok.flush()  # the last event carries any bytes still pending
            # hold back a tail that might still grow into a stop string
            hold = 0 if reason or not stops else max(map(len, stops)) - 1
            safe = max(st.emitted, len(st.text) - hold)
            delta = st.text[st.emitted : safe]
            st.emitted = safe
            prompt = None
            if st.prompt_logprobs is not None and not st.prompt_sent:
                prompt, st.prompt_sent = st.prompt_logprobs, True
            _deliver(st, TokenEvent(req.request_id, tok, delta, logprob, top, prompt))
            if reason:
                if len(pending) > i + 1:  # tokens after a stop string are not part of the output
                    del req.output_ids[len(req.output_ids) - (len(pending) - i - 1) :]
                break
        return reason

    def _finish(self, req: Request, reason: str, error: str | None = None) -> None:
        """Retire a request (if still scheduled), deliver its pending tokens, then its Completion."""
        st: _State = req.state
        if st.completed:
            return
        if st.pending:  # e.g. aborted right after sampling: its last tokens go out first
            reason = self._emit_tokens(req, st.done) or reason
        st.completed = True
        if req.status is not Status.FINISHED:
            self.scheduler.finish(req)
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
                top_logprobs=st.top_logprobs if req.params.top_logprobs else None,
                prompt_logprobs=st.prompt_logprobs,
                error=error,
            ),
        )


def _deliver(st: _State, ev: TokenEvent | Completion) -> None:
    """Hand an event to the caller's sink; a failing sink must not take the engine loop down."""
    try:
        st.sink(ev)
    except Exception:
        log.exception("event sink of request %s failed", ev.request_id)
