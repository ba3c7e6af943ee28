"""Answering: retrieval under a deadline, numbered sources, prompt assembly, then either the engine's
streamed answer or (no model loaded) an extractive one; [n] markers map back to sources.

Used by /api/ask and by /v1/chat/completions with `rag:<collection>` models. Knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel

from app import metrics
from app.engine_service import service
from app.settings import settings

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are the company's knowledge assistant. Answer the question using only the numbered sources "
    "below. Cite every statement with the number of its source in brackets, like [1] or [2][3]. If the "
    "sources do not contain the answer, say that you do not know."
)
CHAT_SYSTEM_PROMPT = "You are a helpful assistant."
NO_GENERATOR = (
    "No generator is loaded, so these are the sentences from the sources that best answer the question:"
)
NOTHING_FOUND = "No generator is loaded, and no source passage matches the question."
STAGES = ("embed", "dense", "bm25", "rerank")
_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[0-9a-z]+|[\u3400-\u9fff]", re.IGNORECASE)
_STOP = set("a an and are as at be by can do does for from how i in is it of on or the to was what when where which who why with you".split())  # fmt: skip


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
            heading_path=list(h.heading_path),
            char_start=h.char_start,
            char_end=h.char_end,
            text=h.text,
        )
        for i, h in enumerate(hits, 1)
    ]


def standalone_query(question: str, history: list[dict[str, str]]) -> str:
    """A follow-up ("and in 2024?") is searched together with the previous question."""
    previous = [m["content"] for m in history if m["role"] == "user"]
    if not previous:
        return question
    try:
        from retrieval.context import rewrite_followup
    except ImportError:
        return f"{previous[-1]}\n{question}"
    return rewrite_followup(question, previous)


# --- prompts and citations -----------------------------------------------------------------------
def format_source(s: Source) -> str:
    where = " > ".join(s.heading_path)
    head = f"[{s.n}] {s.title}" + (f" — {where}" if where else "") + (f" (page {s.page})" if s.page else "")
    return f"{head}\n{s.text.strip()}"


def build_messages(question: str, history: list[dict[str, str]], sources: list[Source], budget: int | None):
    """Chat messages: the system prompt and the sources first (a stable prefix), then the turns.
    Sources that do not fit `budget` tokens (prompt side) are dropped from the end; returns (messages, kept)."""
    kept = list(sources)
    while True:
        context = "\n\n".join(format_source(s) for s in kept)
        system = SYSTEM_PROMPT + ("\n\nSources:\n\n" + context if kept else "\n\nSources: none were found.")
        messages = [
            {"role": "system", "content": system},
            *history[-6:],
            {"role": "user", "content": question},
        ]
        if budget is None or not kept or _count(messages) <= budget:
            return messages, kept
        kept.pop()


def _count(messages) -> int:
    return len(service.engine.encode_prompt(messages))


def parse_citations(text: str, n_sources: int) -> list[int]:
    """[n], [n, m] markers that name an existing source, in order of first use."""
    seen: list[int] = []
    for m in _CITE.finditer(text):
        for part in m.group(1).split(","):
            n = int(part)
            if 1 <= n <= n_sources and n not in seen:
                seen.append(n)
    return seen


# --- extractive answers --------------------------------------------------------------------------
def _terms(text: str) -> list[str]:
    return [w for w in (t.lower() for t in _WORD.findall(text)) if w not in _STOP]


def extractive_answer(question: str, sources: list[Source], max_sentences: int = 3) -> tuple[str, list[int]]:
    """The sentences that share the most (rarer) words with the question, each quoted with its [n];
    sets each quoted source's `highlight` (offsets in its text). Returns (answer, cited)."""
    from ingest.chunking import split_sentences

    q = set(_terms(question))
    sentences = [(s, a, b) for s in sources for a, b in split_sentences(s.text) if s.text[a:b].strip()]
    df: dict[str, int] = {}
    for s, a, b in sentences:
        for t in set(_terms(s.text[a:b])):
            df[t] = df.get(t, 0) + 1
    scored = []
    for rank, (s, a, b) in enumerate(sentences):
        terms = set(_terms(s.text[a:b]))
        overlap = sum(math.log(1 + len(sentences) / df[t]) for t in q & terms)
        if overlap > 0:
            scored.append((overlap / math.sqrt(len(terms) + 1), -rank, s, a, b))
    scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
    picked = sorted(scored[:max_sentences], key=lambda x: -x[1])  # back in source order
    if not picked:
        return NOTHING_FOUND, []
    lines, cited = [NO_GENERATOR, ""], []
    for _, _, s, a, b in picked:
        lines.append(f"> {s.text[a:b].strip()} [{s.n}]")
        s.highlight = [*(s.highlight or []), [a, b]]
        if s.n not in cited:
            cited.append(s.n)
    return "\n".join(lines), sorted(cited)


# --- generation ----------------------------------------------------------------------------------
async def generate(
    messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0
) -> AsyncIterator[str | Result]:
    """Stream text deltas from the engine, then one Result (citations not yet parsed)."""
    from inference import Completion, SamplingParams

    engine = service.engine
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p)
    async for ev in engine.stream(messages, params):
        if isinstance(ev, Completion):
            if ev.finish_reason == "error":
                raise RuntimeError(ev.error or "generation failed")
            t = ev.timings
            metrics.TTFT_SECONDS.observe(t.ttft_s)
            if ev.usage.completion_tokens > 1:
                metrics.TOKENS_PER_SECOND.observe(t.decode_tokens_per_s)
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
            )
        elif ev.text:
            yield ev.text


async def answer(
    question: str, history: list[dict[str, str]], sources: list[Source]
) -> AsyncIterator[str | Result]:
    """Text deltas, then the Result with citations marked on `sources` (engine, or extractive)."""
    if service.engine is None:
        text, cited = extractive_answer(question, sources)
        for s in sources:
            s.cited = s.n in cited
        for piece in text.splitlines(keepends=True):
            yield piece
        metrics.ANSWERS.labels("extractive", "ok").inc()
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "prefix_hit_tokens": 0}
        yield Result(text, cited, True, None, zero, None, None)
        return
    budget = service.engine.max_model_len - settings.answer_max_tokens
    messages, kept = build_messages(question, history, sources, budget)
    del sources[len(kept) :]  # what did not fit was not shown to the model: not a source
    async for piece in generate(messages, settings.answer_max_tokens):
        if isinstance(piece, Result):
            piece.cited = parse_citations(piece.answer, len(sources))
            for s in sources:
                s.cited = s.n in piece.cited
            metrics.ANSWERS.labels("generated", piece.finish_reason).inc()
        yield piece
