"""The OpenAI-compatible API driven by the official `openai` client against uvicorn on loopback, with a
tiny random GLM-4 checkpoint loaded in the server: models, chat (stream and not), rag:<collection>,
usage counts, and errors in OpenAI's shape (ACL included: a forbidden collection is an unknown model)."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from app.models import Role
from tests.app.ask_support import ask_client, build_world, glm_checkpoint, live_world, sdk  # noqa: F401
from tests.app.support import make_user

PASSWORD = "correct horse battery staple"

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def live(tmp_path_factory, glm_checkpoint):  # noqa: F811
    with live_world(tmp_path_factory.mktemp("openai"), AUTOGLM_MODEL_PATH=str(glm_checkpoint),
                    AUTOGLM_ANSWER_MAX_TOKENS="16", AUTOGLM_KV_CACHE_MEMORY_MB="32") as got:  # fmt: skip
        yield got


def _client(live, headers) -> openai.OpenAI:
    return sdk(live[0], headers)


def test_models_follow_the_acl(live):
    _, w = live
    assert [m.id for m in _client(live, w.admin).models.list()] == ["tiny-glm", "rag:handbook", "rag:board"]
    assert [m.id for m in _client(live, w.member).models.list()] == ["tiny-glm", "rag:handbook"]
    assert _client(live, w.member).models.retrieve("rag:handbook").owned_by == "autoglm"
    with pytest.raises(openai.NotFoundError):
        _client(live, w.member).models.retrieve("rag:board")
    # a base URL ending in "/" joined with "models/" (Open WebUI-style clients): the list, not a 404 for ``
    lists = [httpx.get(f"{live[0].base}/v1/models{end}", headers=w.member) for end in ("", "/")]
    assert [r.status_code for r in lists] == [200, 200]
    assert [[m["id"] for m in r.json()["data"]] for r in lists] == [["tiny-glm", "rag:handbook"]] * 2


def test_chat_stream_and_not_agree(live):
    _, w = live
    c = _client(live, w.member)
    ask = {"model": "tiny-glm", "messages": [{"role": "user", "content": "Hello, what is the travel policy?"}],
           "temperature": 0, "max_tokens": 10}  # fmt: skip
    full = c.chat.completions.create(**ask)
    text = full.choices[0].message.content
    assert full.object == "chat.completion" and full.model == "tiny-glm" and text
    u = full.usage
    assert 1 <= u.completion_tokens <= 10 and u.prompt_tokens > 5
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert full.choices[0].finish_reason == ("length" if u.completion_tokens == 10 else "stop")

    chunks = list(c.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text  # greedy: the same tokens either way
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == u.completion_tokens
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason


def test_rag_model_answers_from_its_collection(live):
    _, w = live
    c = _client(live, w.member)
    msgs = [{"role": "user", "content": "How many days of paid leave do employees get?"}]
    r = c.chat.completions.create(model="rag:handbook", messages=msgs, temperature=0, max_tokens=8)
    extra = r.model_extra
    assert {s["title"] for s in extra["sources"]} == {"Vacation policy"}
    assert "twenty-eight days" in extra["sources"][0]["text"]
    # a Markdown file has no pages; `page_kind` ("page", "slide") came beside `page`, which keeps its name
    assert (extra["sources"][0]["page"], extra["sources"][0]["page_kind"]) == (None, None)
    assert r.usage.prompt_tokens > 100  # the sources are in the prompt
    chunks = list(c.chat.completions.create(model="rag:handbook", messages=msgs, temperature=0, max_tokens=8,
                                            stream=True))  # fmt: skip
    assert chunks[0].model_extra["sources"] == extra["sources"]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == r.choices[0].message.content


def test_a_rag_model_reads_the_client_s_system_prompt(live):
    # A tool's system message ("Answer in German.") was dropped for rag: models: the prompt was the same with or
    # without it, so the instruction was silently ignored; it now follows the product's own system prompt.
    _, w = live
    c = _client(live, w.member)
    question = {"role": "user", "content": "How many days of paid leave do employees get?"}

    def prompt_tokens(*system: dict) -> int:
        r = c.chat.completions.create(
            model="rag:handbook", messages=[*system, question], temperature=0, max_tokens=2
        )
        return r.usage.prompt_tokens

    bare = prompt_tokens()
    instruction = "Answer in German, in one short sentence, and address the reader formally."
    told = prompt_tokens({"role": "system", "content": instruction})
    assert told > bare + 5
    assert prompt_tokens({"role": "developer", "content": instruction}) == told
    assert prompt_tokens({"role": "system", "content": "  "}) == bare  # an empty one adds nothing


def test_errors_in_openai_shape(live):
    server, w = live
    member = _client(live, w.member)
    msgs = [{"role": "user", "content": "merger"}]
    for model in ("rag:board", "rag:nope", "gpt-4o"):  # forbidden looks exactly like absent
        with pytest.raises(openai.NotFoundError) as e:
            member.chat.completions.create(model=model, messages=msgs)
        assert e.value.code == "model_not_found"
        assert (
            e.value.body["message"] == f"The model `{model}` does not exist or you do not have access to it."
        )
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=f"{server.base}/v1", api_key="agk_wrong", max_retries=0).models.list()
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as e:
        member.chat.completions.create(model="tiny-glm", messages=msgs, max_tokens=10**7)
    assert e.value.code == "context_length_exceeded"
    r = httpx.post(f"{server.base}/v1/chat/completions", json={"model": "tiny-glm"}, headers=w.member)
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_stop_seed_and_logprobs_reach_the_engine(live):
    _, w = live
    c = _client(live, w.member)
    ask = {"model": "tiny-glm", "messages": [{"role": "user", "content": "Where is the office?"}],
           "temperature": 0, "max_tokens": 16, "stop": None}  # fmt: skip
    text = c.chat.completions.create(**ask).choices[0].message.content
    cut = next(i for i in range(2, len(text) - 1) if text[i].strip())  # a stop string starting mid-answer
    stop = text[cut : cut + 2]
    for stream in (False, True):
        r = c.chat.completions.create(**{**ask, "stop": [stop, "never-printed"]}, stream=stream)
        chunks = list(r) if stream else None
        got = (
            "".join(ch.choices[0].delta.content or "" for ch in chunks)
            if stream
            else r.choices[0].message.content
        )
        finish = chunks[-1].choices[0].finish_reason if stream else r.choices[0].finish_reason
        assert (got, finish) == (text[: text.find(stop)], "stop")

    hot = {**ask, "temperature": 1.0, "max_tokens": 12}
    first, again = (c.chat.completions.create(**hot, seed=1234).choices[0].message.content for _ in range(2))
    assert first == again  # a seed makes sampling repeatable

    full = c.chat.completions.create(**ask, logprobs=True)
    content = full.choices[0].logprobs.content
    assert len(content) == full.usage.completion_tokens and all(t.logprob <= 0 and t.token for t in content)
    chunks = list(c.chat.completions.create(**ask, logprobs=True, stream=True))
    streamed = [
        t for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content
    ]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [
        (t.token, round(t.logprob, 4)) for t in content
    ]
    assert c.chat.completions.create(**ask).choices[0].logprobs is None  # only when asked
    assert all(t.top_logprobs == [] for t in content)  # no alternatives unless asked for

    top = c.chat.completions.create(**ask, logprobs=True, top_logprobs=3).choices[0].logprobs.content
    assert [(t.token, t.logprob) for t in top] == [(t.token, t.logprob) for t in content]
    for t in top:
        assert len(t.top_logprobs) == 3
        assert [a.logprob for a in t.top_logprobs] == sorted(
            (a.logprob for a in t.top_logprobs), reverse=True
        )
        assert (t.top_logprobs[0].token, t.top_logprobs[0].logprob) == (t.token, t.logprob)  # greedy: top-1
        assert all(a.bytes is None or bytes(a.bytes).decode() == a.token for a in t.top_logprobs)
    chunks = list(c.chat.completions.create(**ask, logprobs=True, top_logprobs=3, stream=True))
    streamed = [
        t for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content
    ]
    assert [[(a.token, round(a.logprob, 4)) for a in t.top_logprobs] for t in streamed] == [
        [(a.token, round(a.logprob, 4)) for a in t.top_logprobs] for t in top
    ]


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
        # the tiny checkpoint's chat template renders no tools: it cannot be offered any, nor take their results
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools", "unsupported_parameter"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_request"),  # OpenAI's limit: 0 to 20
        ({"top_logprobs": 2}, "top_logprobs", "invalid_request"),  # without logprobs=true
        ({"logit_bias": {"42": -100}}, "logit_bias", "unsupported_parameter"),
        ({"stop": [f"s{i}" for i in range(17)]}, "stop", "invalid_request"),
        ({"presence_penalty": 3}, "presence_penalty", "invalid_request"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "messages", "invalid_request"),
        # were answered with plain text as if the functions (here: a template without tools), the audio or the n
        # choices had been read
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions", "unsupported_parameter"),
        ({"functions": [{"name": "f", "parameters": {}}], "function_call": "auto"}, "functions", "unsupported_parameter"),
        ({"modalities": ["text", "audio"]}, "modalities", "unsupported_parameter"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "unsupported_parameter"),
        ({"n": 2}, "n", "unsupported_parameter"),
        # was "Overflow when unpacking long long" with no param
        ({"seed": 2**64}, "seed", "invalid_request"),
    ],
)  # fmt: skip
def test_options_this_server_cannot_honour_are_refused_by_name(live, extra, param, code):
    _, w = live
    with pytest.raises(openai.BadRequestError) as e:
        _client(live, w.member).chat.completions.create(
            **{"model": "tiny-glm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
        )
    assert (e.value.code, e.value.param) == (code, param), e.value.body


@pytest.mark.parametrize("kind", ["json_schema", "json_object"])
def test_json_output_is_refused_in_openai_s_words(live, kind):
    # there is no constrained decoding: refused as OpenAI refuses a model without JSON output, the words
    # LangChain's with_structured_output reads to tell its user to send the schema as a tool instead
    _, w = live
    fmt = {
        "type": kind,
        **({"json_schema": {"name": "w", "schema": {"type": "object"}}} if kind == "json_schema" else {}),
    }
    with pytest.raises(openai.BadRequestError) as e:
        _client(live, w.member).chat.completions.create(
            model="tiny-glm", messages=[{"role": "user", "content": "hi"}], response_format=fmt
        )
    assert e.value.body == {"message": f"Invalid parameter: 'response_format' of type '{kind}' is not supported with "
                            "this model: this server cannot constrain its output to JSON. A model that calls tools "
                            "fills a schema as a function's arguments: send it as a tool with tool_choice naming it "
                            "(LangChain: with_structured_output(method='function_calling')).",
                            "type": "invalid_request_error", "param": "response_format",
                            "code": "unsupported_parameter"}  # fmt: skip


def test_a_checkpoint_whose_template_renders_no_tools_says_so(live):
    # tool calling needs the checkpoint's template to show the tools (tests/app/test_openai_tools.py): this one's
    # does not, so they are refused rather than silently left out of the prompt
    _, w = live
    c = _client(live, w.member)
    ask = {"model": "tiny-glm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for extra, message in (
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "The model `tiny-glm` cannot call tools: its "
         "chat template does not render them (send no tools, or tool_choice 'none')."),
        ({"functions": [{"name": "f"}]}, "The model `tiny-glm` cannot call tools: its chat template does not render "
         "them (send no functions, or function_call 'none')."),
    ):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(**ask, **extra)
        assert e.value.body["message"] == message
    result = [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "42"}]  # fmt: skip
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(**{**ask, "messages": [*ask["messages"], *result]})
    assert (e.value.code, e.value.param) == ("invalid_request", "messages")
    assert e.value.body["message"] == ("Tool calls and results are not supported by the model `tiny-glm`: its chat "
                                       "template does not render them.")  # fmt: skip


def test_null_options_mean_their_defaults(live):
    # OpenAI's API takes null for every optional field, and clients built from its OpenAPI schema (or that
    # serialize unset options) send them: {"temperature": null, "stream": null, "n": null} was a 400
    server, w = live
    nulls = {k: None for k in ("temperature", "top_p", "n", "stream", "stream_options", "stop", "max_tokens",
                               "max_completion_tokens", "presence_penalty", "frequency_penalty", "logprobs",
                               "top_logprobs", "seed", "top_k", "repetition_penalty", "response_format", "tools",
                               "tool_choice", "user", "logit_bias", "functions", "function_call", "modalities",
                               "audio")}  # fmt: skip
    body = {"model": "tiny-glm", "messages": [{"role": "user", "content": "Where is the office?"}], **nulls}
    r = httpx.post(f"{server.base}/v1/chat/completions", json=body, headers=w.member, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion" and r.json()["choices"][0]["logprobs"] is None
    body = {"model": "all-MiniLM-L6-v2", "input": "office", "encoding_format": None, "dimensions": None}
    r = httpx.post(f"{server.base}/v1/embeddings", json=body, headers=w.member)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384, r.text


def test_a_body_that_is_not_json_is_named_so(live):
    server, w = live
    r = httpx.post(f"{server.base}/v1/chat/completions", content=b'{"model": ', headers={**w.member,
                   "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"] == {"message": "Invalid request: the body is not valid JSON (JSON decode error at "
                                 "character 10).", "type": "invalid_request_error", "param": None,
                                 "code": "invalid_request"}  # fmt: skip
    # `curl -d '{...}'` without -H 'Content-Type: application/json' sends a form type: the JSON is not read,
    # and the 400 said "Invalid request: : Input should be a valid dictionary or object to extract fields from"
    body = json.dumps({"model": "tiny-glm", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for content, kind, message in (
        (body, "application/x-www-form-urlencoded", " (it came as 'application/x-www-form-urlencoded')"),
        (body, None, " (it came as 'no type')"),
        (b"[1, 2]", "application/json", ""),
    ):
        headers = {**w.member, **({"Content-Type": kind} if kind else {})}
        r = httpx.post(f"{server.base}/v1/chat/completions", content=content, headers=headers)
        assert (r.status_code, r.json()["error"]) == (400, {"message": "Invalid request: the body must be a JSON "
                                                           f"object, sent as Content-Type: application/json{message}.",
                                                           "type": "invalid_request_error", "param": None,
                                                           "code": "invalid_request"})  # fmt: skip


def test_a_developer_message_is_the_system_prompt(live):
    _, w = live
    c = _client(live, w.member)
    got = {}
    for role in ("system", "developer"):
        msgs = [
            {"role": role, "content": "Answer briefly."},
            {"role": "user", "content": "Where is the office?"},
        ]
        r = c.chat.completions.create(model="tiny-glm", messages=msgs, temperature=0, max_tokens=6)
        got[role] = (r.usage.prompt_tokens, r.choices[0].message.content)
    assert got["developer"] == got["system"]


def test_embeddings_are_the_search_model_s_vectors(live):
    import base64

    import numpy as np

    _, w = live
    c = _client(live, w.member)
    texts = ["How many days of paid leave do employees get?", "Employees get twenty-eight days of paid leave.",
             "The cafeteria opens at eight in the morning."]  # fmt: skip
    r = c.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    v = np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # the answer is nearer the question than an unrelated sentence
    assert r.usage.prompt_tokens == r.usage.total_tokens > 3 * 5
    raw = c.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="base64")
    got = raw.data[0].embedding  # the client decodes base64 itself
    # NOTE: the same text alone, not v[0]: with bf16 embeddings (AUTOGLM_EMBED_BF16=auto on a CPU with AMX or
    # AVX512-BF16) a text's vector moves by ~1e-4 with the batch it is padded into
    one = (
        c.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
        .data[0]
        .embedding
    )
    assert np.allclose(
        np.frombuffer(base64.b64decode(got), "<f4") if isinstance(got, str) else got, one, atol=1e-6
    )
    assert np.allclose(one, v[0], atol=1e-3)
    for bad, err, code in (({"model": "text-embedding-3-small", "input": "x"}, openai.NotFoundError, "model_not_found"),
                           ({"model": "all-MiniLM-L6-v2", "input": []}, openai.BadRequestError, "invalid_request"),
                           ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 8}, openai.BadRequestError,
                            "unsupported_parameter")):  # fmt: skip
        with pytest.raises(err) as e:
            c.embeddings.create(**bad)
        assert e.value.code == code
    # token ids (what LangChain's OpenAIEmbeddings sends by default: tiktoken's, not this model's) were
    # "input.0: Input should be a valid string" for a flat list and the same for a list of lists
    for ids in ([101, 2054, 102], [[101, 2054], [102]]):
        with pytest.raises(openai.BadRequestError) as e:
            c.embeddings.create(model="all-MiniLM-L6-v2", input=ids)
        assert e.value.body == {"message": "input: token ids are not supported: this model reads text (LangChain's "
                                "OpenAIEmbeddings sends tiktoken's ids unless check_embedding_ctx_length=False); "
                                "send the text.", "type": "invalid_request_error", "param": "input",
                                "code": "unsupported_parameter"}  # fmt: skip


# --- every error under /v1 in OpenAI's shape; /api keeps FastAPI's {"detail"} --------------------------------
@pytest.fixture
def inproc(tmp_path, monkeypatch):
    """The app in-process without a model: a question limit of 1 a minute, a 4 KiB body limit."""
    with ask_client(
        monkeypatch, tmp_path, AUTOGLM_ASK_RATE_PER_MINUTE="1", AUTOGLM_MAX_BODY_BYTES="4096"
    ) as c:
        yield c


def _openai_error(r, status, message, type_="invalid_request_error", code=None, param=None) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"error": {"message": message, "type": type_, "param": param, "code": code}}


def test_unknown_v1_paths_and_wrong_methods_answer_in_openai_shape(inproc):
    c, member = inproc, make_user(Role.member)
    # answered {"detail": "Not Found"}, which OpenAI's clients read as an error without a message or code
    with pytest.raises(openai.NotFoundError) as e:
        openai.OpenAI(base_url="http://testserver/v1", api_key=member["Authorization"].split()[1],
                      http_client=c, max_retries=0).files.list()  # fmt: skip
    assert e.value.body == {"message": "Invalid URL (GET /v1/files)", "type": "invalid_request_error",
                            "param": None, "code": None}  # fmt: skip
    _openai_error(c.post("/v1/responses", json={}, headers=member), 404, "Invalid URL (POST /v1/responses)")
    _openai_error(c.get("/v1"), 404, "Invalid URL (GET /v1)")
    r = c.get("/v1/chat/completions", headers=member)
    _openai_error(r, 405, "Invalid method for URL (GET /v1/chat/completions): use POST")
    assert r.headers["allow"] == "POST"
    _openai_error(
        c.delete("/v1/models", headers=member), 405, "Invalid method for URL (DELETE /v1/models): use GET"
    )
    # /api and every other path keep FastAPI's shape
    assert (c.get("/api/nope").status_code, c.get("/api/nope").json()) == (404, {"detail": "Not Found"})
    assert (c.post("/api/health").status_code, c.post("/api/health").json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
    assert c.get("/v1beta/models").json() == {"detail": "Not Found"}


def test_auth_validation_size_and_rate_errors_under_v1_answer_in_openai_shape(inproc):
    c, member = inproc, make_user(Role.member)
    _openai_error(c.get("/v1/models"), 401, "Not authenticated", code="invalid_api_key")
    _openai_error(c.get("/v1/models", headers={"Authorization": "Bearer agk_wrong"}), 401, "Invalid API key",
                  code="invalid_api_key")  # fmt: skip
    _openai_error(c.post("/v1/chat/completions", json={"model": "m"}, headers=member), 400,
                  "Invalid request: messages: Field required", code="invalid_request", param="messages")  # fmt: skip
    big = {"model": "m", "messages": [{"role": "user", "content": "z" * 5000}]}
    too_large = "Request body too large: the limit is 4 KB"
    _openai_error(
        c.post("/v1/chat/completions", json=big, headers=member), 413, too_large, code="request_too_large"
    )
    payload = json.dumps(big).encode()  # no Content-Length: cut off as it streams in
    r = c.post("/v1/chat/completions", content=iter([payload[:3000], payload[3000:]]), headers=member)
    _openai_error(r, 413, too_large, code="request_too_large")
    r = c.post("/v1/chat/completions", content=b"{}", headers={**member, "Content-Length": "nonsense"})
    _openai_error(r, 400, "Invalid Content-Length header", code="invalid_request")
    ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    c.post("/v1/chat/completions", json=ask, headers=member)  # the one question of this minute
    r = c.post("/v1/chat/completions", json=ask, headers=member)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["message"].startswith(
        "Too many questions: the limit is 1 per minute; try again in "
    )
    assert {**r.json()["error"], "message": ""} == {"message": "", "type": "rate_limit_error", "param": None,
                                                    "code": "rate_limit_exceeded"}  # fmt: skip
    # a browser session's state change without its CSRF token
    admin = make_user(Role.admin)
    r = c.post("/api/users", json={"name": "ada", "password": PASSWORD, "role": "member"}, headers=admin)
    assert r.status_code == 201, r.text
    assert c.post("/api/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 200
    r = c.post("/v1/embeddings", json={"model": "x", "input": "hi"})
    _openai_error(r, 403, "CSRF token missing or invalid", code="forbidden")
    assert c.post("/api/ask", json={"question": "hi"}).json() == {"detail": "CSRF token missing or invalid"}


def test_a_field_of_several_types_is_named_as_the_field(inproc):
    # The param was pydantic's union branch ("stop.str", "messages.0.content.str", "input.str": no such
    # field) and the message named one type only ("should be a valid string" for a field that takes a list)
    c, hi = inproc, [{"role": "user", "content": "hi"}]
    for url, body, param, message in (
        ("/v1/chat/completions", {"model": "m", "messages": hi, "stop": 5}, "stop",
         "Input should be a valid string or a valid list"),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": 7}]},
         "messages.0.content", "Input should be a valid string or a valid list"),
        ("/v1/chat/completions", {"model": "m", "messages": hi, "tool_choice": 5}, "tool_choice",
         "Input should be a valid string or a valid dictionary"),
        ("/v1/embeddings", {"model": "m", "input": ["a", None]}, "input.1",
         "Input should be a valid string or a valid integer or a valid list"),
        ("/v1/embeddings", {"model": "m", "input": 3}, "input", "Input should be a valid string or a valid list"),
    ):  # fmt: skip
        member = make_user(Role.member)  # a question a minute each here
        _openai_error(c.post(url, json=body, headers=member), 400, f"Invalid request: {param}: {message}",
                      code="invalid_request", param=param)  # fmt: skip


def test_busy_and_server_errors_under_v1_answer_in_openai_shape(inproc, monkeypatch):
    from app import auth, backpressure

    c, member = inproc, make_user(Role.member)
    ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    c.post("/v1/chat/completions", json=ask, headers=member)  # builds the middleware stack and its gates
    gate = backpressure._current.by_class["ask"]
    monkeypatch.setattr(gate, "queue", 0)
    monkeypatch.setattr(gate, "active", gate.limit)  # every slot held, no queue: refused at once
    r = c.post("/v1/chat/completions", json=ask, headers=member)
    _openai_error(r, 503, backpressure.busy_detail("ask"), type_="server_error", code="server_busy")
    assert int(r.headers["retry-after"]) >= 1
    monkeypatch.setattr(gate, "active", 0)

    def fail(*_a, **_k):
        raise RuntimeError("database driver bug")

    monkeypatch.setattr(auth, "readable_collection_ids", fail)
    raw = TestClient(c.app, raise_server_exceptions=False)
    r = raw.get("/v1/models", headers=member)
    _openai_error(r, 500, "The server had an error while processing your request.", type_="server_error")
    r5 = raw.get("/api/collections", headers=member | {"X-Request-ID": "trace-500-a"})
    assert (r5.status_code, r5.text) == (500, "Internal Server Error")
    # a 500 carries the headers every response has, and the request id that finds it in the log
    for resp in (r, r5):
        assert resp.headers["x-content-type-options"] == "nosniff", resp.headers
        assert "default-src" in resp.headers["content-security-policy"]
        assert resp.headers["x-request-id"]
    assert r5.headers["x-request-id"] == "trace-500-a"


# --- no model: the extractive answer honours max_tokens and stop, counted with the embedding model's tokenizer
@pytest.fixture
def extractive(tmp_path, monkeypatch):
    """The app in-process without a model, with the handbook collection: (client, member headers)."""
    with ask_client(monkeypatch, tmp_path) as c:
        yield c, build_world(c).member


def _tokens(text: str) -> int:
    """What usage counts without a model: the embedding model's tokens, no [CLS]/[SEP]."""
    from app.search import _embedder

    return len(_embedder().tokenizer(text, add_special_tokens=False)["input_ids"])


def _extractive_chat(c, member, stream=False, **options) -> tuple[str, str, dict, list[int]]:
    """(content, finish_reason, usage, cited) of a rag:handbook completion, streamed or not."""
    body = {"model": "rag:handbook", "messages": [{"role": "user", "content": "How many days of paid leave?"}],
            "stream": stream, **options}  # fmt: skip
    if stream:
        body["stream_options"] = {"include_usage": True}
    r = c.post("/v1/chat/completions", json=body, headers=member)
    assert r.status_code == 200, r.text
    if not stream:
        out = r.json()
        choice = out["choices"][0]
        return choice["message"]["content"], choice["finish_reason"], out["usage"], out["cited"]
    data = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line.strip()]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] is not None
    return text, chunks[-2]["choices"][0]["finish_reason"], chunks[-1]["usage"], chunks[-2]["cited"]


def test_extractive_answer_is_cut_at_max_tokens_and_stop(extractive):
    # QA: max_tokens 5 returned the whole quoted answer with finish_reason "stop" and usage 0
    from app.answer import NO_GENERATOR

    c, member = extractive
    for stream in (False, True):
        full, finish, usage, cited = _extractive_chat(c, member, stream)
        assert full.startswith(NO_GENERATOR) and "twenty-eight days" in full and cited == [1, 2]
        assert (finish, usage["completion_tokens"]) == ("stop", _tokens(full)), stream
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        for field in ("max_tokens", "max_completion_tokens"):
            text, finish, usage, cited = _extractive_chat(c, member, stream, **{field: 5})
            assert (text, finish, usage["completion_tokens"]) == ("No generator is loaded,", "length", 5)
            assert cited == []  # the quotes and their [n] were cut
        # a limit the answer fits in cuts nothing
        n = _tokens(full)
        assert _extractive_chat(c, member, stream, max_tokens=n)[:2] == (full, "stop")
        text, finish, usage, _ = _extractive_chat(c, member, stream, max_tokens=n - 1)
        assert full.startswith(text) and text != full and finish == "length"
        assert usage["completion_tokens"] == _tokens(text) == n - 1
        # the first stop string that occurs ends the answer, itself not included
        text, finish, usage, cited = _extractive_chat(c, member, stream, stop=["days of", "twenty"])
        assert text == full[: full.index("twenty")] and finish == "stop" and cited == []
        assert usage["completion_tokens"] == _tokens(text)
        # both: the stop string comes first; a limit shorter than the text before it cuts for length
        assert _extractive_chat(c, member, stream, stop="twenty", max_tokens=n)[:2] == (text, "stop")
        cut, finish, usage, _ = _extractive_chat(c, member, stream, stop="twenty", max_tokens=3)
        assert (cut, finish, usage["completion_tokens"]) == ("No generator is", "length", 3)


def test_content_parts_are_read_as_lines_and_an_image_is_refused(extractive):
    # QA: two text parts were glued ("paid" + "leave?" -> "paidleave?"), and an image part was dropped without a
    # word, so the answer pretended to have looked at the picture
    c, member = extractive

    def ask(content) -> httpx.Response:
        body = {"model": "rag:handbook", "messages": [{"role": "user", "content": content}]}
        return c.post("/v1/chat/completions", json=body, headers=member)

    plain = ask("How many days of\npaid leave?").json()["choices"][0]["message"]["content"]
    parts = [{"type": "text", "text": "How many days of"}, {"type": "text", "text": "paid leave?"}]
    assert ask(parts).json()["choices"][0]["message"]["content"] == plain
    assert "twenty-eight days" in plain
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    r = ask([{"type": "text", "text": "How many days of paid leave does this form give?"}, image])
    _openai_error(r, 400, "Content parts of type 'image_url' are not supported: this server reads text only.",
                  code="unsupported_parameter", param="messages")  # fmt: skip
