"""/v1 without a model (extractive answers from `rag:<collection>` models) and /v1/embeddings, driven by the real
LangChain, LlamaIndex and litellm clients against uvicorn on loopback: each client's answer is the `openai`
SDK's, word for word, streamed or not, through chat or text completions; the passages the answer cites reach the
clients that keep fields beside OpenAI's; what a rag: model cannot do raises each client's own error; the
embeddings are the search model's vectors. The generator's side is tests/app/test_openai_real_clients.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.app.ask_support import live_world, sdk
from tests.app.real_clients import langchain_openai, li_embeddings, litellm, no_tiktoken, openai, openai_like  # noqa: F401

# isort: split
# (the clients' own modules: after real_clients, which skips this module where they are missing)
from llama_index.core.llms import ChatMessage

MODEL = "rag:handbook"
ASK = "How many days of paid leave do employees get?"
EMBEDDER = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_world(tmp_path_factory.mktemp("real-clients-extractive")) as (server, w):
        c = sdk(server, w.member)
        answer = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ASK}])
        assert "twenty-eight days of paid leave" in answer.choices[0].message.content
        yield f"{server.base}/v1", w.member["Authorization"].split()[1], answer, c


def test_langchain_gets_the_quoted_answer(live):
    base, key, answer, _ = live
    text = answer.choices[0].message.content
    llm = langchain_openai.ChatOpenAI(model=MODEL, base_url=base, api_key=key, max_retries=0)
    said = llm.invoke(ASK)
    assert said.content == text and said.response_metadata["finish_reason"] == "stop"
    assert said.usage_metadata["output_tokens"] == answer.usage.completion_tokens
    assert "".join(c.content for c in llm.stream(ASK)) == text

    async def astream() -> str:
        return "".join([c.content async for c in llm.astream(ASK)])

    assert asyncio.run(astream()) == text
    # a rag: model calls no tools: the client's own BadRequestError, naming the field
    with pytest.raises(openai.BadRequestError) as e:
        llm.bind_tools([{"type": "function", "function": {"name": "lookup", "parameters": {}}}]).invoke(ASK)
    assert e.value.param == "tools" and e.value.code == "unsupported_parameter"


def test_llamaindex_gets_the_answer_and_its_sources(live):
    base, key, answer, _ = live
    text = answer.choices[0].message.content
    chat = openai_like.OpenAILike(model=MODEL, api_base=base, api_key=key, is_chat_model=True, max_retries=0)
    said = chat.chat([ChatMessage(role="user", content=ASK)])
    assert said.message.content == text
    # the passages the answer cites, beside OpenAI's fields: the response LlamaIndex keeps as `raw`
    sources = said.raw.model_extra["sources"]
    assert [s["title"] for s in sources] == [s["title"] for s in answer.model_extra["sources"]]
    assert said.raw.model_extra["cited"] == answer.model_extra["cited"] != []
    assert "".join(r.delta for r in chat.stream_chat([ChatMessage(role="user", content=ASK)])) == text
    # is_chat_model=False: /v1/completions, the prompt as the question: the same answer
    plain = openai_like.OpenAILike(
        model=MODEL, api_base=base, api_key=key, is_chat_model=False, max_retries=0
    )
    assert plain.complete(ASK).text == text
    assert "".join(r.delta for r in plain.stream_complete(ASK)) == text


def test_litellm_gets_the_answer_and_its_sources(live):
    base, key, answer, _ = live
    text = answer.choices[0].message.content
    ask = {"model": f"openai/{MODEL}", "api_base": base, "api_key": key, "max_retries": 0,
           "messages": [{"role": "user", "content": ASK}]}  # fmt: skip
    r = litellm.completion(**ask)
    assert r.choices[0].message.content == text
    assert r.sources == answer.model_extra["sources"] and r.cited == answer.model_extra["cited"]
    chunks = list(litellm.completion(**ask, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    # max_tokens cuts the quote, finish_reason "length", as OpenAI's models stop
    cut = litellm.completion(**ask, max_tokens=5)
    assert (cut.choices[0].finish_reason, cut.usage.completion_tokens) == ("length", 5)
    assert text.startswith(cut.choices[0].message.content)
    with pytest.raises(litellm.BadRequestError, match="Tool calling is not supported by rag: models"):
        litellm.completion(
            **ask, tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
        )
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(**{**ask, "model": "openai/rag:nowhere"})


def test_embeddings_through_each_client_are_the_search_model_s_vectors(live):
    base, key, _, c = live
    texts = ["How many days of paid leave?", "The cafeteria opens at eight."]
    # NOTE: one text a request, compared with the SDK's vector of the same text alone: a text's vector moves by
    # ~1e-4 with the batch it is padded into where embeddings run in bf16
    want = [np.array(c.embeddings.create(model=EMBEDDER, input=t).data[0].embedding) for t in texts]
    assert want[0].shape == (384,)
    # LangChain: check_embedding_ctx_length=False sends the text; its default sends tiktoken's token ids,
    # which this server refuses by name (tests/app/test_openai.py)
    lc = langchain_openai.OpenAIEmbeddings(model=EMBEDDER, base_url=base, api_key=key, max_retries=0,
                                           check_embedding_ctx_length=False)  # fmt: skip
    li = li_embeddings.OpenAIEmbedding(model_name=EMBEDDER, api_base=base, api_key=key, max_retries=0)
    lite = {"model": f"openai/{EMBEDDER}", "api_base": base, "api_key": key, "max_retries": 0}
    for i, t in enumerate(texts):
        got = [lc.embed_query(t), lc.embed_documents([t])[0], li.get_text_embedding(t), li.get_query_embedding(t),
               litellm.embedding(**lite, input=[t]).data[0]["embedding"]]  # fmt: skip
        for v in got:
            assert np.allclose(v, want[i], atol=1e-5)
    together = lc.embed_documents(texts)
    assert len(together) == 2 and np.allclose(together, want, atol=1e-3)
    with pytest.raises(litellm.NotFoundError):
        litellm.embedding(**{**lite, "model": "openai/text-embedding-3-small"}, input=["x"])
