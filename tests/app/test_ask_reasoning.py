"""A reasoning checkpoint (GLM-Z1: it thinks between <think> and </think>, then answers) through the API: tiny
real GLM-4 checkpoints whose greedy output is known in advance (tests/inference/conftest.py), one whose chat
template opens <think> itself (the output starts inside the reasoning) and one whose output opens it. The answer
shown, stored and cited is the text after the reasoning; the reasoning streams apart (/api/ask `reasoning`
events, /v1 `reasoning_content`); a budget spent inside the reasoning gets a plain message, not half a
thought; earlier answers go back into the prompt without their reasoning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.answer import REASONING_CUT
from inference.tokenizer import Tokenizer
from tests.app.ask_support import ask_client, build_world, live_world, parse_sse, sdk
from tests.inference.conftest import CHAT_TEMPLATE, build_scripted_checkpoint
from tests.inference.test_reasoning import CLOSED

# the template opens the reasoning block in its generation prompt (and, unlike GLM-Z1's, leaves earlier
# answers as they are: what goes back into a prompt is then the API's doing)
OPENED = CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|>\n<think>{% endif %}")
# the reasoning cites a source too: only the answer's citations count
THOUGHT = ["Source", " [2]", " covers", " carry-over;", " source", " 1", " the", " yearly", " leave"]
ANSWER = ["Employees", " get", " twenty-eight", " days", " a", " year", " 【1】", "."]
REASONING, TEXT = "".join(THOUGHT), "".join(ANSWER)
OUTPUT_TOKENS = len(THOUGHT) + 2 + len(ANSWER)  # "</think>", "\n\n"
QUESTION = "How many days of paid leave do employees get?"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reasoning")
    return {
        "opened": build_scripted_checkpoint(
            root / "z1-opened", [*THOUGHT, "</think>", "\n\n", *ANSWER], OPENED, "<think>"
        ),
        "closed": build_scripted_checkpoint(
            root / "z1-closed", ["<think>", *THOUGHT, "</think>", "\n\n", *ANSWER], CLOSED
        ),
    }


def _client(monkeypatch, tmp_path, model: Path, answer: int, reasoning: int):
    return ask_client(monkeypatch, tmp_path, AUTOGLM_MODEL_PATH=str(model), AUTOGLM_KV_CACHE_MEMORY_MB="32",
                      AUTOGLM_ANSWER_MAX_TOKENS=str(answer), AUTOGLM_REASONING_MAX_TOKENS=str(reasoning))  # fmt: skip


def _v1_chunks(body: str) -> list[dict]:
    lines = [x.removeprefix("data: ") for x in body.split("\n\n") if x.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines[-1]
    return [json.loads(x) for x in lines[:-1]]


@pytest.mark.parametrize("shape", ["opened", "closed"])
def test_the_answer_is_the_text_after_the_reasoning(monkeypatch, tmp_path, checkpoints, shape):
    # 8 answer tokens could not hold the reasoning too: the reasoning budget leaves it room
    with _client(monkeypatch, tmp_path, checkpoints[shape], answer=8, reasoning=16) as client:
        w = build_world(client)
        events = parse_sse(client.post("/api/ask", json={"question": QUESTION, "stream": True},
                                       headers=w.member).text)  # fmt: skip
        names = [e for e, _ in events]
        assert names == ["sources", *["reasoning"] * len(THOUGHT), *["token"] * len(ANSWER), "done"], names
        assert [d["text"] for e, d in events if e == "reasoning"] == THOUGHT
        assert [d["text"] for e, d in events if e == "token"] == ANSWER  # the blank after </think> dropped
        done = events[-1][1]
        # the reasoning's [2] cites nothing: sources [1] Vacation policy, [2] Carry-over
        assert done["cited"] == [1] and [s["cited"] for s in done["sources"]] == [True, False]
        assert done["reasoning"] == REASONING and "reasoning_unfinished" not in done
        # every token: the reasoning's, <think> where the model wrote it, the end of text
        assert done["usage"]["completion_tokens"] == OUTPUT_TOKENS + (shape == "closed") + 1
        # the reasoning's: its markers and what is between them
        assert done["usage"]["reasoning_tokens"] == len(THOUGHT) + 1 + (shape == "closed")
        stored = client.get(f"/api/conversations/{done['conversation_id']}", headers=w.member).json()
        answer = stored["messages"][1]
        assert answer["content"] == TEXT and answer["meta"]["reasoning"] == REASONING
        assert answer["meta"]["cited"] == [1]

        got = client.post("/api/ask", json={"question": QUESTION}, headers=w.member).json()
        assert (got["answer"], got["reasoning"], got["cited"]) == (TEXT, REASONING, [1])

        # a follow-up: the earlier answer goes back into the prompt as it was stored, without its reasoning
        follow = {"question": "And the carry-over?", "conversation_id": done["conversation_id"]}
        got = client.post("/api/ask", json=follow, headers=w.member).json()
        assert got["answer"] == TEXT
        stored = client.get(f"/api/conversations/{done['conversation_id']}", headers=w.member).json()
        assert [m["content"] for m in stored["messages"]] == [QUESTION, TEXT, follow["question"], TEXT]


def test_a_budget_spent_reasoning_gets_a_message_not_half_a_thought(monkeypatch, tmp_path, checkpoints):
    with _client(monkeypatch, tmp_path, checkpoints["opened"], answer=2, reasoning=2) as client:
        w = build_world(client)
        events = parse_sse(client.post("/api/ask", json={"question": QUESTION, "stream": True},
                                       headers=w.member).text)  # fmt: skip
        assert [e for e, _ in events] == ["sources", *["reasoning"] * 4, "token", "done"]
        assert events[-2][1]["text"] == REASONING_CUT
        done = events[-1][1]
        assert done["reasoning"] == "".join(THOUGHT[:4]) and done["reasoning_unfinished"] is True
        assert done["cited"] == [] and done["usage"]["completion_tokens"] == 4
        assert done["usage"]["reasoning_tokens"] == 4
        stored = client.get(f"/api/conversations/{done['conversation_id']}", headers=w.member).json()
        assert stored["messages"][1]["content"] == REASONING_CUT
        # the note is not the model's words: a follow-up's prompt holds the earlier question, not the note
        follow = {"question": QUESTION, "conversation_id": done["conversation_id"]}
        again = client.post("/api/ask", json=follow, headers=w.member).json()
        assert again["answer"] == REASONING_CUT
        earlier = again["usage"]["prompt_tokens"] - done["usage"]["prompt_tokens"]
        note = len(Tokenizer(checkpoints["opened"]).encode(REASONING_CUT, add_special_tokens=False))
        assert 0 < earlier < note, (earlier, note)

        # /v1: the thinking so far as reasoning_content, no content, finish_reason "length"
        chat = {"model": "z1-opened", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 3}
        r = client.post("/v1/chat/completions", json=chat, headers=w.member).json()
        assert r["choices"][0]["message"] == {"role": "assistant", "content": "", "reasoning_content":
                                              "Source [2] covers"}  # fmt: skip
        assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 3
        assert r["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_v1_chat_puts_the_reasoning_in_reasoning_content(monkeypatch, tmp_path, checkpoints):
    with _client(monkeypatch, tmp_path, checkpoints["opened"], answer=8, reasoning=16) as client:
        w = build_world(client)
        for model in ("z1-opened", "rag:handbook"):
            chat = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
            r = client.post("/v1/chat/completions", json=chat, headers=w.member).json()
            msg = r["choices"][0]["message"]
            assert (msg["content"], msg["reasoning_content"]) == (TEXT, REASONING), model
            assert r["choices"][0]["finish_reason"] == "stop"
            assert r["usage"]["completion_tokens"] == OUTPUT_TOKENS + 1
            assert r["usage"]["completion_tokens_details"] == {"reasoning_tokens": len(THOUGHT) + 1}
            if model.startswith("rag:"):
                assert r["cited"] == [1]
            stream = {**chat, "stream": True, "stream_options": {"include_usage": True}}
            chunks = _v1_chunks(client.post("/v1/chat/completions", json=stream, headers=w.member).text)
            deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
            assert [d["reasoning_content"] for d in deltas if "reasoning_content" in d] == THOUGHT
            assert "".join(d.get("content", "") for d in deltas) == TEXT
            assert not any("content" in d and "reasoning_content" in d for d in deltas)
            assert chunks[-1]["usage"]["completion_tokens"] == OUTPUT_TOKENS + 1
            assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": len(THOUGHT) + 1}
        # text completions stay raw: the generator's continuation, reasoning markers and all
        raw = {
            "model": "z1-opened",
            "prompt": f"<|user|>\n{QUESTION}<|assistant|>\n<think>",
            "max_tokens": 32,
        }
        r = client.post("/v1/completions", json=raw, headers=w.member).json()
        assert r["choices"][0]["text"] == f"{REASONING}</think>\n\n{TEXT}"
        assert r["usage"]["completion_tokens"] == OUTPUT_TOKENS + 1
        assert "completion_tokens_details" not in r["usage"]  # raw: no reasoning told apart


def test_earlier_answers_go_back_without_their_reasoning(monkeypatch, tmp_path, checkpoints):
    with _client(monkeypatch, tmp_path, checkpoints["opened"], answer=8, reasoning=16) as client:
        w = build_world(client)

        def prompt_tokens(earlier: str) -> int:
            msgs = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": earlier},
                    {"role": "user", "content": QUESTION}]  # fmt: skip
            r = client.post("/v1/chat/completions", json={"model": "z1-opened", "messages": msgs, "max_tokens": 1},
                            headers=w.member)  # fmt: skip
            return r.json()["usage"]["prompt_tokens"]

        bare = prompt_tokens("Employees get twenty-eight days.")
        assert prompt_tokens("<think>Source [2] covers carry-over; source 1</think>\n\nEmployees get twenty-eight "
                             "days.") == bare  # fmt: skip
        assert prompt_tokens("Employees get twenty-eight days, you know.") > bare


def test_the_openai_client_reads_reasoning_content(tmp_path, checkpoints):
    openai = pytest.importorskip("openai")
    assert openai
    with live_world(tmp_path, AUTOGLM_MODEL_PATH=str(checkpoints["closed"]), AUTOGLM_KV_CACHE_MEMORY_MB="32",
                    AUTOGLM_ANSWER_MAX_TOKENS="8", AUTOGLM_REASONING_MAX_TOKENS="16") as (server, w):  # fmt: skip
        c = sdk(server, w.member)
        msgs = [{"role": "user", "content": QUESTION}]
        r = c.chat.completions.create(model="z1-closed", messages=msgs, temperature=0)
        assert r.choices[0].message.content == TEXT
        assert r.choices[0].message.model_extra["reasoning_content"] == REASONING
        assert r.usage.completion_tokens == OUTPUT_TOKENS + 2  # <think> too
        assert r.usage.completion_tokens_details.reasoning_tokens == len(THOUGHT) + 2
        thought, said, usage = [], [], None
        for chunk in c.chat.completions.create(model="rag:handbook", messages=msgs, stream=True,
                                               stream_options={"include_usage": True}):  # fmt: skip
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                thought.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
                said.append(choice.delta.content or "")
        assert ("".join(thought), "".join(said)) == (REASONING, TEXT)
        assert usage.completion_tokens == OUTPUT_TOKENS + 2
