"""A reasoning checkpoint's thinking (`reasoning_content`, vLLM's field) as the real LangChain, LlamaIndex and
litellm clients read it, against uvicorn on loopback with a tiny GLM-Z1-style checkpoint whose template opens
`<think>` and whose greedy reply is known: litellm and LlamaIndex keep the thinking apart from the answer,
LangChain's ChatOpenAI drops it (as it documents), and none shows it as the answer."""

from __future__ import annotations

import pytest

from tests.app.ask_support import live_world
from tests.app.real_clients import langchain_openai, litellm, no_tiktoken, openai_like  # noqa: F401
from tests.inference.conftest import build_scripted_checkpoint
from tests.inference.test_tools import GLM_WAY

# isort: split
# (the clients' own modules: after real_clients, which skips this module where they are missing)
from llama_index.core.base.llms.types import ThinkingBlock
from llama_index.core.llms import ChatMessage

MODEL = "z1"
THOUGHT = ["Paris", " needs", " a", " forecast."]
ANSWER = ["It", " rains."]
ASK = "Weather in Paris?"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    opened = GLM_WAY.replace("<|assistant|>{% endif %}", "<|assistant|>\n<think>{% endif %}")  # GLM-Z1's way
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("real-clients-z1") / MODEL,
                                      [*THOUGHT, "</think>", *ANSWER], opened, "<think>")  # fmt: skip
    with live_world(tmp_path_factory.mktemp("real-clients-z1-world"), AUTOGLM_MODEL_PATH=str(model),
                    AUTOGLM_KV_CACHE_MEMORY_MB="32", AUTOGLM_ANSWER_MAX_TOKENS="16") as (server, w):  # fmt: skip
        yield f"{server.base}/v1", w.member["Authorization"].split()[1]


def test_litellm_keeps_the_thinking_apart(live):
    base, key = live
    ask = {"model": f"openai/{MODEL}", "api_base": base, "api_key": key, "max_retries": 0,
           "messages": [{"role": "user", "content": ASK}]}  # fmt: skip
    r = litellm.completion(**ask)
    message = r.choices[0].message
    assert (message.content, message.reasoning_content) == ("".join(ANSWER), "".join(THOUGHT))
    assert r.usage.completion_tokens_details.reasoning_tokens == len(THOUGHT) + 1  # and </think>
    deltas = [c.choices[0].delta for c in litellm.completion(**ask, stream=True) if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "".join(THOUGHT)
    assert "".join(d.content or "" for d in deltas) == "".join(ANSWER)


def test_llamaindex_keeps_the_thinking_as_a_thinking_block(live):
    base, key = live
    llm = openai_like.OpenAILike(model=MODEL, api_base=base, api_key=key, is_chat_model=True, max_retries=0)
    said = llm.chat([ChatMessage(role="user", content=ASK)])
    assert said.message.content == "".join(ANSWER)
    assert [b.content for b in said.message.blocks if isinstance(b, ThinkingBlock)] == ["".join(THOUGHT)]
    streamed = list(llm.stream_chat([ChatMessage(role="user", content=ASK)]))
    assert "".join(r.delta for r in streamed) == "".join(ANSWER)
    assert "".join(r.additional_kwargs.get("thinking_delta", "") for r in streamed) == "".join(THOUGHT)


def test_langchain_gets_the_answer_without_the_thinking(live):
    base, key = live
    llm = langchain_openai.ChatOpenAI(model=MODEL, base_url=base, api_key=key, max_retries=0)
    said = llm.invoke(ASK)
    assert said.content == "".join(ANSWER) and "reasoning_content" not in said.additional_kwargs
    assert "".join(c.content for c in llm.stream(ASK)) == "".join(ANSWER)
