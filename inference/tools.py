"""Tool (function) calling the GLM-4 way: how a checkpoint's chat template takes the tools, earlier calls and
their results, and how the model writes a call.

GLM-4 (glm-4-9b-chat, GLM-4-0414, GLM-Z1) writes a call as the function's name alone on the first line of its
turn, then the arguments as a JSON object, and ends the turn with <|observation|> (a stop token); the result
goes back as an `observation` turn. Several calls in one turn follow each other (the <|assistant|> between them
is a special token, not in the decoded text). An earlier call goes back into the prompt as an assistant turn
whose `metadata` is the function's name and whose content is the arguments. Templates take the tools as the
`tools` variable (GLM-4-0414, GLM-Z1: transformers' convention) or on a message of their own (`item['tools']`:
glm-4-9b-chat). What a template does is found by rendering probes, as `ReasoningFormat` does, not read from a
name. Pure text: the callers (the API) decide what to show.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .tokenizer import Chat, Tokenizer

_NAME, _RESULT = "probe_function_x7", "probe_result_x7"
_TOOL = {"type": "function", "function": {"name": _NAME, "description": "", "parameters": {"type": "object"}}}
_USER = {"role": "user", "content": "?"}
_CALL_AS_META = {"role": "assistant", "metadata": _NAME, "content": "{}"}
_CALL_AS_TOOL_CALLS = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_probe", "type": "function", "function": {"name": _NAME, "arguments": {}}}]}  # fmt: skip


@dataclass(frozen=True)
class ToolCall:
    """A call the model wrote: a function's name and its arguments (a JSON object, as written)."""

    name: str
    arguments: str


@dataclass(frozen=True)
class ToolFormat:
    """How a checkpoint's template takes tools. `placement`: "variable" (the `tools` variable) or "message" (a
    system message of their own, glm-4-9b-chat's `item['tools']`); `calls`: how an earlier call goes back,
    "metadata" (GLM's assistant turn named by `metadata`), "tool_calls" (OpenAI's field) or "text" (the call as
    the model wrote it); `results`: the role a result goes back under, "observation" (GLM's) or "tool", or None
    where the template shows no results."""

    placement: str = "variable"
    calls: str = "metadata"
    results: str | None = "observation"

    @classmethod
    def detect(cls, tokenizer: Tokenizer) -> ToolFormat | None:
        """The template's format, or None when it shows no tools (the checkpoint cannot be offered any)."""

        def shows(text: str, messages: list[dict], tools: list[dict] | None = None) -> bool:
            try:
                return text in tokenizer.apply_chat_template(messages, tools=tools)
            except Exception:  # a template that refuses the probe does not take that form
                return False

        if tokenizer.chat_template is None:
            return None
        if shows(_NAME, [_USER], [_TOOL]):
            placement = "variable"
        elif shows(_NAME, [{"role": "system", "content": "", "tools": [_TOOL]}, _USER]):
            placement = "message"
        else:
            return None
        if shows(_NAME, [_USER, _CALL_AS_META]):
            calls = "metadata"
        elif shows(_NAME, [_USER, _CALL_AS_TOOL_CALLS]):
            calls = "tool_calls"
        else:
            calls = "text"
        call = _CALL_AS_TOOL_CALLS if calls == "tool_calls" else _CALL_AS_META
        # a template that writes any role as <|role|> shows both: GLM's own name for the turn wins
        if shows(_RESULT, [_USER, call, {"role": "observation", "content": _RESULT}]):
            results = "observation"
        elif shows(_RESULT, [_USER, call, {"role": "tool", "content": _RESULT, "tool_call_id": "call_probe",
                                           "name": _NAME}]):  # fmt: skip
            results = "tool"
        else:
            results = None
        return cls(placement, calls, results)

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, reply_start: str = ""
    ) -> Chat:
        """The prompt for `messages` in OpenAI's shape (an assistant turn may carry `tool_calls`, each with
        `function` {name, arguments: a JSON string}; a `tool` turn is a result) offering `tools` (None: none),
        in the form the template reads. ValueError for a result the template cannot show."""
        out: list[dict[str, Any]] = []
        if tools and self.placement == "message":
            out.append({"role": "system", "content": "", "tools": tools})
        for m in messages:
            if m["role"] == "tool":
                if self.results is None:
                    raise ValueError("this model's chat template shows no tool results")
                if self.results == "observation":
                    out.append({"role": "observation", "content": m["content"]})
                else:
                    out.append({k: m[k] for k in ("role", "content", "tool_call_id", "name") if k in m})
            elif m["role"] == "assistant" and m.get("tool_calls"):
                out.extend(
                    self._calls(m["content"], [c["function"] for c in m["tool_calls"]], m["tool_calls"])
                )
            else:
                out.append(m)
        return Chat(out, tools if tools and self.placement == "variable" else None, reply_start)

    def _calls(self, content: str, functions: list[dict], raw: list[dict]) -> list[dict[str, Any]]:
        if self.calls == "tool_calls":  # transformers' convention: the arguments as a mapping
            calls = [{**c, "function": {"name": f["name"], "arguments": _mapping(f["arguments"])}}
                     for c, f in zip(raw, functions, strict=True)]  # fmt: skip
            return [{"role": "assistant", "content": content, "tool_calls": calls}]
        turns = [{"role": "assistant", "content": content}] if content.strip() else []
        if self.calls == "metadata":
            return turns + [
                {"role": "assistant", "metadata": f["name"], "content": f["arguments"]} for f in functions
            ]
        written = "".join(f"{f['name']}\n{f['arguments']}" for f in functions)
        return [{"role": "assistant", "content": f"{content.strip()}\n{written}".lstrip("\n")}]


def _mapping(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def parse_tool_calls(text: str, names: Collection[str]) -> list[ToolCall] | None:
    """The calls a whole reply makes, or None when it is not calls alone: each call a known function's name on
    a line of its own, then a JSON object (GLM-4's form). An unknown name, arguments that are not a JSON object,
    or other text around them: None (the reply is text, as vLLM's parsers decide)."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    rest = text.strip()
    while rest:
        name, newline, after = rest.partition("\n")
        if not newline or name.strip() not in names:
            return None
        after = after.lstrip()
        try:
            arguments, end = decoder.raw_decode(after)
        except ValueError:
            return None
        if not isinstance(arguments, dict):
            return None
        calls.append(ToolCall(name.strip(), after[:end]))
        rest = after[end:].strip()
    return calls or None


@dataclass
class ToolCallSplitter:
    """Feeds on the streamed text of a reply that may be tool calls and hands back the text that surely is not.

    While the reply could still become a call (so far blank, part of a known function's name, or a name's line
    and then a JSON object being written), its text is held back, so a function's name never streams as
    content; `finish` tells at the end whether the reply was calls. `forced`: the prompt already wrote this
    function's name (the request named it), so the whole reply is its arguments."""

    names: frozenset[str]
    forced: str | None = None
    state: str = field(init=False, default="start")  # "start": not known yet; "text"
    _held: str = field(init=False, default="")

    def feed(self, text: str) -> str:
        """The text to show now of the next piece of the reply."""
        if self.state == "text":
            return text
        self._held += text
        if self.forced is None and not self._may_be_call(self._held.lstrip()):
            self.state, shown, self._held = "text", self._held, ""
            return shown
        return ""

    def _may_be_call(self, s: str) -> bool:
        first, newline, rest = s.partition("\n")
        if not newline:
            return any(n.startswith(first.strip()) for n in self.names)
        rest = rest.lstrip()
        return first.strip() in self.names and (not rest or rest.startswith("{"))

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(text still to show, the calls) at the end of the reply: the calls when the reply was calls alone,
        else the text held back."""
        held, self._held = self._held, ""
        if self.state == "text":
            return held, []
        text = f"{self.forced}\n{held}" if self.forced is not None else held
        calls = parse_tool_calls(text, self.names)
        return ("", calls) if calls else (held, [])
