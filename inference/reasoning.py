"""Reasoning checkpoints (GLM-Z1): output that thinks between <think> and </think> before it answers.

What a checkpoint does is read from its tokenizer files, not its name: a chat template that writes or strips
a <think> block (GLM-Z1's keeps only `content.split('</think>')[-1]` of earlier turns), or <think> and
</think> as tokens of their own, mark a reasoning checkpoint; a generation prompt that already ends in
<think> (GLM-Z1's `<|assistant|>\\n<think>`) means the output starts inside the reasoning and shows only
</think>. `ReasoningSplitter` then cuts the streamed text into reasoning and answer. Pure text: the callers
(the API) decide what to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .tokenizer import THINK_END, THINK_START, Tokenizer


@dataclass(frozen=True)
class ReasoningFormat:
    """How a checkpoint's output carries its reasoning. `opened`: the generation prompt ends inside the
    reasoning block, so the output starts with the reasoning and only closes it."""

    start: str = THINK_START
    end: str = THINK_END
    opened: bool = False

    @classmethod
    def detect(cls, tokenizer: Tokenizer) -> ReasoningFormat | None:
        """The checkpoint's format, or None when it does not reason (its output is all answer)."""
        template = tokenizer.chat_template or ""
        tokens = all(tokenizer.token_to_id(t) is not None for t in (THINK_START, THINK_END))
        if THINK_START not in template and THINK_END not in template and not tokens:
            return None
        try:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": "?"}])
        except Exception:  # a template that wants more than one user message: assume it does not open
            prompt = ""
        return cls(opened=prompt.rstrip().endswith(THINK_START))

    def answer_of(self, text: str) -> str:
        """An earlier answer without its reasoning (what goes back into a prompt): the text after the last
        end marker, or the text itself when it has none."""
        return text.rsplit(self.end, 1)[-1].strip() if self.end in text else text


@dataclass
class ReasoningSplitter:
    """Feeds on streamed text deltas and hands back (reasoning, answer) deltas.

    Marker text that may still be completed by the next delta ("</thi") is held back, and so is whitespace
    that may turn out to be the end of the reasoning or the start of the answer: the deltas of each part
    add up to the part with the whitespace around it stripped (and the answer's end kept as written)."""

    fmt: ReasoningFormat
    state: str = field(init=False)  # "start": not known yet; "reasoning"; "answer"
    reasoned: bool = field(init=False, default=False)  # a reasoning block was opened
    _held: str = field(init=False, default="")
    _lead: bool = field(init=False, default=True)  # the current part has shown nothing yet

    def __post_init__(self) -> None:
        self.state = "reasoning" if self.fmt.opened else "start"
        self.reasoned = self.fmt.opened

    @property
    def finished(self) -> bool:
        """Whether the output got past its reasoning (or had none)."""
        return self.state != "reasoning"

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning delta, answer delta) of the next piece of output."""
        reasoning, answer = "", ""
        buf, self._held = self._held + text, ""
        if self.state == "start":
            head = buf.lstrip()
            if head.startswith(self.fmt.start):
                self.state, self.reasoned, buf = "reasoning", True, head[len(self.fmt.start) :]
            elif self.fmt.start.startswith(head):  # empty, or a marker in the making: wait
                self._held = buf
                return "", ""
            else:
                self.state = "answer"
        if self.state == "reasoning":
            at = buf.find(self.fmt.end)
            if at < 0:
                keep = _partial_suffix(buf, self.fmt.end)
                body, tail = buf[: len(buf) - keep], buf[len(buf) - keep :]
                shown = body.rstrip()
                reasoning, self._held = self._show(shown), body[len(shown) :] + tail
                return reasoning, ""
            reasoning = self._show(buf[:at].rstrip())
            self.state, self._lead, buf = "answer", True, buf[at + len(self.fmt.end) :]
        if self.reasoned:  # the answer after a reasoning block starts at its first non-blank character
            answer = self._show(buf)
        else:
            answer = buf
        return reasoning, answer

    def _show(self, text: str) -> str:
        if self._lead:
            text = text.lstrip()
            self._lead = not text
        return text

    def flush(self) -> tuple[str, str]:
        """What was held back, at the end of the output: an unfinished reasoning's last words, or a start that
        never became a marker (answer text)."""
        held, self._held = self._held, ""
        if self.state == "reasoning":
            return self._show(held.rstrip()), ""
        return "", (held if self.state == "start" else "")


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that begins `marker` (a marker that the next delta may complete)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0
