"""Tool (function) calling on /v1/chat/completions, in OpenAI's shapes: what a request offers the model
(`tools` and `tool_choice`, or the deprecated `functions` and `function_call`), earlier calls and results in the
messages, and the calls the model made (`tool_calls` with finish_reason "tool_calls"; for a request that sent
`functions`, `function_call` with "function_call"). How the template takes them and how the model writes a call
are the checkpoint's (inference.tools); this module only translates.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from app import answer as ans

# OpenAI's rule for a function's name (one line, as GLM writes it)
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolError(ValueError):
    """A request's tools, tool choice or tool messages that this server cannot take: a 400 naming `param`."""

    def __init__(self, message: str, param: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param, self.code = param, code


@dataclass(frozen=True)
class Offer:
    """What a request offers the model: `tools` (OpenAI's shape), `forced` the function it must call (None: its
    choice), `legacy` whether they came as `functions` (the reply then says `function_call`)."""

    tools: list[dict[str, Any]]
    forced: str | None = None
    legacy: bool = False

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t["function"]["name"] for t in self.tools)

    @property
    def param(self) -> str:
        return "functions" if self.legacy else "tools"


def offer(tools: list | None, choice: Any, functions: list | None, function_call: Any) -> Offer | None:
    """The request's offer; None where it offers nothing (no tools, or the choice "none")."""
    if tools and functions:  # one of them may be turned off ("none"): the other is the offer
        if choice == "none":
            tools = None
        elif function_call == "none":
            functions = None
        else:
            raise ToolError("Send tools or functions, not both.", "functions")
    legacy = bool(functions) and not tools
    param, choice_param = ("functions", "function_call") if legacy else ("tools", "tool_choice")
    if legacy:
        tools, choice = [{"type": "function", "function": f} for f in functions], function_call
    if not tools:
        if choice not in (None, "none", "auto"):
            raise ToolError(f"{choice_param} needs {param}.", choice_param)
        return None
    for i, t in enumerate(tools):
        f = t.get("function") if isinstance(t, dict) else None
        where = f"functions.{i}" if legacy else f"tools.{i}"
        if not legacy and t.get("type") != "function":
            raise ToolError(
                f"{where}.type: only 'function' tools are supported.", param, "unsupported_parameter"
            )
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not NAME.match(f["name"]):
            raise ToolError(
                f"{where}: a function needs a name of 1 to 64 letters, digits, '_' or '-'.", param
            )
    names = [t["function"]["name"] for t in tools]
    if choice in (None, "auto"):
        return Offer(tools, None, legacy)
    if choice == "none":
        return None
    if choice == "required":
        if len(tools) > 1:
            raise ToolError(f"{choice_param} 'required' with several tools is not supported: this server cannot "
                            "make the model pick one; name the function, or send 'auto'.", choice_param,
                            "unsupported_parameter")  # fmt: skip
        return Offer(tools, names[0], legacy)
    name = None
    if isinstance(choice, dict):
        name = choice.get("name") if legacy else (choice.get("function") or {}).get("name")
    if name is None:
        raise ToolError(f"{choice_param}: 'none', 'auto', 'required' or a function to call.", choice_param)
    if name not in names:
        raise ToolError(f"{choice_param}: there is no function {name!r} in {param}.", choice_param)
    return Offer(tools, name, legacy)


def message(i: int, role: str, content: str, m: Any, names: dict[str, str]) -> dict[str, Any]:
    """Message `i` (role already mapped: a `tool` or `function` result is "tool") for inference.tools: an
    assistant's calls (`tool_calls`, or the deprecated `function_call`) in OpenAI's shape with ids; a result
    with its call's id and function. `names`: the function of each call id so far (filled here)."""
    out: dict[str, Any] = {"role": role, "content": content}
    if role == "tool":
        call_id = getattr(m, "tool_call_id", None)
        name = getattr(m, "name", None) or names.get(call_id or "")
        out.update({k: v for k, v in (("tool_call_id", call_id), ("name", name)) if v is not None})
        return out
    calls = getattr(m, "tool_calls", None)
    if role != "assistant" or not (calls or getattr(m, "function_call", None)):
        return out
    if not calls:
        calls = [{"id": f"call_{i}", "type": "function", "function": m.function_call}]
    where = f"messages.{i}.tool_calls"
    got = []
    for j, c in enumerate(calls):
        f = c.get("function") if isinstance(c, dict) else None
        if (
            not isinstance(f, dict)
            or not isinstance(f.get("name"), str)
            or not isinstance(f.get("arguments"), str)
        ):
            raise ToolError(f"{where}.{j}: a call needs function.name and function.arguments (a JSON string).",
                            where)  # fmt: skip
        call_id = c.get("id") or f"call_{i}_{j}"
        names[call_id] = f["name"]
        got.append(
            {"id": call_id, "type": "function", "function": {"name": f["name"], "arguments": f["arguments"]}}
        )
    out["tool_calls"] = got
    return out


async def split_tool_calls(
    pieces: AsyncIterator[str | ans.Result], splitter
) -> AsyncIterator[str | ans.Result]:
    """`pieces` (answer Deltas, a reasoning checkpoint's Thoughts, then the Result) with the reply's text held
    back while it may still be a call (`splitter`: an inference.ToolCallSplitter); the Result's `tool_calls`
    are the calls made (its `answer` then empty). A held token's logprobs go with the next piece sent."""
    unsent: list[ans.TokenLogprob] = []
    pending = 0

    def out(text: str) -> ans.Delta:
        nonlocal unsent, pending
        piece = ans.Delta(text)
        piece.tokens, unsent = tuple(unsent), []
        piece.n_tokens, pending = pending, 0
        return piece

    try:
        async for piece in pieces:
            if isinstance(piece, ans.Result):
                text, calls = splitter.finish()
                if text:
                    yield out(text)
                if calls:
                    piece.answer = ""
                    piece.tool_calls = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                         "function": {"name": c.name, "arguments": c.arguments}} for c in calls]  # fmt: skip
                yield piece
                return
            if isinstance(piece, ans.Thought):
                yield piece
                continue
            unsent.extend(getattr(piece, "tokens", ()))
            pending += getattr(piece, "n_tokens", 0)
            if shown := splitter.feed(piece):
                yield out(shown)
    finally:  # closed early (the client went away): the engine stops too
        await pieces.aclose()


def reply_fields(calls: list[dict[str, Any]], legacy: bool) -> dict[str, Any]:
    """A reply message's fields for its calls: `tool_calls` (or the first call as `function_call`), no content."""
    if legacy:
        return {"content": None, "function_call": dict(calls[0]["function"])}
    return {"content": None, "tool_calls": calls}


def call_deltas(calls: list[dict[str, Any]], legacy: bool) -> list[dict[str, Any]]:
    """The stream's deltas of the calls: each call's id and name (arguments empty), then its arguments."""
    if legacy:
        f = calls[0]["function"]
        return [
            {"function_call": {"name": f["name"], "arguments": ""}},
            {"function_call": {"arguments": f["arguments"]}},
        ]
    deltas = []
    for i, c in enumerate(calls):
        deltas.append({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                       "function": {"name": c["function"]["name"], "arguments": ""}}]})  # fmt: skip
        deltas.append({"tool_calls": [{"index": i, "function": {"arguments": c["function"]["arguments"]}}]})
    return deltas


def finish_reason(r: ans.Result, legacy: bool) -> str:
    if getattr(r, "tool_calls", None):
        return "function_call" if legacy else "tool_calls"
    return "length" if r.finish_reason == "length" else "stop"
