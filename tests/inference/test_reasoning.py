"""Reasoning checkpoints (GLM-Z1): which checkpoints reason, read from their tokenizer files, and the split of
their streamed output into reasoning and answer, whatever the deltas' boundaries."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inference import Engine, ReasoningFormat, ReasoningSplitter, SamplingParams
from inference.tokenizer import Tokenizer
from tests.inference.conftest import CHAT_TEMPLATE, build_scripted_checkpoint

# GLM-Z1's layout: an earlier answer goes back as the text after its </think>; the generation prompt opens the
# reasoning block, so the output starts inside it (OPENED), or leaves that to the model (CLOSED)
Z1_TURNS = (
    "[gMASK]<sop>{% for m in messages %}{% if m['role'] == 'assistant' %}<|assistant|>\n"
    "{{ m['content'].split('</think>')[-1].strip() }}{% else %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endif %}"
    "{% endfor %}"
)
OPENED = Z1_TURNS + "{% if add_generation_prompt %}<|assistant|>\n<think>{% endif %}"
CLOSED = Z1_TURNS + "{% if add_generation_prompt %}<|assistant|>{% endif %}"
THOUGHT = ["Source", " [2]", " covers", " carry-over;"]
ANSWER = ["Employees", " get", " 28", " days", " 【1】", "."]


def split_all(fmt: ReasoningFormat, deltas: list[str]) -> tuple[str, str, bool]:
    s = ReasoningSplitter(fmt)
    got = [s.feed(d) for d in deltas] + [s.flush()]
    return "".join(r for r, _ in got), "".join(a for _, a in got), s.finished


OUTPUTS = {
    # (format opened?, output) -> (reasoning, answer, finished)
    (False, "<think>\nLet me see [2].\n</think>\n\nIt is 28 days 【1】."): (
        "Let me see [2].",
        "It is 28 days 【1】.",
        True,
    ),
    (True, "\nLet me see [2].\n</think>\n\nIt is 28 days 【1】.\n"): (
        "Let me see [2].",
        "It is 28 days 【1】.\n",
        True,
    ),
    (True, "Let me see [2]. Then </thin"): ("Let me see [2]. Then </thin", "", False),
    (False, "  It is 28 days <think> [1]."): ("", "  It is 28 days <think> [1].", True),
    (False, "<thi"): ("", "<thi", True),
    (False, "<think>a</think>"): ("a", "", True),
}


@pytest.mark.parametrize(("opened", "text"), list(OUTPUTS))
def test_the_split_does_not_depend_on_where_deltas_break(opened, text):
    fmt = ReasoningFormat(opened=opened)
    want = OUTPUTS[(opened, text)]
    assert split_all(fmt, [text]) == want
    assert split_all(fmt, list(text)) == want  # a character at a time: markers and blanks cut anywhere
    for cut in range(1, len(text)):
        assert split_all(fmt, [text[:cut], text[cut:]]) == want, cut


def test_reasoning_deltas_stream_before_the_end_marker():
    s = ReasoningSplitter(ReasoningFormat(opened=True))
    assert s.feed("Let me ") == ("Let me", "")  # the blank waits: it may end the reasoning
    assert s.feed("see.</") == (" see.", "")  # "</" may begin </think>
    assert not s.finished
    assert s.feed("think>\n\nIt") == ("", "It")
    assert s.finished and s.reasoned


def test_an_earlier_answer_loses_its_reasoning():
    fmt = ReasoningFormat()
    assert fmt.answer_of("<think>x [2]</think>\n\nIt is 28 days 【1】.") == "It is 28 days 【1】."
    assert fmt.answer_of("It is 28 days.") == "It is 28 days."


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reasoning")
    return {
        "plain": build_scripted_checkpoint(root / "plain", ANSWER),
        "closed": build_scripted_checkpoint(
            root / "closed", ["<think>", *THOUGHT, "</think>", *ANSWER], CLOSED
        ),
        "opened": build_scripted_checkpoint(
            root / "opened", [*THOUGHT, "</think>", *ANSWER], OPENED, "<think>"
        ),
        # <think> and </think> as special tokens of their own, which decoding would skip
        "special": build_scripted_checkpoint(
            root / "special", [*THOUGHT, "</think>", *ANSWER], OPENED, "<think>", ("<think>", "</think>")
        ),
    }


def test_the_tokenizer_files_say_whether_a_checkpoint_reasons(checkpoints):
    assert ReasoningFormat.detect(Tokenizer(checkpoints["plain"])) is None
    assert ReasoningFormat.detect(Tokenizer(checkpoints["closed"])) == ReasoningFormat(opened=False)
    assert ReasoningFormat.detect(Tokenizer(checkpoints["opened"])) == ReasoningFormat(opened=True)
    assert ReasoningFormat.detect(Tokenizer(checkpoints["special"])) == ReasoningFormat(opened=True)
    assert "<think>" not in CHAT_TEMPLATE


@pytest.mark.parametrize("name", ["closed", "opened", "special"])
def test_the_engine_output_splits_into_reasoning_and_answer(checkpoints, name):
    tok = Tokenizer(checkpoints[name])
    fmt = ReasoningFormat.detect(tok)
    eng = Engine.from_pretrained(checkpoints[name], device="cpu", dtype="float32", kv_cache_memory=2**22)
    try:
        [c] = eng.generate([[{"role": "user", "content": "How many days?"}]], SamplingParams(max_tokens=32))
    finally:
        eng.close()
    # the special markers are decoded too: without them the reasoning could not be told from the answer
    assert "</think>" in c.text
    assert split_all(fmt, [c.text]) == ("Source [2] covers carry-over;", "Employees get 28 days 【1】.", True)


def test_chat_sends_earlier_answers_back_without_their_reasoning(tmp_path, capsys, monkeypatch):
    from tests.inference.test_cli import run

    # a template that opens <think> but, unlike GLM-Z1's, keeps earlier answers whole: the trim is the CLI's
    template = CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|>\n<think>{% endif %}")
    model = build_scripted_checkpoint(tmp_path / "z1", [*THOUGHT, "</think>", *ANSWER], template, "<think>")
    monkeypatch.setattr("sys.stdin", io.StringIO("How many days?\nAnd next year?\n\n"))
    assert run(["chat", "--model", str(model), "--max-tokens", "32", "--stats"]) == 0
    out, err = capsys.readouterr()
    assert out.count("Source [2] covers carry-over;</think>Employees get 28 days 【1】.") == 2  # shown raw
    second = int(next(x for x in err.splitlines()[::-1] if "prompt (" in x).split(" prompt")[0].strip("["))
    turns = [{"role": "user", "content": "How many days?"}, {"role": "assistant", "content": "".join(ANSWER)},
             {"role": "user", "content": "And next year?"}]  # fmt: skip
    assert second == len(Tokenizer(model).encode_chat(turns))
