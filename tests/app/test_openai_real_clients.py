"""/v1 driven by the real third-party libraries that talk to it, not the `openai` SDK standing in for them:
LangChain's ChatOpenAI, LlamaIndex's OpenAILike and litellm, against uvicorn on loopback with a tiny GLM-4
checkpoint whose greedy reply to any chat prompt is known: a call of `get_weather` written GLM-4's way under a
template that renders tools (tests/app/test_openai_tools.py). Offered no tools, the reply is that text; offered
`get_weather`, it is a tool call each library parses into its own objects. The extractive (no model) side is
tests/app/test_openai_real_clients_extractive.py.

Nothing here may reach the internet: tiktoken (which LangChain and LlamaIndex use to count tokens) would download
its encodings, so it is made to fail loudly, and litellm reads its bundled model list."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from app.models import Role
from app.settings import settings
from inference.tokenizer import Tokenizer
from tests.app.ask_support import live_world
from tests.app.real_clients import langchain_openai, litellm, no_tiktoken, openai, openai_like  # noqa: F401
from tests.app.support import make_user
from tests.app.test_openai_tools import ARGUMENTS, CALL, RESULT, TIME, WEATHER, _expected_prompt
from tests.inference.conftest import build_scripted_checkpoint
from tests.inference.test_tools import GLM_WAY

# isort: split
# (the clients' own modules: after real_clients, which skips this module where they are missing)
from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool

MODEL = "glm-call"
TEXT = "".join(CALL)  # the reply offered no tools: 'get_weather\n{"city": "Paris"}'
ASK = "Weather in Paris?"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("real-clients") / MODEL, CALL, GLM_WAY)
    with live_world(tmp_path_factory.mktemp("real-clients-world"), AUTOGLM_MODEL_PATH=str(model),
                    AUTOGLM_KV_CACHE_MEMORY_MB="32", AUTOGLM_ANSWER_MAX_TOKENS="16") as (server, w):  # fmt: skip
        yield f"{server.base}/v1", w.member["Authorization"].split()[1], model, w


def _chat(live, model: str = MODEL, **more) -> langchain_openai.ChatOpenAI:
    base, key, _, _ = live
    return langchain_openai.ChatOpenAI(model=model, base_url=base, api_key=key, temperature=0, max_retries=0,
                                       **more)  # fmt: skip


def _lite(live, **more) -> dict:
    base, key, _, _ = live
    return {"model": f"openai/{MODEL}", "api_base": base, "api_key": key, "max_retries": 0, **more}


# --- LangChain's ChatOpenAI ---------------------------------------------------------------------------------
def test_langchain_invoke_stream_batch_and_astream_give_the_same_answer(live):
    llm = _chat(live)
    said = llm.invoke(ASK)
    assert isinstance(said, AIMessage) and said.content == TEXT and said.tool_calls == []
    assert said.response_metadata["finish_reason"] == "stop" and said.response_metadata["model_name"] == MODEL
    assert said.usage_metadata["output_tokens"] == len(CALL) + 1  # and the end of text
    chunks = list(llm.stream(ASK))
    assert "".join(c.content for c in chunks) == TEXT and len([c for c in chunks if c.content]) == len(CALL)
    assert [m.content for m in llm.batch([ASK, [SystemMessage("Be brief."), HumanMessage(ASK)]])] == [
        TEXT,
        TEXT,
    ]

    async def astream() -> str:
        return "".join([c.content async for c in llm.astream(ASK)])

    assert asyncio.run(astream()) == TEXT
    # stream_usage: stream_options.include_usage, read from the chunk after the last choice
    total = None
    for c in _chat(live, stream_usage=True).stream(ASK):
        total = c if total is None else total + c
    counts = ("input_tokens", "output_tokens", "total_tokens")  # (the prefix cache's hits differ)
    assert total.content == TEXT and [total.usage_metadata[k] for k in counts] == [
        said.usage_metadata[k] for k in counts
    ]


def test_langchain_bind_tools_parses_the_call_and_sends_the_result_back(live):
    _, _, model, _ = live
    llm = _chat(live).bind_tools([WEATHER, TIME])
    messages = [SystemMessage("Be brief."), HumanMessage(ASK)]
    said = llm.invoke(messages)
    assert said.content == "" and said.response_metadata["finish_reason"] == "tool_calls"
    [call] = said.tool_calls
    assert (call["name"], call["args"], call["type"]) == ("get_weather", {"city": "Paris"}, "tool_call")
    assert call["id"].startswith("call_")
    total = None
    for c in llm.stream(messages):  # tool-call chunks add up to the same call
        total = c if total is None else total + c
    assert [(t["name"], t["args"]) for t in total.tool_calls] == [("get_weather", {"city": "Paris"})]
    # the round trip: the AIMessage as LangChain keeps it, then the result; both reach the prompt as the
    # template takes them (the call as GLM's assistant turn, the result as an observation)
    again = llm.invoke([*messages, said, ToolMessage(RESULT, tool_call_id=call["id"])])
    expected = Tokenizer(model).encode(_expected_prompt(RESULT, "Be brief."), add_special_tokens=False)
    assert again.usage_metadata["input_tokens"] == len(expected)
    # tool_choice: "any" with one tool is OpenAI's "required", a name is the object form; strict and
    # parallel_tool_calls are accepted
    for bound in (_chat(live).bind_tools([WEATHER], tool_choice="any"),
                  _chat(live).bind_tools([WEATHER, TIME], tool_choice="get_weather", strict=True,
                                         parallel_tool_calls=False)):  # fmt: skip
        assert [(t["name"], t["args"]) for t in bound.invoke(ASK).tool_calls] == [
            ("get_weather", {"city": "Paris"})
        ]


def test_langchain_structured_output_by_function_calling(live):
    schema = {"title": "get_weather", "description": "The weather in a city.", "type": "object",
              "properties": {"city": {"type": "string"}}, "required": ["city"]}  # fmt: skip
    got = _chat(live).with_structured_output(schema, method="function_calling", include_raw=True).invoke(ASK)
    assert got["parsed"] == {"city": "Paris"} and got["parsing_error"] is None
    # json_schema (the default method) and json_mode need constrained decoding: refused in OpenAI's words,
    # which LangChain turns into its advice to use function calling
    with pytest.warns(UserWarning, match='specify `method="function_calling"`'):
        with pytest.raises(openai.BadRequestError) as e:
            _chat(live).with_structured_output(schema).invoke(ASK)
    assert e.value.param == "response_format" and e.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as e:
        _chat(live).with_structured_output(method="json_mode").invoke(ASK)
    assert e.value.param == "response_format" and "'json_object' is not supported" in e.value.message


def test_langchain_errors_are_its_typed_exceptions(live, monkeypatch):
    base, _, _, w = live
    from langchain_core.exceptions import ModelAuthenticationError, ModelNotFoundError, ModelRateLimitError

    with pytest.raises(openai.AuthenticationError) as e:
        langchain_openai.ChatOpenAI(model=MODEL, base_url=base, api_key="agk_wrong", max_retries=0).invoke(
            ASK
        )
    assert isinstance(e.value, ModelAuthenticationError) and e.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as e:
        _chat(live, model="gpt-4o").invoke(ASK)
    assert isinstance(e.value, ModelNotFoundError) and e.value.code == "model_not_found"
    with pytest.raises(ContextOverflowError):  # code context_length_exceeded
        _chat(live, max_tokens=10**6).invoke(ASK)
    with pytest.raises(openai.BadRequestError) as e:
        _chat(live, n=2).invoke(ASK)
    assert e.value.param == "n"
    key = make_user(Role.member, group_ids=[w.group])["Authorization"].split()[1]
    monkeypatch.setattr(settings, "ask_rate_per_minute", 1)
    limited = langchain_openai.ChatOpenAI(model=MODEL, base_url=base, api_key=key, max_retries=0)
    assert limited.invoke(ASK).content == TEXT
    with pytest.raises(ModelRateLimitError) as e:
        limited.invoke(ASK)
    assert e.value.code == "rate_limit_exceeded" and 1 <= int(e.value.response.headers["retry-after"]) <= 60


# --- LlamaIndex's OpenAILike --------------------------------------------------------------------------------
def _like(live, **more):
    base, key, _, _ = live
    return openai_like.OpenAILike(model=MODEL, api_base=base, api_key=key, temperature=0, max_tokens=16,
                                  max_retries=0, **more)  # fmt: skip


def test_llamaindex_chat_model(live):
    llm = _like(live, is_chat_model=True, is_function_calling_model=True)
    said = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=ASK)])
    assert said.message.content == TEXT and said.raw.choices[0].finish_reason == "stop"
    assert "".join(r.delta for r in llm.stream_chat([ChatMessage(role="user", content=ASK)])) == TEXT
    assert llm.complete(ASK).text == TEXT  # is_chat_model: complete() asks /v1/chat/completions

    async def astream() -> str:
        return "".join(
            [r.delta async for r in await llm.astream_chat([ChatMessage(role="user", content=ASK)])]
        )

    assert asyncio.run(astream()) == TEXT

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return RESULT

    reply = llm.chat_with_tools([FunctionTool.from_defaults(get_weather)], user_msg=ASK)
    [call] = llm.get_tool_calls_from_response(reply)
    assert (call.tool_name, call.tool_kwargs) == ("get_weather", {"city": "Paris"})
    # structured output by function calling: the schema as the one tool offered, its arguments as the object

    class get_weather(BaseModel):  # named as the function the scripted model calls
        """The weather in a city."""

        city: str

    assert llm.structured_predict(
        get_weather, PromptTemplate("Weather in {city}?"), city="Paris"
    ) == get_weather(city="Paris")


def test_llamaindex_text_completion_model(live):
    # is_chat_model=False: /v1/completions, the prompt as raw text; ending it where a chat prompt ends makes
    # the scripted model write its reply
    llm = _like(live, is_chat_model=False)
    prompt = ASK + "<|assistant|>"
    assert llm.complete(prompt).text == TEXT
    assert "".join(r.delta for r in llm.stream_complete(prompt)) == TEXT
    assert llm.complete(ASK).text == ""  # without it, the greedy continuation ends at once


# --- litellm ----------------------------------------------------------------------------------------------
def test_litellm_completion_stream_and_tools(live):
    messages = [{"role": "user", "content": ASK}]
    r = litellm.completion(**_lite(live), messages=messages, temperature=0)
    assert r.choices[0].message.content == TEXT and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(CALL) + 1
    chunks = list(litellm.completion(**_lite(live), messages=messages, stream=True,
                                     stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert [c.usage.completion_tokens for c in chunks if getattr(c, "usage", None)] == [len(CALL) + 1]

    async def astream() -> str:
        got = await litellm.acompletion(**_lite(live), messages=messages, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in got])

    assert asyncio.run(astream()) == TEXT
    r = litellm.completion(**_lite(live), messages=messages, tools=[WEATHER, TIME])
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    [call] = r.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    streamed = [t for c in litellm.completion(**_lite(live), messages=messages, tools=[WEATHER], stream=True)
                for t in c.choices[0].delta.tool_calls or []]  # fmt: skip
    assert [t.function.name for t in streamed] == ["get_weather", None]
    assert "".join(t.function.arguments for t in streamed) == ARGUMENTS
    text = litellm.text_completion(**_lite(live), prompt=ASK + "<|assistant|>", temperature=0)
    assert text.choices[0].text == TEXT


def test_litellm_errors_are_its_typed_exceptions(live):
    ask = {"messages": [{"role": "user", "content": ASK}]}
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(**_lite(live, api_key="agk_wrong"), **ask)
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(**_lite(live, model="openai/gpt-4o"), **ask)
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(**_lite(live, max_tokens=10**6), **ask)
    with pytest.raises(litellm.BadRequestError, match="'json_object' is not supported with this model"):
        litellm.completion(**_lite(live), **ask, response_format={"type": "json_object"})


# --- a failure mid-stream ----------------------------------------------------------------------------------
def test_a_failure_mid_stream_raises_in_every_client(live, monkeypatch):
    # the stream's last event is an error in OpenAI's shape: each client raises it rather than ending the
    # stream as if the answer were whole (the engine failing after the first pieces is simulated in-process)
    from app import answer

    whole = answer.split_reasoning

    def failing(pieces):
        async def gen():
            sent = 0
            async for piece in whole(pieces):
                yield piece
                sent += 1
                if sent == 2:
                    raise RuntimeError("the GPU fell off")

        return gen()

    monkeypatch.setattr(answer, "split_reasoning", failing)
    said = "generation failed: the GPU fell off"
    got: list[str] = []
    with pytest.raises(openai.APIError, match=said):
        got.extend(c.content for c in _chat(live).stream(ASK))
    assert got == ["", *CALL[:2]]  # the pieces before the failure came through
    with pytest.raises(openai.APIError, match=said):
        list(_like(live, is_chat_model=True).stream_chat([ChatMessage(role="user", content=ASK)]))
    with pytest.raises(litellm.ServiceUnavailableError, match=said):  # its MidStreamFallbackError
        list(litellm.completion(**_lite(live), messages=[{"role": "user", "content": ASK}], stream=True))
    with pytest.raises(openai.InternalServerError) as e:  # not streamed: a 500 in OpenAI's shape
        _chat(live).invoke(ASK)
    assert e.value.type == "server_error"
