"""POST /v1/completions (legacy text completions, what LangChain's `OpenAI` and LlamaIndex's `OpenAILike` call)
driven by the official `openai` client against uvicorn on loopback, with the tiny random GLM-4 checkpoint: the
raw prompt continued without the chat template, streamed and not, sampling options, logprobs (the prompt's with
echo, against transformers' forward pass on the same weights), `rag:` answers with their sources, and the chat
route's refusals, errors, access control and question limit."""

from __future__ import annotations

import httpx
import pytest

from app.engine_service import service
from app.models import Role
from app.settings import settings
from tests.app.ask_support import glm_checkpoint, live_world, sdk  # noqa: F401
from tests.app.support import make_user

openai = pytest.importorskip("openai")

PROMPT = "The travel policy says that"
QUESTION = "How many days of paid leave do employees get?"


@pytest.fixture(scope="module")
def live(tmp_path_factory, glm_checkpoint):  # noqa: F811
    with live_world(tmp_path_factory.mktemp("completions"), AUTOGLM_MODEL_PATH=str(glm_checkpoint),
                    AUTOGLM_ANSWER_MAX_TOKENS="16", AUTOGLM_KV_CACHE_MEMORY_MB="32") as got:  # fmt: skip
        yield got


def _text(chunks) -> str:
    return "".join(ch.choices[0].text for ch in chunks if ch.choices)


def test_the_raw_prompt_is_continued_without_the_chat_template(live):
    server, w = live
    from inference import SamplingParams

    r = sdk(server, w.member).completions.create(
        model="tiny-glm", prompt=PROMPT, temperature=0, max_tokens=10
    )
    assert (r.object, r.model, r.choices[0].index, r.choices[0].logprobs) == (
        "text_completion",
        "tiny-glm",
        0,
        None,
    )
    # the engine's own greedy continuation of the bare text: no <|user|> ... <|assistant|> around it
    [direct] = service.engine.generate([PROMPT], SamplingParams(max_tokens=10, temperature=0))
    assert r.choices[0].text == direct.text and r.choices[0].text
    assert r.usage.prompt_tokens == len(service.engine.encode_prompt(PROMPT))
    assert r.usage.prompt_tokens < len(service.engine.encode_prompt([{"role": "user", "content": PROMPT}]))
    assert r.usage.completion_tokens == direct.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.choices[0].finish_reason == ("length" if r.usage.completion_tokens == 10 else "stop")


def test_stream_and_not_agree(live):
    server, w = live
    c = sdk(server, w.member)
    ask = {"model": "tiny-glm", "temperature": 0, "max_tokens": 10}
    full = c.completions.create(**ask, prompt=PROMPT)
    assert (
        c.completions.create(**ask, prompt=[PROMPT]).choices[0].text == full.choices[0].text
    )  # LangChain's form
    chunks = list(
        c.completions.create(**ask, prompt=PROMPT, stream=True, stream_options={"include_usage": True})
    )
    assert all(ch.object == "text_completion" and ch.id == chunks[0].id for ch in chunks)
    assert _text(chunks) == full.choices[0].text
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason
    assert all(ch.choices[0].finish_reason is None for ch in chunks[:-2])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    plain = list(c.completions.create(**ask, prompt=PROMPT, stream=True))
    assert all(ch.usage is None and ch.choices for ch in plain)  # no usage chunk unless asked for
    assert _text(plain) == full.choices[0].text


def test_stop_seed_top_p_and_echo(live):
    server, w = live
    c = sdk(server, w.member)
    ask = {"model": "tiny-glm", "prompt": PROMPT, "temperature": 0, "max_tokens": 16}
    text = c.completions.create(**ask).choices[0].text
    cut = next(i for i in range(2, len(text) - 1) if text[i].strip())  # a stop string starting mid-answer
    stop = text[cut : cut + 2]
    for stream in (False, True):
        r = c.completions.create(**ask, stop=[stop, "never-printed"], stream=stream)
        chunks = list(r) if stream else None
        got = _text(chunks) if stream else r.choices[0].text
        finish = chunks[-1].choices[0].finish_reason if stream else r.choices[0].finish_reason
        assert (got, finish) == (text[: text.find(stop)], "stop")
    hot = {**ask, "temperature": 1.0, "max_tokens": 12}
    first, again = (c.completions.create(**hot, seed=99).choices[0].text for _ in range(2))
    assert first == again  # a seed makes sampling repeatable
    assert c.completions.create(**{**ask, "temperature": 1.5, "top_p": 0}).choices[0].text == text  # greedy

    echoed = c.completions.create(**ask, echo=True)
    assert echoed.choices[0].text == PROMPT + text
    chunks = list(c.completions.create(**ask, echo=True, stream=True))
    assert chunks[0].choices[0].text == PROMPT and _text(chunks) == PROMPT + text


def test_token_id_prompts_are_continued_as_their_text_is(live):
    # evaluation clients (lm-eval's local-completions, vLLM's benchmark) send prompts already tokenized: one
    # list of ids, or a list of them (a choice each); the continuation is the one of the text they encode
    server, w = live
    c = sdk(server, w.member)
    ask = {"model": "tiny-glm", "temperature": 0, "max_tokens": 10}
    text = c.completions.create(**ask, prompt=PROMPT).choices[0].text
    ids = service.engine.encode_prompt(PROMPT)
    other = service.engine.encode_prompt("Where is the office?")
    r = c.completions.create(**ask, prompt=ids)
    assert (r.choices[0].text, r.usage.prompt_tokens) == (text, len(ids))
    two = c.completions.create(**ask, prompt=[ids, other])
    assert [(ch.index, ch.text) for ch in two.choices] == [
        (0, text),
        (1, c.completions.create(**ask, prompt="Where is the office?").choices[0].text),
    ]
    assert two.usage.prompt_tokens == len(ids) + len(other)
    echoed = c.completions.create(**ask, prompt=ids, echo=True).choices[0].text
    assert echoed == service.engine.tokenizer.decode(ids) + text and echoed.endswith(text)
    chunks = list(c.completions.create(**ask, prompt=ids, stream=True))
    assert _text(chunks) == text
    # ids past the vocabulary, an empty list of ids, and a rag: model (it reads a question): 400s
    with pytest.raises(openai.BadRequestError, match="token ids must be in"):
        c.completions.create(**ask, prompt=[1, service.engine.model.cfg.vocab_size])
    with pytest.raises(openai.BadRequestError, match="empty"):
        c.completions.create(**ask, prompt=[ids, []])
    with pytest.raises(openai.BadRequestError, match="as text, not token ids"):
        c.completions.create(model="rag:handbook", prompt=ids, max_tokens=4)


def _reference(path, ids: list[int]):
    """transformers' log-probabilities of the next token at every position of `ids` (one forward pass)."""
    import torch

    from tests.inference.conftest import hf_model

    with torch.no_grad():
        return hf_model(path)(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def test_logprobs_with_echo_score_the_prompt_as_lm_eval_reads_them(live, glm_checkpoint):  # noqa: F811
    # lm-eval's local-completions loglikelihood: token ids, echo, logprobs=1, temperature 0, max_tokens 1 (or
    # 0); it reads token_logprobs[ctxlen:-1] and checks each is the max of its top_logprobs (greedy)
    server, w = live
    c = sdk(server, make_user(Role.member, group_ids=[w.group]))  # a question limit of its own
    tok = service.engine.tokenizer
    ids = service.engine.encode_prompt(PROMPT)
    c.completions.create(
        model="tiny-glm", prompt=ids, temperature=0, max_tokens=2
    )  # its blocks are cached now
    ref = _reference(glm_checkpoint, ids)
    ask = {"model": "tiny-glm", "prompt": ids, "echo": True, "logprobs": 1, "temperature": 0}
    r = c.completions.create(**ask, max_tokens=0)
    ch, lp = r.choices[0], r.choices[0].logprobs
    assert (ch.text, ch.finish_reason, r.usage.completion_tokens) == (tok.decode(ids), "length", 0)
    assert lp.tokens == [tok.decode([t], skip_special_tokens=False) for t in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # the first token has no context
    assert lp.token_logprobs[1:] == pytest.approx(
        [ref[p - 1, ids[p]].item() for p in range(1, len(ids))], abs=1e-4
    )
    for p in range(1, len(ids)):
        best = int(ref[p - 1].argmax())
        top = lp.top_logprobs[p]  # the token and the likeliest one
        assert top[lp.tokens[p]] == pytest.approx(lp.token_logprobs[p], abs=1e-6)
        assert max(top.values()) == pytest.approx(ref[p - 1, best].item(), abs=1e-4)
        assert (max(top, key=top.get) == lp.tokens[p]) == (best == ids[p])  # lm-eval's greedy check
        assert len(top) <= 2
    # where each token's text starts in the text: the characters the tokens before it print
    assert lp.text_offset == [len(tok.decode(ids[:p])) for p in range(len(ids))]

    one = c.completions.create(**ask, max_tokens=1)
    ch1, lp1 = one.choices[0], one.choices[0].logprobs
    assert len(lp1.tokens) == len(ids) + 1 and one.usage.completion_tokens == 1
    assert lp1.token_logprobs[1:-1] == pytest.approx(lp.token_logprobs[1:], abs=1e-5)
    greedy = int(ref[-1].argmax())  # temperature 0: the generated token is the likeliest, top-1 of its dict
    assert lp1.tokens[-1] == tok.decode([greedy], skip_special_tokens=False)
    assert lp1.token_logprobs[-1] == pytest.approx(ref[-1, greedy].item(), abs=1e-4)
    assert max(lp1.top_logprobs[-1].values()) == lp1.token_logprobs[-1]
    assert lp1.text_offset[-1] == len(tok.decode(ids)) and ch1.text.startswith(ch.text)

    # lm-eval's own request and reading of it (two contexts and continuations in one batch): the greedy check
    # compares floats exactly, so the chosen token's logprob must be the very value of its alternative's
    from inference import SamplingParams

    [own] = service.engine.generate([ids], SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    follow = ids + own.token_ids
    batch = [(ids, len(ids) - 3), (follow, len(ids))]
    out = httpx.post(f"{server.base}/v1/completions", headers={"Authorization": f"Bearer {c.api_key}"},
                     json={"model": "tiny-glm", "prompt": [p for p, _ in batch], "temperature": 0, "max_tokens": 1,
                           "logprobs": 1, "seed": 1234, "echo": True}, timeout=120).json()  # fmt: skip
    for choice, (prompt, ctxlen) in zip(sorted(out["choices"], key=lambda x: x["index"]), batch, strict=True):
        lps = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        tops = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        want = _reference(glm_checkpoint, prompt)
        assert sum(lps) == pytest.approx(
            sum(want[p - 1, prompt[p]].item() for p in range(ctxlen, len(prompt)))
        )
        is_greedy = all(lp == max(top.values()) for lp, top in zip(lps, tops, strict=True))
        assert is_greedy == all(int(want[p - 1].argmax()) == prompt[p] for p in range(ctxlen, len(prompt)))
    assert is_greedy  # the model's own greedy continuation

    # streamed: each chunk's logprobs are its text's; together the same as in one response
    chunks = list(c.completions.create(**ask, max_tokens=1, stream=True))
    got = {k: [v for x in chunks if x.choices and x.choices[0].logprobs for v in getattr(x.choices[0].logprobs, k)]
           for k in ("tokens", "text_offset")}  # fmt: skip
    assert got == {"tokens": lp1.tokens, "text_offset": lp1.text_offset}
    assert chunks[0].choices[0].text == ch.text and len(chunks[0].choices[0].logprobs.tokens) == len(ids)
    assert _text(chunks) == ch1.text


def test_logprobs_of_a_text_prompt_and_of_the_answer_alone(live):
    server, w = live
    c = sdk(server, make_user(Role.member, group_ids=[w.group]))  # a question limit of its own
    ask = {"model": "tiny-glm", "prompt": PROMPT, "temperature": 0, "max_tokens": 8}
    plain = c.completions.create(**ask).choices[0]
    r = c.completions.create(**ask, logprobs=3)
    ch, lp = r.choices[0], r.choices[0].logprobs
    assert ch.text == plain.text and len(lp.tokens) == r.usage.completion_tokens  # the answer's tokens only
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert all(o <= len(ch.text) for o in lp.text_offset)
    for t, v, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert max(top.values()) == pytest.approx(v) and top[t] == v and 1 <= len(top) <= 4  # greedy: top-1
    echoed = c.completions.create(**ask, logprobs=2, echo=True).choices[0]
    n = len(service.engine.encode_prompt(PROMPT))
    assert echoed.text == PROMPT + ch.text and len(echoed.logprobs.tokens) == n + len(lp.tokens)
    assert echoed.logprobs.text_offset[n:] == [len(PROMPT) + o for o in lp.text_offset]
    assert echoed.logprobs.token_logprobs[n:] == pytest.approx(lp.token_logprobs, abs=1e-5)
    assert max(echoed.logprobs.text_offset) <= len(echoed.text)
    # a rag: model gives its answer's logprobs (not the prompt's: the model read the question among sources)
    rag = c.completions.create(model="rag:handbook", prompt=QUESTION, temperature=0, max_tokens=6, logprobs=1)
    assert len(rag.choices[0].logprobs.tokens) == rag.usage.completion_tokens


def test_a_rag_model_answers_the_prompt_as_a_question(live):
    server, w = live
    c = sdk(server, w.member)
    r = c.completions.create(model="rag:handbook", prompt=QUESTION, temperature=0, max_tokens=8)
    # the same answer, sources and prompt as a chat with that one user message
    chat = c.chat.completions.create(model="rag:handbook", messages=[{"role": "user", "content": QUESTION}],
                                     temperature=0, max_tokens=8)  # fmt: skip
    assert r.choices[0].text == chat.choices[0].message.content
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (
        chat.usage.prompt_tokens,
        chat.usage.completion_tokens,
    )
    assert r.model_extra["sources"] == chat.model_extra["sources"]
    assert r.model_extra["cited"] == chat.model_extra["cited"]
    assert "twenty-eight days" in r.model_extra["sources"][0]["text"]
    chunks = list(c.completions.create(model="rag:handbook", prompt=QUESTION, temperature=0, max_tokens=8,
                                       stream=True))  # fmt: skip
    assert chunks[0].model_extra["sources"] == r.model_extra["sources"]
    assert _text(chunks) == r.choices[0].text and chunks[-1].model_extra["cited"] == r.model_extra["cited"]


def test_several_prompts_are_a_choice_each(live):
    # LangChain's OpenAI sends its batch (up to 20 prompts) in one request; each is answered as if alone
    server, w = live
    c = sdk(server, w.member)
    ask = {"model": "tiny-glm", "temperature": 0, "max_tokens": 8}
    prompts = [PROMPT, "Where is the office?", PROMPT]
    alone = [c.completions.create(**ask, prompt=p) for p in prompts]
    r = c.completions.create(**ask, prompt=prompts)
    assert [(ch.index, ch.text, ch.finish_reason) for ch in r.choices] == [
        (i, a.choices[0].text, a.choices[0].finish_reason) for i, a in enumerate(alone)
    ]
    assert r.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert r.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
    chunks = list(
        c.completions.create(**ask, prompt=prompts, stream=True, stream_options={"include_usage": True})
    )
    for i, a in enumerate(alone):
        assert _text(ch for ch in chunks if ch.choices and ch.choices[0].index == i) == a.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    finished = [ch.choices[0].index for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert sorted(finished) == [0, 1, 2]

    questions = [QUESTION, "Where do leave requests go?"]
    r = c.completions.create(model="rag:handbook", prompt=questions, temperature=0, max_tokens=6)
    for ch, q in zip(r.choices, questions, strict=True):  # several: each choice carries its own sources
        one = c.completions.create(model="rag:handbook", prompt=q, temperature=0, max_tokens=6)
        assert ch.text == one.choices[0].text
        assert (ch.model_extra["sources"], ch.model_extra["cited"]) == (
            one.model_extra["sources"], one.model_extra["cited"])  # fmt: skip
    with pytest.raises(openai.NotFoundError):  # one prompt refused: the request is
        c.completions.create(model="rag:board", prompt=questions)


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"suffix": "and that is all."}, "suffix", "unsupported_parameter"),
        ({"best_of": 2}, "best_of", "unsupported_parameter"),
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"logprobs": 6}, "logprobs", "invalid_request"),  # OpenAI's limit: 0 to 5
        ({"max_tokens": -1}, "max_tokens", "invalid_request"),
        ({"model": "rag:handbook", "logprobs": 1, "echo": True}, "echo", "unsupported_parameter"),
        ({"model": "rag:handbook", "max_tokens": 0}, "max_tokens", "invalid_request"),
        ({"prompt": ["one"] * 21}, "prompt", "invalid_request"),
        ({"prompt": []}, "prompt", "invalid_request"),
        ({"model": "rag:handbook", "prompt": "  "}, "prompt", "invalid_request"),
        ({"logit_bias": {"42": -100}}, "logit_bias", "unsupported_parameter"),
        ({"stop": [f"s{i}" for i in range(17)]}, "stop", "invalid_request"),
        ({"temperature": 3}, "temperature", "invalid_request"),
    ],
)  # fmt: skip
def test_options_this_server_cannot_honour_are_refused_by_name(live, extra, param, code):
    server, w = live
    with pytest.raises(openai.BadRequestError) as e:
        sdk(server, w.member).completions.create(
            **{"model": "tiny-glm", "prompt": "hi", "max_tokens": 4, **extra}
        )
    assert (e.value.code, e.value.param) == (code, param), e.value.body


def test_defaults_clients_send_change_nothing(live):
    # LangChain's OpenAI sends best_of 1, n 1, logprobs null and an empty logit_bias with every prompt
    server, w = live
    c = sdk(server, w.member)
    ask = {"model": "tiny-glm", "prompt": PROMPT, "temperature": 0, "max_tokens": 8}
    bare = c.completions.create(**ask)
    full = c.completions.create(**ask, best_of=1, n=1, logprobs=None, logit_bias={}, echo=False, suffix=None,
                                presence_penalty=0, frequency_penalty=0, top_p=1, user="tool-42")  # fmt: skip
    assert (full.choices[0].text, full.usage) == (bare.choices[0].text, bare.usage)
    nulls = {k: None for k in ("temperature", "top_p", "n", "stream", "stream_options", "stop", "max_tokens",
                               "echo", "suffix", "best_of", "logprobs", "seed", "logit_bias", "user")}  # fmt: skip
    r = httpx.post(f"{server.base}/v1/completions", json={"model": "tiny-glm", "prompt": PROMPT, **nulls},
                   headers=w.member, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "text_completion" and r.json()["choices"][0]["text"]


def test_errors_access_and_the_question_limit_are_the_chat_route_s(live, monkeypatch):
    server, w = live
    member = sdk(server, w.member)
    for model in ("rag:board", "rag:nope", "gpt-3.5-turbo-instruct"):  # forbidden looks exactly like absent
        with pytest.raises(openai.NotFoundError) as e:
            member.completions.create(model=model, prompt=QUESTION)
        assert e.value.code == "model_not_found"
        assert (
            e.value.body["message"] == f"The model `{model}` does not exist or you do not have access to it."
        )
    assert sdk(server, w.admin).completions.create(model="rag:board", prompt="merger", max_tokens=2).choices
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=f"{server.base}/v1", api_key="agk_wrong", max_retries=0).completions.create(
            model="tiny-glm", prompt="hi"
        )
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as e:
        member.completions.create(model="tiny-glm", prompt=PROMPT, max_tokens=10**7)
    assert e.value.code == "context_length_exceeded" and "the prompt takes" in e.value.body["message"]

    # one window of questions with /v1/chat/completions and /api/ask
    c = sdk(server, make_user(Role.member, group_ids=[w.group]))
    monkeypatch.setattr(settings, "ask_rate_per_minute", 1)
    c.chat.completions.create(
        model="rag:handbook", messages=[{"role": "user", "content": QUESTION}], max_tokens=2
    )
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as e:
            c.completions.create(model="tiny-glm", prompt=PROMPT, max_tokens=2, stream=stream)
        assert e.value.code == "rate_limit_exceeded" and "retry-after" in e.value.response.headers
    # each prompt of a request is a question
    c = sdk(server, make_user(Role.member, group_ids=[w.group]))
    monkeypatch.setattr(settings, "ask_rate_per_minute", 2)
    with pytest.raises(openai.RateLimitError):
        c.completions.create(model="tiny-glm", prompt=[PROMPT] * 3, max_tokens=2)
