"""OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (streaming and not), POST /v1/embeddings;
the helpers POST /v1/completions (completions.py) shares.

Model names: the loaded generator's name = plain chat, with tool calling where its chat template takes tools
(app.tool_calls); `rag:<collection name>` = answer from that collection (under the caller's ACL) with numbered
sources, like /api/ask, and no tools. Every error under /v1 uses OpenAI's
shape {"error": {"message", "type", "param", "code"}} (see `openai_error_handler`; the middlewares' 413 and
503 build the same).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import answer as ans
from app import auth
from app import tool_calls as tc
from app.backpressure import retry_after_s
from app.db import session_scope
from app.deps import CurrentUser
from app.engine_service import service
from app.models import Collection, User
from app.security import count_question
from app.settings import settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai"])
RAG_PREFIX = "rag:"
# OpenAI's newer clients send the system prompt as "developer"; the GLM chat template knows "system". A tool's
# result ("tool", or the deprecated "function") goes to the template as the checkpoint's tools format says
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool",
          "function": "tool"}  # fmt: skip
MAX_STOP = 16  # stop strings a request may give (OpenAI allows 4)
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}  # fmt: skip
# OpenAI's codes for the errors raised without one (the app's own HTTPExceptions: auth, rate limit, body size)
_CODES = {401: "invalid_api_key", 403: "forbidden", 404: "not_found", 413: "request_too_large",
          429: "rate_limit_exceeded"}  # fmt: skip
SERVER_ERROR = "The server had an error while processing your request."


class OpenAIError(HTTPException):
    """An HTTP error with OpenAI's `type` and `code`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        code: str | None = None,
        type_: str | None = None,
        param: str | None = None,
    ):
        super().__init__(status_code, message)
        self.code = code
        self.type = type_ or _TYPES.get(status_code, "server_error")
        self.param = param


def error_body(
    status_code: int, message: str, code: str | None, type_: str | None = None, param: str | None = None
) -> dict:
    return {"error": {"message": message, "type": type_ or _TYPES.get(status_code, "server_error"),
                      "param": param, "code": code}}  # fmt: skip


# pydantic's names for the members of a union ("str", "list[str]", "dict[str,any]"): in an error's loc they
# follow the field, which is what a client sent and what OpenAI's `param` names
_SCALAR_TAGS = {"str", "int", "float", "bool", "bytes", "none", "any"}


def _field_path(loc) -> tuple:
    return tuple(p for p in loc[1:] if not (isinstance(p, str) and ("[" in p or p in _SCALAR_TAGS)))


def _first_invalid(errors: list[dict]) -> tuple[tuple, str]:
    """(field path, message) of the first invalid field. A field of several types fails once per type: the
    deepest failure is the type the value's shape chose ("input": [1] fails at input.0), and failures at the
    same depth are one message naming each type ("Input should be a valid string or a valid list")."""
    if not errors:
        return (), "invalid"
    base = _field_path(errors[0].get("loc", ()))
    same = [
        (p, e.get("msg", "invalid"))
        for e in errors
        if (p := _field_path(e.get("loc", ())))[: len(base)] == base
    ]
    path = max((p for p, _ in same), key=len) if base else base
    msgs = list(dict.fromkeys(m for p, m in same if p == path)) or [errors[0].get("msg", "invalid")]
    return path, " or ".join([msgs[0], *(m.removeprefix("Input should be ") for m in msgs[1:])])


def openai_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Used for /v1 paths: HTTP errors (the app's, and the router's 404 and 405 for a path or method that does
    not exist, worded as OpenAI's API words them), validation errors and unhandled ones (500) in OpenAI's
    error shape."""
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":  # its loc is the character where parsing stopped, no field
            at = first.get("loc", ("body", "?"))[-1]
            message = f"Invalid request: the body is not valid JSON ({first.get('msg', 'invalid')} at character {at})."
            return JSONResponse(error_body(400, message, "invalid_request"), 400)
        path, message = _first_invalid(exc.errors())
        if not path:  # the body itself: not an object, or not read as JSON at all (curl -d sends a form type)
            kind = request.headers.get("content-type", "")
            sent = "" if "json" in kind else f" (it came as {kind.split(';')[0] or 'no type'!r})"
            message = f"Invalid request: the body must be a JSON object, sent as Content-Type: application/json{sent}."
            return JSONResponse(error_body(400, message, "invalid_request"), 400)
        where = ".".join(str(p) for p in path)
        body = error_body(400, f"Invalid request: {where}: {message}", "invalid_request", param=where or None)
        return JSONResponse(body, 400)
    if not isinstance(exc, StarletteHTTPException):
        return JSONResponse(error_body(500, SERVER_ERROR, None, "server_error"), 500)
    headers = getattr(exc, "headers", None)
    if type(exc) is StarletteHTTPException and exc.status_code in (404, 405):  # the router's: no such route
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return JSONResponse(error_body(404, f"Invalid URL ({where})", None), 404, headers=headers)
        allow = [m.strip() for m in (headers or {}).get("Allow", "").split(",") if m.strip()]
        allow = [m for m in allow if m != "HEAD" or "GET" not in allow]
        message = f"Invalid method for URL ({where}): use {' or '.join(allow)}"
        return JSONResponse(error_body(405, message, None), 405, headers=headers)
    code = getattr(exc, "code", None) or _CODES.get(exc.status_code)
    body = error_body(
        exc.status_code, str(exc.detail), code, getattr(exc, "type", None), getattr(exc, "param", None)
    )
    return JSONResponse(body, exc.status_code, headers=headers)


class _NullsAreDefaults(BaseModel):
    """OpenAI's optional request fields are nullable ("temperature": null means the default), and clients built
    from its OpenAPI schema send null for what they leave unset: a null field takes its default here."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class ChatMessage(BaseModel):
    """A message; content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None
    # an assistant's calls, and a tool result's call id (app.tool_calls reads them)
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: a string, or its text parts a line each (as vLLM joins them; "".join glued
        "the hotel cap" and "in Munich?" into "capin")."""
        if isinstance(self.content, list):
            return "\n".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""

    def other_part(self) -> str | None:
        """The type of a content part that is not text (an image, audio, a file), if any: this server reads
        text only, and an answer that silently left a picture out would pretend to have seen it."""
        parts = self.content if isinstance(self.content, list) else []
        return next((str(p.get("type")) for p in parts if p.get("type") != "text"), None)

    def textless_part(self) -> int | None:
        """The index of a text part whose `text` is not a string (missing, null, a number), if any."""
        parts = self.content if isinstance(self.content, list) else []
        return next((j for j, p in enumerate(parts) if p.get("type") == "text" and not isinstance(p.get("text"), str)),
                    None)  # fmt: skip


class SamplingRequest(_NullsAreDefaults):
    """The fields OpenAI's chat and text completion requests share: the model, streaming and sampling."""

    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, ge=0, le=1)  # 0: only the likeliest token, i.e. greedy
    n: int = Field(default=1, ge=1)
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  # what torch's generator takes
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    # vLLM's extensions, which several clients send
    top_k: int = Field(default=0, ge=-1)
    repetition_penalty: float = Field(default=1.0, gt=0)

    def options(self) -> dict[str, Any]:
        """The SamplingParams options besides max_tokens/temperature/top_p/logprobs; OpenAIError for what this
        server cannot honour."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP or any(not s for s in stop):
            raise OpenAIError(
                400, f"stop: at most {MAX_STOP} non-empty strings.", "invalid_request", param="stop"
            )
        if self.logit_bias:
            raise OpenAIError(400, "logit_bias is not supported: this server's sampler has no per-token bias.",
                              "unsupported_parameter", param="logit_bias")  # fmt: skip
        if self.n > 1:
            raise OpenAIError(400, f"n={self.n} is not supported: this server returns one choice per request; "
                              "send n requests for n answers.", "unsupported_parameter", param="n")  # fmt: skip
        return {"stop": stop, "seed": self.seed, "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty, "top_k": max(self.top_k, 0),
                "repetition_penalty": self.repetition_penalty}  # fmt: skip

    def temperature_top_p(self) -> tuple[float, float]:
        """top_p 0 keeps only the likeliest token, which is greedy decoding (the sampler wants top_p in (0, 1])."""
        return (0.0, 1.0) if self.top_p == 0 else (self.temperature, self.top_p)

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(SamplingRequest):
    """OpenAI's chat completion request: the fields this server honours or refuses by name (`sampling`); any
    other (`user`, `metadata`, a field of another server) is accepted and has no effect."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    # the deprecated form of tools, which older LangChain and LlamaIndex agents still send
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None

    def sampling(self) -> dict[str, Any]:
        """`options` and logprobs; OpenAIError for what this server cannot honour (a client that asked for JSON
        output must not get plain text silently; tools are app.tool_calls')."""
        if self.top_logprobs and not self.logprobs:
            raise OpenAIError(
                400, "top_logprobs needs logprobs=true.", "invalid_request", param="top_logprobs"
            )
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise OpenAIError(400, f"response_format {kind!r} is not supported: this server generates plain "
                              "text.", "unsupported_parameter", param="response_format")  # fmt: skip
        if self.audio is not None or any(m != "text" for m in self.modalities or ()):
            raise OpenAIError(400, "Only text output is supported: modalities ['text'], no audio.",
                              "unsupported_parameter", param="audio" if self.audio else "modalities")  # fmt: skip
        return {**self.options(), "logprobs": self.logprobs, "top_logprobs": self.top_logprobs or 0}


def _readable_collections(user: User) -> list[Collection]:
    with session_scope() as s:
        ids = auth.readable_collection_ids(s, user)
        return list(s.exec(select(Collection).where(Collection.id.in_(ids)).order_by(Collection.id)).all())


@router.get("/models")
async def list_models(user: CurrentUser) -> dict:
    """The generator (when loaded) and one `rag:<collection>` model per readable collection."""
    created = int(time.time())
    data = []
    if service.loaded:
        data.append({"id": service.name, "object": "model", "created": created, "owned_by": "autoglm"})
    for c in await run_in_threadpool(_readable_collections, user):
        data.append({"id": RAG_PREFIX + c.name, "object": "model", "created": int(c.created_at.timestamp()),
                     "owned_by": "autoglm"})  # fmt: skip
    return {"object": "list", "data": data}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, user: CurrentUser) -> dict:
    """One entry of GET /v1/models; 404 for a model the caller cannot see."""
    for m in (await list_models(user))["data"]:
        if m["id"] == model_id:
            return m
    raise no_model(model_id)


class EmbeddingRequest(_NullsAreDefaults):
    """OpenAI's embeddings request: text inputs only (token-id arrays are refused), float or base64."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


MAX_EMBED_INPUTS = 512  # a request holds one of search's slots while the model reads all of them
MAX_EMBED_CHARS = 20_000  # the model reads ~256 tokens (1-2k characters) of each


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, user: CurrentUser) -> dict:
    """Vectors of the embedding model the search uses (L2-normalized; text past the model's window is
    truncated, as in indexing). Not cached, and not counted against the questions-per-minute limit."""
    from app.search import _embedder

    emb = await run_in_threadpool(_embedder)
    if body.model != emb.name:
        raise no_model(body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_EMBED_INPUTS or any(not t or len(t) > MAX_EMBED_CHARS for t in texts):
        raise OpenAIError(400, f"input: 1 to {MAX_EMBED_INPUTS} non-empty strings of at most {MAX_EMBED_CHARS:,} "
                          "characters.", "invalid_request", param="input")  # fmt: skip
    if body.dimensions is not None and body.dimensions != emb.dim:
        raise OpenAIError(
            400, f"dimensions: this model gives {emb.dim}.", "unsupported_parameter", param="dimensions"
        )
    vecs, tokens = await run_in_threadpool(lambda: (emb.encode(texts), emb.count_tokens(texts)))
    if body.encoding_format == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vecs]
    else:
        data = [v.tolist() for v in vecs]
    return {"object": "list", "model": emb.name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": d} for i, d in enumerate(data)]}  # fmt: skip


def no_model(name: str) -> OpenAIError:
    return OpenAIError(
        404, f"The model `{name}` does not exist or you do not have access to it.", "model_not_found"
    )


Pieces = tuple[AsyncIterator[str | ans.Result], list[ans.Source] | None]


async def rag_collection(model: str, user: User) -> Collection:
    """The collection a `rag:` model names, if the caller may read it; else the 404 of an unknown model."""
    name = model[len(RAG_PREFIX) :]
    cols = [c for c in await run_in_threadpool(_readable_collections, user) if c.name == name]
    if not cols:
        raise no_model(model)  # absent and forbidden look the same
    return cols[0]


async def rag_pieces(
    col: Collection,
    body: SamplingRequest,
    question: str,
    options: dict[str, Any],
    max_tokens: int | None,
    history: list[dict[str, str]] | None = None,
    instructions: str = "",
) -> Pieces:
    """The answer from `col` to `question` (text deltas, then an ans.Result) and its sources."""
    history = history or []
    query = ans.standalone_query(question, history)
    got = await ans.retrieve(query, [col.id])
    try:
        sources, messages = ans.prepare(question, history, got.sources, max_tokens, instructions)
    except ValueError as e:
        raise OpenAIError(400, str(e), "context_length_exceeded") from None
    if messages is None:  # no generator: an extractive answer
        pieces = ans.answer(question, None, sources, query, max_tokens=max_tokens, stop=options["stop"])
        return pieces, sources
    temperature, top_p = body.temperature_top_p()
    limit, temperature = _limits(messages, max_tokens, temperature)
    sampling = {"max_tokens": limit, "temperature": temperature, "top_p": top_p, **options}
    return ans.answer(question, messages, sources, **sampling), sources


def plain_pieces(
    body: SamplingRequest,
    prompt,
    options: dict[str, Any],
    max_tokens: int | None,
) -> Pieces:
    """The generator's continuation of `prompt` (raw text, token ids, or chat messages or an inference.Chat under
    the chat template)."""
    if not service.loaded or body.model != service.name:
        raise no_model(body.model)
    from inference import Chat

    temperature, top_p = body.temperature_top_p()
    chat = isinstance(prompt, Chat) or (bool(prompt) and isinstance(prompt[0], dict))
    what = "the messages take" if chat else "the prompt takes"
    limit, temperature = _limits(prompt, max_tokens, temperature, what, chat)
    return ans.generate(prompt, limit, temperature, top_p=top_p, **options), None


async def _pieces(body: ChatRequest, user: User) -> tuple[Pieces, tc.Offer | None]:
    """Text deltas then an ans.Result, for a rag: model or plain chat, and the tools offered to the model;
    raises OpenAIError for bad requests."""
    for i, m in enumerate(body.messages):
        if (j := m.textless_part()) is not None:  # was a 500 (joining a null)
            where = f"messages.{i}.content.{j}.text"
            raise OpenAIError(400, f"Invalid request: {where}: Input should be a valid string", "invalid_request",
                              param=where)  # fmt: skip
        if m.role not in _ROLES:
            raise OpenAIError(400, f"Message role {m.role!r} is not supported (system, developer, user, "
                              "assistant, tool).", "invalid_request", param="messages")  # fmt: skip
        if (kind := m.other_part()) is not None:
            raise OpenAIError(400, f"Content parts of type {kind!r} are not supported: this server reads text "
                              "only.", "unsupported_parameter", param="messages")  # fmt: skip
    max_tokens = body.max_completion_tokens or body.max_tokens
    options = body.sampling()
    names: dict[str, str] = {}  # each earlier call's function, by id
    try:
        offer = tc.offer(body.tools, body.tool_choice, body.functions, body.function_call)
        msgs = [tc.message(i, _ROLES[m.role], m.text(), m, names) for i, m in enumerate(body.messages)]
    except tc.ToolError as e:
        raise OpenAIError(400, str(e), e.code, param=e.param) from None
    with_tools = any(m["role"] == "tool" or "tool_calls" in m for m in msgs)
    if not body.model.startswith(RAG_PREFIX):
        if not service.loaded or body.model != service.name:
            raise no_model(body.model)
        # a reasoning checkpoint's earlier answers go back without their thinking; it thinks apart again
        msgs = ans.without_reasoning(msgs)
        prompt = _tool_prompt(msgs, offer) if offer or with_tools else msgs
        pieces, _ = plain_pieces(body, prompt, options, max_tokens)
        pieces = ans.split_reasoning(pieces)
        if offer:
            from inference import ToolCallSplitter

            pieces = tc.split_tool_calls(pieces, ToolCallSplitter(offer.names, offer.forced))
        return (pieces, None), offer
    if offer:
        to = f"the model `{service.name}`" if service.loaded else "a generator's model (none is loaded)"
        raise OpenAIError(400, f"Tool calling is not supported by rag: models: they answer from a collection's "
                          f"documents. Send {offer.param} to {to}, or none.", "unsupported_parameter",
                          param=offer.param)  # fmt: skip
    if with_tools:
        raise OpenAIError(400, "Tool calls and results are not supported by rag: models: send them to the "
                          "generator's model.", "invalid_request", param="messages")  # fmt: skip
    col = await rag_collection(body.model, user)
    if msgs[-1]["role"] != "user" or not msgs[-1]["content"].strip():
        raise OpenAIError(
            400, "The last message must be a non-empty user message.", "invalid_request", param="messages"
        )
    if body.logprobs and service.engine is None:  # a quoted answer was not sampled: it has no logprobs
        raise OpenAIError(400, "logprobs is not supported without a generator: the answer is quoted from "
                          "the sources, not sampled.", "unsupported_parameter", param="logprobs")  # fmt: skip
    history = [m for m in msgs[:-1] if m["role"] in ("user", "assistant")]
    # the client's system prompt ("Answer in German.") joins the product's, which keeps the sources rules
    instructions = "\n\n".join(m["content"] for m in msgs if m["role"] == "system" and m["content"].strip())
    return await rag_pieces(col, body, msgs[-1]["content"], options, max_tokens, history, instructions), None


def _tool_prompt(msgs: list[dict[str, Any]], offer: tc.Offer | None):
    """The inference.Chat of a conversation with tools offered, or with earlier calls and results: in the form
    the checkpoint's template takes them; a 400 where it takes none, and for what this server cannot honour."""
    fmt = service.tools
    if fmt is None and offer:
        raise OpenAIError(400, f"The model `{service.name}` cannot call tools: its chat template does not render "
                          f"them (send no {offer.param}, or {'function_call' if offer.legacy else 'tool_choice'} "
                          "'none').", "unsupported_parameter", param=offer.param)  # fmt: skip
    if fmt is None:
        raise OpenAIError(400, f"Tool calls and results are not supported by the model `{service.name}`: its chat "
                          "template does not render them.", "invalid_request", param="messages")  # fmt: skip
    forced = offer.forced if offer else None
    if forced and service.reasoning is not None:
        param = "function_call" if offer.legacy else "tool_choice"
        raise OpenAIError(400, f"{param} naming a function is not supported for a reasoning model (it thinks "
                          "before it calls): send 'auto'.", "unsupported_parameter", param=param)  # fmt: skip
    try:
        return fmt.chat(msgs, offer.tools if offer else None, f"{forced}\n" if forced else "")
    except ValueError as e:
        raise OpenAIError(400, f"Tool results are not supported by the model `{service.name}`: {e}.",
                          "invalid_request", param="messages") from None  # fmt: skip


def _limits(
    prompt,
    max_tokens: int | None,
    temperature: float = 0.0,
    what: str = "the messages take",
    chat: bool = True,
) -> tuple[int, float]:
    """(the output limit, temperature): `max_tokens` if it fits the context window (else a 400), or by default
    the answer budget (`chat`: with a reasoning checkpoint's room to think; a raw text completion: without)."""
    try:
        n = len(service.engine.encode_prompt(prompt))
    except ValueError as e:
        raise OpenAIError(400, str(e), "invalid_request") from None
    room = service.engine.max_model_len - n
    if room < 1 or (max_tokens is not None and max_tokens > room):
        raise OpenAIError(
            400,
            f"This model's maximum context length is {service.engine.max_model_len} tokens; {what} "
            f"{n} and {max_tokens or 1} more were requested.",
            "context_length_exceeded",
        )
    # max_tokens 0 (text completions with echo: the prompt scored only) stays 0
    default = ans.default_max_tokens() if chat else settings.answer_max_tokens
    return (min(default, room) if max_tokens is None else max_tokens), temperature


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


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request, user: CurrentUser):
    """Chat completion (JSON or `data:` chunks ending in [DONE])."""
    count_question(request, user)  # only now: a body refused as malformed (400) asked nothing
    (pieces, sources), offer = await _pieces(body, user)
    legacy = offer is not None and offer.legacy
    pieces = await start(pieces)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": body.model}  # fmt: skip
    reasons = service.reasoning is not None  # vLLM's reasoning parsers' fields (Open WebUI reads them)
    if not body.stream:
        r = await result(pieces)
        message = {"role": "assistant", "content": r.answer}
        if r.tool_calls:
            message.update(tc.reply_fields(r.tool_calls, legacy))
        if reasons:
            message["reasoning_content"] = r.reasoning
        return {**head,
                "choices": [{"index": 0, "message": message, "finish_reason": tc.finish_reason(r, legacy),
                             "logprobs": _logprobs(r.token_logprobs or []) if body.logprobs else None}],
                "usage": usage(r), **provenance(sources, r)}  # fmt: skip
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict, finish: str | None = None, tokens=None, **more) -> dict:
        lps = _logprobs(tokens) if body.logprobs and tokens is not None else None
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lps}],
                **more}  # fmt: skip

    async def chunks() -> AsyncIterator[dict]:
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

    return sse(chunks(), "chat completion")
