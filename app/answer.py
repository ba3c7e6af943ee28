"""Answering: retrieval under a deadline, numbered sources, prompt assembly, then either the engine's
streamed answer or (no model loaded) an extractive one; [n] markers map back to sources.

Used by /api/ask and by /v1/chat/completions with `rag:<collection>` models. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel

from app import metrics
from app.engine_service import service
from app.settings import settings
from app.testhooks import pause_seconds

log = logging.getLogger(__name__)

NO_GENERATOR = (
    "No generator is loaded, so these are the sentences from the sources that best answer the question:"
)
NOTHING_FOUND = "No generator is loaded, and no source passage matches the question."
# what /api/ask shows and stores when a reasoning checkpoint stopped before it finished thinking
REASONING_CUT = (
    "No answer: the model used its whole token budget reasoning and stopped before it wrote an answer. "
    "Try a narrower question; an administrator can raise AUTOGLM_REASONING_MAX_TOKENS."
)
REASONING_STOPPED = (
    "No answer: the model stopped while still reasoning, before it wrote an answer. Please ask again."
)
STAGES = ("embed", "dense", "bm25", "rerank")


class Source(BaseModel):
    """A numbered passage given to the model (or quoted extractively)."""

    n: int
    chunk_id: int
    document_id: int
    title: str
    page: int | None
    heading_path: list[str]
    char_start: int
    char_end: int
    text: str
    cited: bool = False
    highlight: list[list[int]] | None = None
    # what page counts: "page", "slide"; None for one stored before the kind was kept (a page)
    page_kind: str | None = None

    def public(self) -> dict:
        """The API shape: `highlight` only when set (extractive answers)."""
        return self.model_dump(exclude={"highlight"} if self.highlight is None else set())


@dataclass
class Retrieved:
    sources: list[Source]
    degraded: bool = False
    timed_out: list[str] = field(default_factory=list)
    retrieval_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    """The end of an answer (everything the `done` event reports)."""

    answer: str
    cited: list[int]
    extractive: bool
    generator: str | None
    usage: dict[str, int]
    ttft_ms: float | None
    tokens_per_s: float | None
    finish_reason: str = "stop"
    # (token id, log-probability, likeliest (token id, log-probability) pairs) of every output token, when the
    # caller asked for logprobs (the pairs when it asked for top_logprobs too, else empty)
    token_logprobs: list[TokenLogprob] | None = None
    # each prompt token's (log-probability, likeliest pairs) given the ones before it (the first: None), when
    # the caller asked for prompt_logprobs
    prompt_logprobs: list[tuple[float, list[tuple[int, float]]] | None] | None = None
    # a reasoning checkpoint's thinking (the text between <think> and </think>, not in `answer`); None when the
    # output had none. `reasoning_done` False: the output ended inside it, so `answer` is empty
    reasoning: str | None = None
    reasoning_done: bool = True
    # the calls the model made when a /v1 request offered it tools (OpenAI's shape; app.tool_calls); None: none
    tool_calls: list[dict] | None = None


TokenLogprob = tuple[int, float, list[tuple[int, float]]]  # token id, log-probability, likeliest alternatives


class Delta(str):
    """A piece of the streamed text; ``tokens``: (token id, log-probability, alternatives) of the tokens
    sampled since the previous piece, when logprobs were asked for (a token can print nothing until its UTF-8
    character or a possible stop string completes); ``prompt_logprobs``: on the first piece, when asked for."""

    tokens: tuple[TokenLogprob, ...] = ()
    prompt_logprobs: list | None = None
    n_tokens: int = 0  # tokens sampled since the previous piece (from the engine; 0 for an extractive answer)


class Thought(Delta):
    """A piece of a reasoning checkpoint's thinking (not of its answer)."""


# --- retrieval -----------------------------------------------------------------------------------
async def retrieve(query: str, collection_ids: list[int], k: int | None = None) -> Retrieved:
    """Top passages of the given (already ACL-checked) collections: hybrid search within the deadline."""
    from app.retrieve import hybrid_hits

    k = k or settings.ask_top_k
    if not collection_ids:
        return Retrieved([], retrieval_ms={s: 0.0 for s in (*STAGES, "total")})
    hits, res = await hybrid_hits(query, collection_ids, k)
    ms = {s: float(res.timings_ms.get(s, 0.0)) for s in (*STAGES, "total")}
    for stage in res.timed_out:
        metrics.RETRIEVAL_TIMEOUTS.labels(stage).inc()
    _observe(ms)
    return Retrieved(
        number_sources(hits), degraded=bool(res.degraded), timed_out=list(res.timed_out), retrieval_ms=ms
    )


def _observe(ms: dict[str, float]) -> None:
    for stage, v in ms.items():
        if v:
            metrics.RETRIEVAL_STAGE_SECONDS.labels(stage).observe(v / 1000)


def number_sources(hits) -> list[Source]:
    """Hits (app.search.SearchHit or alike) -> Source [1]..[n] in rank order."""
    return [
        Source(
            n=i,
            chunk_id=h.chunk_id,
            document_id=h.document_id,
            title=h.document_title,
            page=h.page,
            page_kind=getattr(h, "page_kind", None),
            heading_path=list(h.heading_path),
            char_start=h.char_start,
            char_end=h.char_end,
            text=h.text,
        )
        for i, h in enumerate(hits, 1)
    ]


def standalone_query(question: str, history: list[dict[str, str]]) -> str:
    """A follow-up ("and in 2024?") searched with the salient terms of the earlier questions."""
    from retrieval.context import standalone_query as rewrite

    return rewrite(history, question)


# --- prompts and citations -----------------------------------------------------------------------
HISTORY_TURNS = 6  # earlier messages kept in the prompt
TEMPLATE_SLACK = 16  # chat-template tokens around the messages


def default_max_tokens() -> int:
    """The output limit of a chat answer whose request names none: AUTOGLM_ANSWER_MAX_TOKENS, and for a
    reasoning checkpoint AUTOGLM_REASONING_MAX_TOKENS more for its thinking, which comes first; the extra room
    stops at half the context window, so that the sources still fit."""
    budget = settings.answer_max_tokens
    if service.engine is None or service.reasoning is None or not settings.reasoning_max_tokens:
        return budget
    return max(budget, min(budget + settings.reasoning_max_tokens, service.engine.max_model_len // 2))


def without_reasoning(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Chat messages whose assistant turns lose their reasoning, as the GLM-Z1 template drops it: an earlier
    answer goes back into the prompt as answer only. Unchanged for a checkpoint that does not reason."""
    fmt = service.reasoning
    if fmt is None:
        return messages
    return [
        {**m, "content": fmt.answer_of(m["content"])} if m["role"] == "assistant" else m for m in messages
    ]


def _passage(s: Source):
    from retrieval.context import Passage

    return Passage(
        s.chunk_id,
        s.document_id,
        s.title,
        s.text,
        list(s.heading_path),
        s.page,
        s.char_start,
        s.char_end,
        s.page_kind,
    )


def prepare(
    question: str,
    history: list[dict[str, str]],
    sources: list[Source],
    max_tokens: int | None = None,
    instructions: str = "",
) -> tuple[list[Source], list[dict[str, str]] | None]:
    """(sources numbered as the answer will cite them, chat messages for the engine or None = extractive).

    With the engine, retrieval.context packs the passages into the model's context less the answer
    budget and the kept history, system prompt and sources first in a stable order, so requests share
    prefixes. ``instructions`` (a /v1 client's system messages: "Answer in German.") follow the system
    prompt, before the sources. Raises ValueError when the question alone does not fit.
    """
    if service.engine is None:
        return sources, None
    from retrieval.context import DEFAULT_SYSTEM_PROMPT, assemble_context

    tok = service.engine.tokenizer

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False))

    kept = without_reasoning(history[-HISTORY_TURNS:])
    room = service.engine.max_model_len - (max_tokens or default_max_tokens()) - TEMPLATE_SLACK
    room -= sum(count(m["content"]) + 2 for m in kept)
    system = (
        f"{DEFAULT_SYSTEM_PROMPT}\n\n{instructions.strip()}"
        if instructions.strip()
        else DEFAULT_SYSTEM_PROMPT
    )
    ctx = assemble_context([_passage(s) for s in sources], question, count, room, system)
    by_chunk = {s.chunk_id: s for s in sources}
    numbered = [by_chunk[c.passage.chunk_id].model_copy(update={"n": c.n}) for c in ctx.sources]
    return numbered, ctx.messages(question, kept)


def parse_citations(text: str, n_sources: int) -> list[int]:
    """Source numbers the text cites ([n], [n][m], [n, m], [n-m], 【n】, [^n], [来源n], ...: see
    retrieval.context.citations) that exist, in order of first use."""
    from retrieval.context import cited_numbers

    return cited_numbers(text, n_sources)


# --- extractive answers --------------------------------------------------------------------------
def extractive_answer(
    question: str, sources: list[Source], max_sentences: int = 3, query: str = ""
) -> tuple[str, list[int]]:
    """The best-supported sentences (word coverage + embedding similarity), each quoted with its [n];
    sets each quoted source's `highlight` (offsets in its text). Blocking (embeds). Returns (answer, cited).
    The question's terms are weighed by their IDF in the sources' collections (``app.retrieve.term_idf``);
    ``query``: what the sources were searched with (``standalone_query``), whose words a follow-up leans on."""
    from app.retrieve import term_idf
    from app.search import _embedder
    from retrieval.context import Source as CtxSource
    from retrieval.extractive import extractive_answer as quote

    ctx_sources = [CtxSource(s.n, _passage(s)) for s in sources]
    emb = _embedder()
    trust = emb.trust(question)
    docs = {s.document_id for s in sources}
    got = quote(
        question,
        ctx_sources,
        embed=emb.embed_question_and,  # the question as a query, the sentences as documents
        max_sentences=max_sentences,
        embed_trust=trust,
        idf=lambda terms: term_idf(terms, docs),
        support=query,
    )
    if not got.quotes:
        return NOTHING_FOUND, []
    by_n = {s.n: s for s in sources}
    for q in got.quotes:
        src = by_n[q.n]
        src.highlight = [*(src.highlight or []), [q.start, q.end]]
    return f"{NO_GENERATOR}\n\n{got.text}", sorted({q.n for q in got.quotes})


def cut_extractive(
    text: str, max_tokens: int | None = None, stop: list[str] | None = None
) -> tuple[str, int, str]:
    """(text, tokens, finish_reason): `text` up to its first `stop` string (not included) and at most
    `max_tokens` tokens ("length" when cut for it), and its token count. With no model there is no GLM
    tokenizer: tokens are the embedding model's (WordPiece for all-MiniLM-L6-v2, no [CLS]/[SEP]), the count
    usage reports, so the cut and usage agree. Blocking (loads the embedder once)."""
    from app.search import _embedder

    tok = _embedder().tokenizer

    def ends(t: str) -> list[int]:
        got = tok(t, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [end for _, end in got["offset_mapping"]]

    at = min((i for s in stop or () if (i := text.find(s)) >= 0), default=-1)
    if at >= 0:
        text = text[:at]
    spans = ends(text)
    if max_tokens is None or len(spans) <= max_tokens:
        return text, len(spans), "stop"
    # NOTE: a word cut between its pieces may split differently on its own ("unaff" is not "una ##ff"):
    # step back until the kept text, counted afresh, fits
    k = max_tokens
    while True:
        text = text[: spans[k - 1]] if k else ""
        n = len(ends(text))
        if n <= max_tokens:
            return text, n, "length"
        k -= 1


# --- generation ----------------------------------------------------------------------------------
async def generate(
    messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0, **options
) -> AsyncIterator[str | Result]:
    """Stream text deltas from the engine, then one Result (citations not yet parsed). ``options``: more
    ``inference.SamplingParams`` fields (stop, seed, penalties, top_k, logprobs, top_logprobs,
    prompt_logprobs); a bad value raises ValueError before anything is generated. max_tokens 0 scores the
    prompt only: one token is generated and dropped (no text, no output tokens, finish reason "length")."""
    from inference import Completion, SamplingParams

    engine = service.engine
    score_only = max_tokens == 0
    params = SamplingParams(max_tokens=max(max_tokens, 1), temperature=temperature, top_p=top_p, **options)
    unsent: list[TokenLogprob] = []
    pending = 0  # tokens since the last piece
    prompt_lps = None
    async for ev in engine.stream(messages, params):
        if isinstance(ev, Completion):
            if ev.finish_reason == "error":
                raise RuntimeError(ev.error or "generation failed")
            t = ev.timings
            metrics.TTFT_SECONDS.observe(t.ttft_s)
            if ev.usage.completion_tokens > 1:
                metrics.TOKENS_PER_SECOND.observe(t.decode_tokens_per_s)
            if score_only:
                ev.text, ev.token_ids, ev.logprobs, ev.top_logprobs = "", [], [], []
                ev.usage.completion_tokens, ev.finish_reason = 0, "length"
            tops = ev.top_logprobs or [[]] * len(ev.token_ids)
            yield Result(
                answer=ev.text,
                cited=[],
                extractive=False,
                generator=service.name,
                usage={
                    "prompt_tokens": ev.usage.prompt_tokens,
                    "completion_tokens": ev.usage.completion_tokens,
                    "prefix_hit_tokens": ev.usage.prefix_hit_tokens,
                },
                ttft_ms=round(t.ttft_s * 1000, 3),
                tokens_per_s=round(t.decode_tokens_per_s, 3) if ev.usage.completion_tokens > 1 else None,
                finish_reason=ev.finish_reason,
                token_logprobs=list(zip(ev.token_ids, ev.logprobs, tops, strict=False))
                if params.logprobs
                else None,
                prompt_logprobs=ev.prompt_logprobs,
            )
        elif not score_only:
            if ev.prompt_logprobs is not None:
                prompt_lps = ev.prompt_logprobs
            if params.logprobs and ev.logprob is not None:
                unsent.append((ev.token_id, ev.logprob, ev.top_logprobs or []))
            pending += 1
            if ev.text:
                piece = Delta(ev.text)
                piece.tokens, unsent = tuple(unsent), []
                piece.prompt_logprobs, prompt_lps = prompt_lps, None
                piece.n_tokens, pending = pending, 0
                yield piece


async def split_reasoning(pieces: AsyncIterator[str | Result]) -> AsyncIterator[str | Result]:
    """`pieces` (from `generate`) with a reasoning checkpoint's thinking told from its answer: Thought pieces,
    then answer Deltas, then the Result with `answer` the text after the reasoning, `reasoning` the
    reasoning and `usage["reasoning_tokens"]` the tokens up to the one that closed it. Pieces pass unchanged
    for a checkpoint that does not reason. A token's logprobs go with the next piece sent after it."""
    from inference import ReasoningSplitter

    if service.reasoning is None:
        async for piece in pieces:
            yield piece
        return
    split = ReasoningSplitter(service.reasoning)
    parts: dict[type, list[str]] = {Thought: [], Delta: []}
    unsent: list[TokenLogprob] = []
    prompt_lps = None
    thinking = 0  # tokens of the reasoning, its markers included

    def out(kind: type, text: str) -> Delta:
        nonlocal unsent, prompt_lps
        piece = kind(text)
        piece.tokens, unsent = tuple(unsent), []
        piece.prompt_logprobs, prompt_lps = prompt_lps, None
        parts[kind].append(text)
        return piece

    try:
        async for piece in pieces:
            if isinstance(piece, Result):
                for kind, text in zip((Thought, Delta), split.flush(), strict=True):
                    if text:
                        yield out(kind, text)
                piece.answer = "".join(parts[Delta])
                piece.reasoning = "".join(parts[Thought]) if split.reasoned else None
                piece.reasoning_done = split.finished
                if split.reasoned:
                    piece.usage["reasoning_tokens"] = thinking
                yield piece
                return
            unsent.extend(getattr(piece, "tokens", ()))
            prompt_lps = getattr(piece, "prompt_logprobs", None) or prompt_lps
            before = split.state
            got = split.feed(piece)
            if before == "reasoning" or (before == "start" and split.reasoned):
                thinking += getattr(piece, "n_tokens", 0)
            for kind, text in zip((Thought, Delta), got, strict=True):
                if text:
                    yield out(kind, text)
    finally:  # closed early (the client went away): the engine stops too
        await pieces.aclose()


async def answer(
    question: str,
    messages: list[dict[str, str]] | None,
    sources: list[Source],
    query: str = "",
    **sampling,
) -> AsyncIterator[str | Result]:
    """Text deltas, then the Result with citations marked on `sources` (a reasoning checkpoint's Thought
    pieces come first; its citations are the answer's alone): the engine's answer to `messages` (from prepare), or an extractive one when messages is None (cut at `sampling`'s `stop` and
    `max_tokens`, as the engine would cut its answer; see `cut_extractive`), which leans on the words of
    `query`, what the sources were searched with, too."""
    if messages is None:

        def quote() -> tuple[str, list[int], int, str]:
            text, cited = extractive_answer(question, sources, query=query)
            sent, tokens, finish = cut_extractive(text, sampling.get("max_tokens"), sampling.get("stop"))
            if sent != text:  # a source counts as cited, and highlighted, only if its [n] was sent
                shown = set(parse_citations(sent, len(sources)))
                cited = [n for n in cited if n in shown]
            return sent, cited, tokens, finish

        text, cited, tokens, finish = await asyncio.to_thread(quote)
        for s in sources:
            s.cited = s.n in cited
            if not s.cited:
                s.highlight = None
        for i, piece in enumerate(text.splitlines(keepends=True)):
            if i and (pause := pause_seconds("answer")):  # test hook: a stream caught mid-way
                await asyncio.sleep(pause)
            yield piece
        metrics.ANSWERS.labels("extractive", "ok").inc()
        # no prompt was read: nothing to count for it
        usage = {"prompt_tokens": 0, "completion_tokens": tokens, "prefix_hit_tokens": 0}
        yield Result(text, cited, True, None, usage, None, None, finish_reason=finish)
        return
    sampling.setdefault("max_tokens", default_max_tokens())
    async for piece in split_reasoning(generate(messages, **sampling)):
        if isinstance(piece, Result):
            piece.cited = parse_citations(piece.answer, len(sources))
            for s in sources:
                s.cited = s.n in piece.cited
            metrics.ANSWERS.labels("generated", piece.finish_reason).inc()
        yield piece
