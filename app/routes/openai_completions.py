"""POST /v1/completions: OpenAI's legacy text completions, which LangChain's `OpenAI` and LlamaIndex's
`OpenAILike` (without is_chat_model=True) call.

The generator's model continues the raw prompt (no chat template: that is what a text completion is); a
`rag:<collection>` model reads the prompt as a question and answers it from the collection with its sources,
as /v1/chat/completions does. The generator's model also takes prompts already tokenized (a list of token ids,
or a list of such lists), as evaluation clients send them. `logprobs` (0-5) gives OpenAI's legacy logprobs
object per choice; with `echo` the prompt's tokens come first, each scored given the ones before it, and
`max_tokens` 0 scores the prompt alone (lm-eval's `local-completions` loglikelihood); a `rag:` model gives its
answer's only. Several prompts (LangChain sends its batch in one request) are generated at once and answered a
choice each, streamed one after another. Auth, the questions-per-minute limit, back-pressure, errors and access
control are the chat route's (openai_compat.py; the shared pieces are app.openai_*).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from app import answer as ans
from app.deps import CurrentUser
from app.engine_service import service
from app.models import User
from app.openai_errors import OpenAIError
from app.openai_generate import RAG_PREFIX, Pieces, plain_pieces, rag_collection, rag_pieces
from app.openai_responses import finish_reason, provenance, result, sse, start, token_text, usage
from app.openai_schemas import SamplingRequest
from app.security import count_question

router = APIRouter(prefix="/v1", tags=["openai"])


MAX_PROMPTS = 20  # LangChain's OpenAI sends its prompts 20 to a request (batch_size)


class CompletionRequest(SamplingRequest):
    """OpenAI's text completion request: one prompt or a few, each answered as its own choice; `suffix` and
    `best_of` above 1 are refused by name (`sampling`); any other field (`user`, a field of another server) is
    accepted and has no effect."""

    # text, or token ids as evaluation clients send them (one prompt's ids, or a list of prompts' ids)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)  # 0: with echo, the prompt is scored only
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)

    def prompts(self) -> list[str | list[int]]:
        """The prompts: a string or a list of 1 to MAX_PROMPTS strings; token ids, or a list of 1 to MAX_PROMPTS
        lists of them."""
        one = isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int))
        prompts = [self.prompt] if one else self.prompt
        if not 1 <= len(prompts) <= MAX_PROMPTS:
            raise OpenAIError(400, f"prompt: a string or a list of 1 to {MAX_PROMPTS} strings (got {len(prompts)})."
                              , "invalid_request", param="prompt")  # fmt: skip
        return prompts

    def sampling(self) -> dict[str, Any]:
        """`options` and logprobs (with echo the prompt's too); OpenAIError for what this server cannot
        honour."""
        if self.suffix:
            raise OpenAIError(400, "suffix is not supported: this server continues the prompt; it does not fill "
                              "in text before a suffix.", "unsupported_parameter", param="suffix")  # fmt: skip
        if self.best_of is not None and self.best_of > 1:
            raise OpenAIError(400, f"best_of={self.best_of} is not supported: this server generates one "
                              "completion per prompt.", "unsupported_parameter", param="best_of")  # fmt: skip
        lps = self.logprobs
        return {**self.options(), "logprobs": lps is not None, "top_logprobs": lps or 0,
                "prompt_logprobs": lps if self.echo else None}  # fmt: skip


async def _answer(
    body: CompletionRequest, user: User, prompt: str | list[int], options: dict[str, Any]
) -> Pieces:
    """One prompt's pieces, started (errors before its first token are HTTP errors), and its sources."""
    if body.model.startswith(RAG_PREFIX):
        col = await rag_collection(body.model, user)
        if not isinstance(prompt, str):
            raise OpenAIError(400, "prompt: a rag: model reads the prompt as a question; send it as text, not "
                              "token ids.", "invalid_request", param="prompt")  # fmt: skip
        if not prompt.strip():
            raise OpenAIError(
                400, "prompt: the question must not be empty.", "invalid_request", param="prompt"
            )
        if body.max_tokens == 0:
            raise OpenAIError(400, "max_tokens: a rag: model answers the question; it needs at least 1.",
                              "invalid_request", param="max_tokens")  # fmt: skip
        if body.logprobs is not None and body.echo:  # the model read the question inside the sources' prompt
            raise OpenAIError(400, "logprobs with echo is not supported for a rag: model: the model reads the "
                              "question inside a prompt of its sources, not the text sent; without echo, logprobs "
                              "are the answer's.", "unsupported_parameter", param="echo")  # fmt: skip
        if body.logprobs is not None and service.engine is None:
            raise OpenAIError(400, "logprobs is not supported without a generator: the answer is quoted from "
                              "the sources, not sampled.", "unsupported_parameter", param="logprobs")  # fmt: skip
        pieces, sources = await rag_pieces(col, body, prompt, options, body.max_tokens)
    else:
        pieces, sources = plain_pieces(body, prompt, options, body.max_tokens)
    return await start(pieces), sources


async def _answers(body: CompletionRequest, user: User, prompts: list[str | list[int]]) -> list[Pieces]:
    """Every prompt's `_answer`, generated at once (the engine batches them); if one is refused, the others
    are stopped and its error is the request's."""
    options = body.sampling()
    got = await asyncio.gather(*(_answer(body, user, p, options) for p in prompts), return_exceptions=True)
    if failed := [e for e in got if isinstance(e, BaseException)]:
        for one in got:
            if not isinstance(one, BaseException):
                await one[0].aclose()
        raise failed[0]
    return got


def _text(prompt: str | list[int]) -> str:
    """A prompt as text (token ids decoded), as `echo` returns it."""
    return prompt if isinstance(prompt, str) else service.engine.tokenizer.decode(prompt)


class _Logprobs:
    """OpenAI's legacy `logprobs` of a choice's tokens, one run of them at a time: `tokens` (each token's text
    alone), `token_logprobs`, `top_logprobs` ({text: logprob} of the token and its alternatives; null where the
    logprob is) and `text_offset`: where each token's text starts in the choice's text, i.e. how many
    characters were printed before it (from `start`; none past `end`)."""

    def __init__(self, start: int = 0, end: int | None = None) -> None:
        from inference.tokenizer import IncrementalDetokenizer

        self.detok = IncrementalDetokenizer(service.engine.tokenizer)
        self.at, self.end = start, end

    def __call__(
        self, tokens: list[tuple[int, float | None, list[tuple[int, float]] | None]]
    ) -> dict[str, list]:
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for tok, lp, top in tokens:
            out["tokens"].append(token_text(tok))
            out["token_logprobs"].append(lp)
            out["top_logprobs"].append(None if lp is None else _top(tok, lp, top or []))
            out["text_offset"].append(self.at if self.end is None else min(self.at, self.end))
            self.at += len(self.detok.add(tok))
        return out


def _top(tok: int, lp: float, top: list[tuple[int, float]]) -> dict[str, float]:
    """The chosen token and its alternatives by text (two tokens of one text: the likelier)."""
    out: dict[str, float] = {}
    for t, v in [(tok, lp), *top]:
        text = token_text(t)
        out[text] = max(v, out.get(text, v))
    return out


def _prompt_tokens(prompt: str | list[int], scored: list | None) -> list:
    """(token id, logprob, alternatives) of each prompt token, the first with none (null)."""
    ids = service.engine.encode_prompt(prompt)
    scored = scored or [None] * len(ids)
    return [(t, None, None) if s is None else (t, s[0], s[1]) for t, s in zip(ids, scored, strict=True)]


def _joined(*parts: dict[str, list]) -> dict[str, list]:
    return {k: [v for p in parts for v in p[k]] for k in parts[0]}


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, user: CurrentUser):
    """Text completion (JSON or `data:` chunks ending in [DONE]); several prompts: a choice each."""
    prompts = body.prompts()
    for _ in prompts:  # each prompt is a question; only now: a body refused as malformed (400) asked nothing
        count_question(request, user)
    answers = await _answers(body, user, prompts)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": body.model}  # fmt: skip
    echo = [_text(p) for p in prompts] if body.echo else [""] * len(prompts)
    scoring = body.logprobs is not None

    def choice(i: int, text: str, finish: str | None = None, logprobs: dict | None = None) -> dict:
        return {"text": text, "index": i, "logprobs": logprobs, "finish_reason": finish}

    def prompt_logprobs(i: int, scored: list | None) -> dict | None:
        if not scoring:
            return None
        return _Logprobs(end=len(echo[i]))(_prompt_tokens(prompts[i], scored) if body.echo else [])

    if not body.stream:
        results = [await result(pieces) for pieces, _ in answers]
        choices = []
        for i, r in enumerate(results):
            text = echo[i] + r.answer
            lps = None
            if scoring:
                lps = _joined(prompt_logprobs(i, r.prompt_logprobs),
                              _Logprobs(len(echo[i]), len(text))(r.token_logprobs or []))  # fmt: skip
            choices.append(choice(i, text, finish_reason(r), lps))
        if len(answers) == 1:  # a rag: answer's sources beside the choices, as in chat
            return {
                **head,
                "choices": choices,
                "usage": usage(*results),
                **provenance(answers[0][1], results[0]),
            }
        for c, (_, sources), r in zip(choices, answers, results, strict=True):
            c.update(provenance(sources, r))  # several: each choice's own
        return {**head, "choices": choices, "usage": usage(*results)}

    async def chunks() -> AsyncIterator[dict]:
        results = []
        for i, (pieces, sources) in enumerate(answers):  # all are generated at once; sent one after another
            first = True
            offsets = _Logprobs(len(echo[i])) if scoring else None  # (no tokenizer without a generator)
            sent = 0  # tokens whose logprobs went out with a text chunk
            async for piece in pieces:
                # the echoed prompt goes first; its logprobs came with the first piece
                if first and (body.echo or sources is not None):
                    lps = prompt_logprobs(i, getattr(piece, "prompt_logprobs", None)) if body.echo else None
                    yield {**head, "choices": [choice(i, echo[i], None, lps)], **provenance(sources)}
                first = False
                if isinstance(piece, ans.Result):
                    results.append(piece)
                    more = {"cited": piece.cited} if sources is not None else {}
                    lps = offsets((piece.token_logprobs or [])[sent:]) if scoring else None
                    yield {**head, "choices": [choice(i, "", finish_reason(piece), lps)], **more}
                elif isinstance(
                    piece, ans.Thought
                ):  # a reasoning checkpoint's thinking: the text is the answer
                    sent += len(getattr(piece, "tokens", ()))
                elif piece:
                    tokens = list(getattr(piece, "tokens", ()))
                    sent += len(tokens)
                    lps = offsets(tokens) if scoring else None
                    yield {**head, "choices": [choice(i, str(piece), None, lps)]}
        if body.include_usage():
            yield {**head, "choices": [], "usage": usage(*results)}

    return sse(chunks(), "text completion")
