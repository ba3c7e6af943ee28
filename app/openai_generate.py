"""What answers an OpenAI request, up to the answer's pieces (text deltas, then an app.answer.Result): the model
it names (the generator's, or `rag:<collection>` under the caller's ACL), the chat messages converted to the
generator's (roles, text parts, tool calls and results through app.tool_calls, the checkpoint's tool prompt), and
the output limit that fits the context window. Every refusal is an OpenAIError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlmodel import select

from app import answer as ans
from app import auth
from app import tool_calls as tc
from app.db import session_scope
from app.engine_service import service
from app.models import Collection, User
from app.openai_errors import OpenAIError, no_model
from app.openai_schemas import ChatRequest, SamplingRequest
from app.settings import settings

RAG_PREFIX = "rag:"
# OpenAI's newer clients send the system prompt as "developer"; the GLM chat template knows "system". A tool's
# result ("tool", or the deprecated "function") goes to the template as the checkpoint's tools format says
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool",
          "function": "tool"}  # fmt: skip
# an answer's text deltas then its ans.Result, and a rag: answer's sources (None for the plain model)
Pieces = tuple[AsyncIterator[str | ans.Result], list[ans.Source] | None]


def readable_collections(user: User) -> list[Collection]:
    """The collections the caller may read, in id order: each is a `rag:` model."""
    with session_scope() as s:
        ids = auth.readable_collection_ids(s, user)
        return list(s.exec(select(Collection).where(Collection.id.in_(ids)).order_by(Collection.id)).all())


async def rag_collection(model: str, user: User) -> Collection:
    """The collection a `rag:` model names, if the caller may read it; else the 404 of an unknown model."""
    name = model[len(RAG_PREFIX) :]
    cols = [c for c in await run_in_threadpool(readable_collections, user) if c.name == name]
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


async def chat_pieces(body: ChatRequest, user: User) -> tuple[Pieces, tc.Offer | None]:
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
