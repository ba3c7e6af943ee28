"""Tokenizer from a checkpoint directory, the GLM-4 chat template, and streaming detokenization."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

log = logging.getLogger(__name__)

Message = dict[str, str]
# the reasoning block's markers (inference.reasoning): kept in decoded text even where they are special tokens
THINK_START, THINK_END = "<think>", "</think>"


@dataclass(frozen=True)
class Chat:
    """A chat prompt beyond plain messages: `messages` as the template reads them (they may carry more keys than
    role and content: a call's `metadata`, `tool_calls`, `tools`), `tools` for the template's `tools` variable
    (OpenAI's shape; None: not passed), and `reply_start`, text the reply begins with, written after the
    generation prompt for the model to continue (the name of a function it is to call)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    reply_start: str = ""


def glm4_chat_format(messages: list[Message], add_generation_prompt: bool = True) -> str:
    """The GLM-4 chat layout, used when the checkpoint ships no template (or jinja2 is absent)."""
    text = "[gMASK]<sop>"
    for m in messages:
        text += f"<|{m['role']}|>\n{m['content']}"
    if add_generation_prompt:
        text += "<|assistant|>"
    return text


class Tokenizer:
    """tokenizer.json (+ tokenizer_config.json / chat_template.jinja) of a checkpoint directory."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"model directory {str(path)!r} has no tokenizer.json")
        self._tok = HFTokenizer.from_file(str(file))
        cfg_file = path / "tokenizer_config.json"
        self.config: dict = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        template = self.config.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        jinja_file = path / "chat_template.jinja"
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text()
        self.chat_template: str | None = template
        self._compiled = None
        added = self._tok.get_added_tokens_decoder().items()
        self.special_ids = {i for i, t in added if t.special}
        self._kept_ids = {i for i, t in added if t.special and t.content in (THINK_START, THINK_END)}

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        if skip_special_tokens and self._kept_ids and not self._kept_ids.isdisjoint(ids):
            # NOTE: <think> and </think> show even where they are special tokens: without them a reasoning
            # checkpoint's thinking could not be told from its answer
            ids = [i for i in ids if i in self._kept_ids or i not in self.special_ids]
            return self._tok.decode(ids, skip_special_tokens=False)
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def _special(self, name: str) -> str | None:
        v = self.config.get(name)
        return v.get("content") if isinstance(v, dict) else v

    def apply_chat_template(
        self,
        messages: list[Message],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """Render chat messages ({"role", "content"}, and what else the template reads) with the checkpoint's
        template; `tools`, when given, as its `tools` variable (transformers' convention)."""
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError("each chat message must be a dict with 'role' and 'content'")
        if self.chat_template is None:
            return glm4_chat_format(messages, add_generation_prompt)
        if self._compiled is None:
            try:
                from jinja2.sandbox import ImmutableSandboxedEnvironment
            except ImportError:
                log.warning("jinja2 is not installed; using the built-in GLM-4 chat format")
                return glm4_chat_format(messages, add_generation_prompt)

            def raise_exception(msg: str):
                raise ValueError(msg)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(
                x, ensure_ascii=False, indent=indent
            )
            env.globals["raise_exception"] = raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._compiled = env.from_string(self.chat_template)
        more = {} if tools is None else {"tools": tools}  # unset, as before, for every request without tools
        return self._compiled.render(
            **more,
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self._special("bos_token") or "",
            eos_token=self._special("eos_token") or "",
        )

    def encode_chat(self, messages: list[Message] | Chat) -> list[int]:
        # the template writes [gMASK]<sop> itself
        if isinstance(messages, Chat):
            text = self.apply_chat_template(messages.messages, tools=messages.tools) + messages.reply_start
            return self.encode(text, add_special_tokens=False)
        return self.encode(self.apply_chat_template(messages), add_special_tokens=False)


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a UTF-8 character.

    Decodes a short window of tokens twice (up to the last emitted token, and with the new ones)
    and emits the difference once it no longer ends in U+FFFD (a byte sequence still incomplete),
    the prefix/read offsets scheme of vLLM and TGI, so each step costs O(window), not O(length)."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        dec = self.tokenizer.decode
        prefix = dec(self.ids[self.prefix_offset : self.read_offset], self.skip_special_tokens)
        full = dec(self.ids[self.prefix_offset :], self.skip_special_tokens)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is left undecoded at the end (possibly with U+FFFD for truly broken bytes)."""
        prefix = self.tokenizer.decode(
            self.ids[self.prefix_offset : self.read_offset], self.skip_special_tokens
        )
        full = self.tokenizer.decode(self.ids[self.prefix_offset :], self.skip_special_tokens)
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""
