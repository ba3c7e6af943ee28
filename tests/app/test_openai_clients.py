"""/v1 as clients nobody here wrote drive it (the official `openai` client, as LangChain's ChatOpenAI,
LlamaIndex and Open WebUI use it), against uvicorn on loopback with the tiny random GLM-4 checkpoint: the
options they send by default, multi-turn messages as content parts, the models list as a menu, 429."""

from __future__ import annotations

import pytest

from app.models import Role
from app.settings import settings
from tests.app.ask_support import glm_checkpoint, live_world, sdk  # noqa: F401
from tests.app.support import make_user

openai = pytest.importorskip("openai")

QUESTION = {"role": "user", "content": "Where is the office?"}
FUNCTION = {
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {}},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory, glm_checkpoint):  # noqa: F811
    with live_world(tmp_path_factory.mktemp("clients"), AUTOGLM_MODEL_PATH=str(glm_checkpoint),
                    AUTOGLM_ANSWER_MAX_TOKENS="16", AUTOGLM_KV_CACHE_MEMORY_MB="32") as got:  # fmt: skip
        yield got


def _said(r) -> tuple[str, str, int, int]:
    """(content, finish_reason, prompt tokens, completion tokens) of a non-streamed completion."""
    return (
        r.choices[0].message.content,
        r.choices[0].finish_reason,
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
    )


def test_options_clients_send_by_default_change_nothing(live):
    # What LangChain / LlamaIndex / Open WebUI put in a plain request: each is honoured (and at these values
    # a no-op) or harmless, so the greedy answer is the bare request's, token for token
    server, w = live
    c = sdk(server, w.member)
    bare = c.chat.completions.create(model="tiny-glm", messages=[QUESTION], temperature=0, max_tokens=8)
    assert bare.choices[0].message.content and bare.choices[0].finish_reason in ("stop", "length")
    full = c.chat.completions.create(
        model="tiny-glm", messages=[QUESTION], temperature=0, max_completion_tokens=8, top_p=1, n=1,
        stop="never-printed", seed=7, user="tool-42", presence_penalty=0, frequency_penalty=0,
        response_format={"type": "text"}, tools=[{"type": "function", "function": FUNCTION}], tool_choice="none",
        functions=[FUNCTION], function_call="none", parallel_tool_calls=False, logprobs=False, modalities=["text"],
        metadata={"run": "nightly"}, store=False,
        extra_body={"an_option_of_another_server": {"nested": [1, 2]}, "top_k": 0, "repetition_penalty": 1},
    )  # fmt: skip
    assert _said(full) == _said(bare)
    assert full.choices[0].message.role == "assistant" and full.choices[0].message.tool_calls is None


def test_top_p_zero_is_greedy(live):
    # OpenAI takes top_p 0 (keep only the likeliest token); it was a 400 "top_p: Input should be greater than 0"
    server, w = live
    c = sdk(server, w.member)
    ask = {"model": "tiny-glm", "messages": [QUESTION], "max_tokens": 12}
    greedy = c.chat.completions.create(**ask, temperature=0).choices[0].message.content
    for _ in range(2):  # at temperature 1 an unseeded draw would differ run to run
        assert c.chat.completions.create(**ask, temperature=1, top_p=0).choices[0].message.content == greedy
    chunks = list(c.chat.completions.create(**ask, temperature=1.5, top_p=0, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == greedy


def test_multi_turn_messages_as_content_parts(live):
    # newer SDKs send content as [{"type": "text", "text": ...}] for every role; the same conversation as
    # strings must give the same prompt and (greedy) the same answer, with the earlier turns read
    server, w = live
    c = sdk(server, w.member)
    turns = [("system", "Answer briefly."), ("user", "Hello, who are you?"), ("assistant", "The office assistant."),
             ("user", "Where is the office?")]  # fmt: skip
    as_text = [{"role": role, "content": text} for role, text in turns]
    as_parts = [{"role": role, "content": [{"type": "text", "text": text}]} for role, text in turns]
    got = [
        _said(c.chat.completions.create(model=m, messages=msgs, temperature=0, max_tokens=6))
        for m in ("tiny-glm", "rag:handbook")
        for msgs in (as_text, as_parts, as_text[-1:])
    ]
    plain, rag = got[:3], got[3:]
    for text, parts, last in (plain, rag):
        assert parts == text
        assert text[2] > last[2] + 10  # the system prompt and the earlier turns are in the prompt
    chunks = list(c.chat.completions.create(model="tiny-glm", messages=as_parts, temperature=0, max_tokens=6,
                                            stream=True))  # fmt: skip
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == plain[0][0]


def test_every_listed_model_answers(live):
    # a client offers the models list as its menu: each id there is a model a completion takes
    server, w = live
    c = sdk(server, w.member)
    models = list(c.models.list())
    assert [m.id for m in models] == ["tiny-glm", "rag:handbook"]
    for m in models:
        assert (m.object, m.owned_by) == ("model", "autoglm") and isinstance(m.created, int)
        r = c.chat.completions.create(model=m.id, messages=[QUESTION], temperature=0, max_tokens=4)
        assert r.model == m.id and r.choices[0].message.content


def test_too_many_questions_is_a_rate_limit_error(live, monkeypatch):
    server, w = live
    c = sdk(server, make_user(Role.member, group_ids=[w.group]))
    monkeypatch.setattr(settings, "ask_rate_per_minute", 1)  # the limiter reads the setting per request
    ask = {"model": "rag:handbook", "messages": [QUESTION], "max_tokens": 4}
    c.chat.completions.create(**ask)
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(**ask, stream=stream)
        assert e.value.code == "rate_limit_exceeded" and e.value.type == "rate_limit_error"
        assert e.value.body["message"].startswith("Too many questions: the limit is 1 per minute")
        assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
    assert [m.id for m in c.models.list()] == ["tiny-glm", "rag:handbook"]  # listing asks nothing
