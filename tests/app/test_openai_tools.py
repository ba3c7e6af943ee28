"""Tool calling on /v1/chat/completions with real engines on tiny GLM-4 checkpoints whose greedy reply is known
(tests/inference/conftest.py) and whose chat template renders tools the GLM way (ours, tests/inference/test_tools):
a reply that is a call comes back as `tool_calls` (streamed as tool-call deltas, the name never as text), plain
text and a malformed call as content; the result sent back goes into the prompt; the `openai` client reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.tokenizer import Tokenizer
from tests.app.ask_support import ask_client, build_world, live_world, sdk
from tests.inference.conftest import build_scripted_checkpoint
from tests.inference.test_tools import GLM_WAY

CALL = ["get_weather", "\n", '{"city":', ' "Paris"}']
ARGUMENTS = '{"city": "Paris"}'
TEXT = ["get", " ready:", " it", " rains", " in", " Paris."]  # starts like get_weather: held, then shown
BROKEN = ["get_weather", "\n", '{"city":', " Paris}"]  # not JSON
TWICE = [*CALL, "get_time\n", "{}"]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
QUESTION = {"role": "user", "content": "Weather in Paris?"}
RESULT = '{"temp": 21, "sky": "rain"}'


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tools")
    scripts = {"glm-call": CALL, "glm-text": TEXT, "glm-broken": BROKEN, "glm-twice": TWICE}
    return {name: build_scripted_checkpoint(root / name, pieces, GLM_WAY) for name, pieces in scripts.items()}


def _client(monkeypatch, tmp_path, model: Path):
    return ask_client(monkeypatch, tmp_path, AUTOGLM_MODEL_PATH=str(model), AUTOGLM_KV_CACHE_MEMORY_MB="32",
                      AUTOGLM_ANSWER_MAX_TOKENS="16")  # fmt: skip


def _chunks(body: str) -> list[dict]:
    lines = [x.removeprefix("data: ") for x in body.split("\n\n") if x.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines[-1]
    return [json.loads(x) for x in lines[:-1]]


def _ask(client, headers, model: str, **more) -> tuple[dict, list[dict]]:
    """(the JSON reply, the streamed chunks) of the same request."""
    body = {"model": model, "messages": [QUESTION], "tools": [WEATHER, TIME], **more}
    r = client.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    s = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers)
    assert s.status_code == 200, s.text
    return r.json(), _chunks(s.text)


def test_a_call_comes_back_as_tool_calls(monkeypatch, tmp_path, checkpoints):
    with _client(monkeypatch, tmp_path, checkpoints["glm-call"]) as client:
        w = build_world(client)
        r, chunks = _ask(client, w.member, "glm-call")
        choice = r["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        msg = choice["message"]
        assert msg["content"] is None and msg["role"] == "assistant"
        [call] = msg["tool_calls"]
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"] == {"name": "get_weather", "arguments": ARGUMENTS}
        assert r["usage"]["completion_tokens"] == len(CALL) + 1  # and the end of text

        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert deltas[0] == {"role": "assistant", "content": ""}
        assert not any(d.get("content") for d in deltas)  # the name never streams as text
        calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
        sid = calls[0][0]["id"]
        assert calls == [
            [
                {
                    "index": 0,
                    "id": sid,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
            [{"index": 0, "function": {"arguments": ARGUMENTS}}],
        ]
        assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + [
            "tool_calls"
        ]

        # a function the request did not offer is text, as the model wrote it
        r, chunks = _ask(client, w.member, "glm-call", tools=[TIME])
        assert r["choices"][0]["message"] == {"role": "assistant", "content": "".join(CALL)}
        assert r["choices"][0]["finish_reason"] == "stop"
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "".join(CALL)

        # tool_choice naming the function: the prompt writes its name, the model only its arguments
        named = {"type": "function", "function": {"name": "get_weather"}}
        for choice_ in (named, "required"):
            tools = [WEATHER] if choice_ == "required" else [WEATHER, TIME]
            r, chunks = _ask(client, w.member, "glm-call", tools=tools, tool_choice=choice_)
            assert r["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                                               "arguments": ARGUMENTS}  # fmt: skip
            assert r["usage"]["completion_tokens"] == 3  # the arguments' two tokens and the end
        # "none": no tools in the prompt, the reply is text
        r, _ = _ask(client, w.member, "glm-call", tool_choice="none")
        assert (
            r["choices"][0]["message"]["content"] == "".join(CALL)
            and "tool_calls" not in r["choices"][0]["message"]
        )


@pytest.mark.parametrize("model", ["glm-text", "glm-broken"])
def test_text_and_a_malformed_call_are_content(monkeypatch, tmp_path, checkpoints, model):
    pieces = TEXT if model == "glm-text" else BROKEN
    with _client(monkeypatch, tmp_path, checkpoints[model]) as client:
        w = build_world(client)
        r, chunks = _ask(client, w.member, model)
        assert r["choices"][0]["message"] == {"role": "assistant", "content": "".join(pieces)}
        assert r["choices"][0]["finish_reason"] == "stop"
        said = [
            c["choices"][0]["delta"]["content"] for c in chunks if c["choices"][0]["delta"].get("content")
        ]
        if model == "glm-text":  # "get" waited for " ready:", then the rest streamed as it came
            assert said == ["get ready:", *TEXT[2:]]
        else:  # held to the end, where it proved no call
            assert said == ["".join(BROKEN)]
        assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_two_calls_in_one_reply(monkeypatch, tmp_path, checkpoints):
    with _client(monkeypatch, tmp_path, checkpoints["glm-twice"]) as client:
        w = build_world(client)
        r, chunks = _ask(client, w.member, "glm-twice")
        calls = r["choices"][0]["message"]["tool_calls"]
        assert [c["function"] for c in calls] == [{"name": "get_weather", "arguments": ARGUMENTS},
                                                  {"name": "get_time", "arguments": "{}"}]  # fmt: skip
        assert len({c["id"] for c in calls}) == 2
        streamed = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", [])]
        assert [t["index"] for t in streamed] == [0, 0, 1, 1]
        assert [t["function"].get("name") for t in streamed] == ["get_weather", None, "get_time", None]


def _expected_prompt(result: str, system: str = "") -> str:
    """The second turn's prompt under GLM_WAY: the tools, the question, the call, its result."""
    tools = "".join(f"\n## {t['function']['name']}\n{json.dumps(t['function'])}" for t in (WEATHER, TIME))
    sys = f"<|system|>\n{system}" if system else ""
    return (f"[gMASK]<sop><|system|>\nTools you may call:{tools}Call one as its name on a line, then its arguments "
            f"in JSON.{sys}<|user|>\nWeather in Paris?<|assistant|>get_weather\n{ARGUMENTS}<|observation|>\n{result}"
            "<|assistant|>")  # fmt: skip


def test_the_result_goes_back_into_the_prompt(monkeypatch, tmp_path, checkpoints):
    tok = Tokenizer(checkpoints["glm-text"])
    with _client(monkeypatch, tmp_path, checkpoints["glm-text"]) as client:
        w = build_world(client)
        call = {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ARGUMENTS},
        }
        for result in (RESULT, RESULT + " " + "and a long forecast of rain and wind for the week " * 3):
            msgs = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call_abc", "content": result}]  # fmt: skip
            body = {"model": "glm-text", "messages": msgs, "tools": [WEATHER, TIME]}
            r = client.post("/v1/chat/completions", json=body, headers=w.member).json()
            assert r["choices"][0]["message"]["content"] == "".join(TEXT)
            expected = tok.encode(_expected_prompt(result), add_special_tokens=False)
            assert r["usage"]["prompt_tokens"] == len(expected), _expected_prompt(result)
        # the deprecated shapes: functions, an assistant's function_call, a `function` result
        msgs = [QUESTION, {"role": "assistant", "content": None, "function_call": call["function"]},
                {"role": "function", "name": "get_weather", "content": RESULT}]  # fmt: skip
        body = {"model": "glm-text", "messages": msgs, "functions": [WEATHER["function"], TIME["function"]]}
        r = client.post("/v1/chat/completions", json=body, headers=w.member).json()
        assert r["usage"]["prompt_tokens"] == len(
            tok.encode(_expected_prompt(RESULT), add_special_tokens=False)
        )


def test_functions_get_a_function_call(monkeypatch, tmp_path, checkpoints):
    with _client(monkeypatch, tmp_path, checkpoints["glm-call"]) as client:
        w = build_world(client)
        body = {"model": "glm-call", "messages": [QUESTION], "functions": [WEATHER["function"]]}
        r = client.post("/v1/chat/completions", json=body, headers=w.member).json()
        assert r["choices"][0]["finish_reason"] == "function_call"
        assert r["choices"][0]["message"] == {"role": "assistant", "content": None,
                                              "function_call": {"name": "get_weather", "arguments": ARGUMENTS}}  # fmt: skip
        chunks = _chunks(
            client.post("/v1/chat/completions", json={**body, "stream": True}, headers=w.member).text
        )
        assert [c["choices"][0]["delta"]["function_call"] for c in chunks if "function_call" in
                c["choices"][0]["delta"]] == [{"name": "get_weather", "arguments": ""}, {"arguments": ARGUMENTS}]  # fmt: skip
        assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


@pytest.mark.parametrize(
    ("extra", "param", "code", "message"),
    [
        ({"tool_choice": "required"}, "tool_choice", "unsupported_parameter", "tool_choice 'required' with several "
         "tools is not supported: this server cannot make the model pick one; name the function, or send 'auto'."),
        ({"tool_choice": {"type": "function", "function": {"name": "get_news"}}}, "tool_choice", "invalid_request",
         "tool_choice: there is no function 'get_news' in tools."),
        ({"tools": [{"type": "retrieval"}]}, "tools", "unsupported_parameter",
         "tools.0.type: only 'function' tools are supported."),
        ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools", "invalid_request",
         "tools.0: a function needs a name of 1 to 64 letters, digits, '_' or '-'."),
        ({"functions": [WEATHER["function"]]}, "functions", "invalid_request", "Send tools or functions, not both."),
        ({"model": "rag:handbook"}, "tools", "unsupported_parameter", "Tool calling is not supported by rag: models: "
         "they answer from a collection's documents. Send tools to the model `glm-call`, or none."),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_refused_by_name(
    monkeypatch, tmp_path, checkpoints, extra, param, code, message
):
    with _client(monkeypatch, tmp_path, checkpoints["glm-call"]) as client:
        w = build_world(client)
        body = {"model": "glm-call", "messages": [QUESTION], "tools": [WEATHER, TIME], **extra}
        r = client.post("/v1/chat/completions", json=body, headers=w.member)
        assert r.status_code == 400
        assert r.json()["error"] == {"message": message, "type": "invalid_request_error", "param": param,
                                     "code": code}  # fmt: skip


def test_the_openai_client_calls_a_tool_and_sends_the_result_back(tmp_path, checkpoints):
    pytest.importorskip("openai")
    tok = Tokenizer(checkpoints["glm-call"])
    with live_world(tmp_path, AUTOGLM_MODEL_PATH=str(checkpoints["glm-call"]), AUTOGLM_KV_CACHE_MEMORY_MB="32",
                    AUTOGLM_ANSWER_MAX_TOKENS="16") as (server, w):  # fmt: skip
        c = sdk(server, w.member)
        msgs = [{"role": "system", "content": "Be brief."}, QUESTION]
        r = c.chat.completions.create(model="glm-call", messages=msgs, tools=[WEATHER, TIME], temperature=0)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        [call] = choice.message.tool_calls
        assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})

        # the streaming helper puts the deltas together into the same call
        with c.chat.completions.stream(model="glm-call", messages=msgs, tools=[WEATHER, TIME]) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].finish_reason == "tool_calls"
        assert [(t.function.name, t.function.arguments) for t in final.choices[0].message.tool_calls] == [
            ("get_weather", ARGUMENTS)
        ]

        # the second turn: the reply's message as the SDK gives it back, then the result
        msgs += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": RESULT}]  # fmt: skip
        again = c.chat.completions.create(
            model="glm-call", messages=msgs, tools=[WEATHER, TIME], temperature=0
        )
        expected = tok.encode(_expected_prompt(RESULT, "Be brief."), add_special_tokens=False)
        assert again.usage.prompt_tokens == len(expected)


def test_a_reasoning_checkpoint_thinks_then_calls(monkeypatch, tmp_path_factory):
    # GLM-Z1's way: the generation prompt opens <think>; the call is what follows the reasoning
    opened = GLM_WAY.replace("<|assistant|>{% endif %}", "<|assistant|>\n<think>{% endif %}")
    thought = ["Paris", " needs", " a", " forecast."]
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("z1") / "z1-tools", [*thought, "</think>", *CALL],
                                      opened, "<think>")  # fmt: skip
    with _client(monkeypatch, tmp_path_factory.mktemp("z1-run"), model) as client:
        w = build_world(client)
        r, chunks = _ask(client, w.member, "z1-tools")
        msg = r["choices"][0]["message"]
        assert (msg["content"], msg["reasoning_content"]) == (None, "".join(thought))
        assert msg["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ARGUMENTS}
        assert r["choices"][0]["finish_reason"] == "tool_calls"
        deltas = [c["choices"][0]["delta"] for c in chunks]
        assert "".join(d.get("reasoning_content", "") for d in deltas) == "".join(thought)
        assert not any(d.get("content") for d in deltas)
        assert [t["function"] for d in deltas for t in d.get("tool_calls", [])] == [
            {"name": "get_weather", "arguments": ""}, {"arguments": ARGUMENTS}]  # fmt: skip
        # naming the function would write it where the model is still to think: refused, by name
        named = {"type": "function", "function": {"name": "get_weather"}}
        body = {"model": "z1-tools", "messages": [QUESTION], "tools": [WEATHER], "tool_choice": named}
        got = client.post("/v1/chat/completions", json=body, headers=w.member)
        assert got.status_code == 400 and got.json()["error"]["param"] == "tool_choice"
