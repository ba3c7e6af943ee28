"""The OpenAI-compatible API's response bodies and streams: `usage`, logprobs, a rag: answer's provenance
(`sources`, `cited`), a chat completion and its chunks, the first piece awaited before a stream starts (so an
engine refusal is an HTTP error, not a broken stream), and the `data:` event framing ending in [DONE].
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from app import answer as ans
from app import tool_calls as tc
from app.backpressure import retry_after_s
from app.engine_service import service
from app.openai_errors import OpenAIError, error_body
from app.openai_schemas import ChatRequest

log = logging.getLogger(__name__)


def usage(*results: ans.Result) -> dict[str, Any]:
    """OpenAI's `usage` of one answer, or of several (one request's choices) together."""
    p, c, hit = (
        sum(r.usage[k] for r in results) for k in ("prompt_tokens", "completion_tokens", "prefix_hit_tokens")
    )
    got = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
           "prompt_tokens_details": {"cached_tokens": hit}}  # fmt: skip
    if any("reasoning_tokens" in r.usage for r in results):  # a reasoning checkpoint's, as OpenAI counts them
        thought = sum(r.usage.get("reasoning_tokens", 0) for r in results)
        got["completion_tokens_details"] = {"reasoning_tokens": thought}
    return got


def token_text(tok: int) -> str:
    """A token's text alone (special tokens included; U+FFFD where it is part of a character)."""
    return service.engine.tokenizer.decode([tok], skip_special_tokens=False)


def _logprobs(tokens: list[ans.TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat choice `logprobs` for (token id, log-probability, likeliest alternatives) triples; `bytes`
    is null for a token that is part of a character (its text alone is not valid UTF-8)."""

    def entry(tok: int, lp: float) -> dict[str, Any]:
        text = token_text(tok)
        return {"token": text, "logprob": lp, "bytes": None if "\ufffd" in text else list(text.encode())}

    return {
        "content": [
            {**entry(tok, lp), "top_logprobs": [entry(t, v) for t, v in top]} for tok, lp, top in tokens
        ]
    }


def provenance(sources: list[ans.Source] | None, r: ans.Result | None = None) -> dict[str, Any]:
    """A rag: answer's `sources`, and with its Result the numbers it `cited`; nothing for the plain model."""
    if sources is None:
        return {}
    return {"sources": [s.public() for s in sources], **({"cited": r.cited} if r is not None else {})}


def finish_reason(r: ans.Result) -> str:
    return "length" if r.finish_reason == "length" else "stop"


async def start(pieces: AsyncIterator[str | ans.Result]) -> AsyncIterator[str | ans.Result]:
    """`pieces` with its first one already generated: errors before the first token become HTTP errors (503
    with Retry-After for a full engine queue, 400 for what the engine refuses) instead of a broken stream."""
    from inference import EngineOverloaded

    try:
        first = await anext(pieces)
    except EngineOverloaded as e:
        busy = OpenAIError(503, str(e), "overloaded")
        busy.headers = {"Retry-After": str(retry_after_s("ask"))}
        raise busy from None
    except ValueError as e:
        raise OpenAIError(400, str(e), "invalid_request") from None

    async def chained() -> AsyncIterator[str | ans.Result]:
        try:
            yield first
            async for piece in pieces:
                yield piece
        finally:  # closed early (a client gone, another prompt of the request refused): the engine stops too
            await pieces.aclose()

    return chained()


async def result(pieces: AsyncIterator[str | ans.Result]) -> ans.Result:
    """The Result that ends `pieces` (the whole answer)."""
    async for piece in pieces:
        if isinstance(piece, ans.Result):
            return piece
    raise RuntimeError("the answer ended without a result")


def sse(objects: AsyncIterator[dict], what: str) -> StreamingResponse:
    """`data:` events of `objects`, then [DONE]; a failure mid-stream is an error event in OpenAI's shape."""

    async def events() -> AsyncIterator[bytes]:
        try:
            async for obj in objects:
                yield f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()
        except Exception as e:
            log.exception("%s stream failed", what)
            yield f"data: {json.dumps(error_body(500, f'generation failed: {e}', 'internal_error'))}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def chat_completion(
    body: ChatRequest, head: dict, r: ans.Result, sources: list[ans.Source] | None, legacy: bool
) -> dict:
    """A whole chat completion: the answer `r` as the choice's message (with its tool calls, and a reasoning
    checkpoint's thinking), its usage and provenance."""
    message = {"role": "assistant", "content": r.answer}
    if r.tool_calls:
        message.update(tc.reply_fields(r.tool_calls, legacy))
    if service.reasoning is not None:  # vLLM's reasoning parsers' field (Open WebUI reads it)
        message["reasoning_content"] = r.reasoning
    return {**head,
            "choices": [{"index": 0, "message": message, "finish_reason": tc.finish_reason(r, legacy),
                         "logprobs": _logprobs(r.token_logprobs or []) if body.logprobs else None}],
            "usage": usage(r), **provenance(sources, r)}  # fmt: skip


async def chat_chunks(
    body: ChatRequest,
    head: dict,
    pieces: AsyncIterator[str | ans.Result],
    sources: list[ans.Source] | None,
    legacy: bool,
) -> AsyncIterator[dict]:
    """A streamed chat completion's chunks: the role (and a rag: answer's sources) first, a delta per text piece
    (`reasoning_content` for a reasoning checkpoint's thinking) with its tokens' logprobs, the tool calls, the
    finish reason (and the numbers cited), then the usage where `stream_options` asks for it."""
    head = {**head, "object": "chat.completion.chunk"}

    def chunk(delta: dict, finish: str | None = None, tokens=None, **more) -> dict:
        lps = _logprobs(tokens) if body.logprobs and tokens is not None else None
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lps}],
                **more}  # fmt: skip

    yield chunk({"role": "assistant", "content": ""}, **provenance(sources))
    sent = 0  # tokens whose logprobs went out with a text chunk
    async for piece in pieces:
        if isinstance(piece, ans.Result):
            more = {"cited": piece.cited} if sources is not None else {}
            for delta in tc.call_deltas(piece.tool_calls, legacy) if piece.tool_calls else ():
                yield chunk(delta)
            yield chunk({}, tc.finish_reason(piece, legacy), (piece.token_logprobs or [])[sent:], **more)
            if body.include_usage():
                yield {**head, "choices": [], "usage": usage(piece)}
        elif piece:
            tokens = getattr(piece, "tokens", ())
            sent += len(tokens)
            part = "reasoning_content" if isinstance(piece, ans.Thought) else "content"
            yield chunk({part: piece}, None, tokens)
