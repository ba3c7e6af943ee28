"""/v1 with no model configured (the CPU default: `rag:` models answer by quoting their sources), driven
by the official `openai` client against uvicorn on loopback: what a client picks from the models list
answers, streamed and not, with usage; sampling options are accepted; what cannot be honoured is a 400."""

from __future__ import annotations

import pytest

from tests.app.ask_support import live_world, sdk

openai = pytest.importorskip("openai")

QUESTION = {"role": "user", "content": "How many days of paid leave?"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_world(tmp_path_factory.mktemp("quoting")) as got:
        yield got


def test_the_listed_rag_model_answers_streamed_and_not(live):
    server, w = live
    c = sdk(server, w.member)
    assert [m.id for m in c.models.list()] == ["rag:handbook"]  # no generator to list
    r = c.chat.completions.create(model="rag:handbook", messages=[QUESTION])
    text, u = r.choices[0].message.content, r.usage
    assert "twenty-eight days" in text and r.choices[0].finish_reason == "stop"
    assert u.completion_tokens > 10 and u.total_tokens == u.prompt_tokens + u.completion_tokens

    chunks = list(c.chat.completions.create(model="rag:handbook", messages=[QUESTION], stream=True,
                                            stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == text
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == u  # OpenAI's usage chunk: last, no choices
    assert all(ch.usage is None for ch in chunks[:-1])
    plain = list(c.chat.completions.create(model="rag:handbook", messages=[QUESTION], stream=True))
    assert all(ch.usage is None and ch.choices for ch in plain)  # no usage chunk unless asked for

    with pytest.raises(openai.NotFoundError) as e:  # a client's default model
        c.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION])
    assert e.value.code == "model_not_found"


def test_sampling_options_are_accepted_and_the_quote_is_the_same(live):
    # a quoted answer is not sampled: temperature, top_p, seed, penalties change nothing, and must not fail
    server, w = live
    c = sdk(server, w.member)
    bare = c.chat.completions.create(model="rag:handbook", messages=[QUESTION]).choices[0].message.content
    r = c.chat.completions.create(
        model="rag:handbook", messages=[QUESTION], temperature=0.7, top_p=0, seed=3, presence_penalty=1,
        frequency_penalty=-1, user="tool-42", n=1, response_format={"type": "text"}, logprobs=False,
        extra_body={"an_option_of_another_server": True},
    )  # fmt: skip
    assert r.choices[0].message.content == bare


def test_multi_turn_content_parts_are_read_as_strings_are(live):
    server, w = live
    c = sdk(server, w.member)
    turns = [("system", "Answer briefly."), ("user", "What is the travel policy?"),
             ("assistant", "I do not know."), ("user", "How many days of paid leave?")]  # fmt: skip
    answers = {
        c.chat.completions.create(model="rag:handbook", messages=msgs).choices[0].message.content
        for msgs in (
            [{"role": role, "content": text} for role, text in turns],
            [{"role": role, "content": [{"type": "text", "text": text}]} for role, text in turns],
        )
    }
    assert len(answers) == 1 and "twenty-eight days" in answers.pop()


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        # answered with logprobs.content [] although usage counted the answer's tokens
        ({"logprobs": True}, "logprobs", "logprobs is not supported without a generator: the answer is quoted "
         "from the sources, not sampled."),
        # the message named no param, so a client could not tell which field was wrong
        ({"messages": [QUESTION, {"role": "assistant", "content": "Twenty-eight."}]}, "messages",
         "The last message must be a non-empty user message."),
        ({"n": 3}, "n", "n=3 is not supported: this server returns one choice per request; send n requests "
         "for n answers."),
        # a text part without its text (null, a number) was a 500 "The server had an error"
        *(({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi."}, {"type": "text", "text": t}]}]},
           "messages.0.content.1.text", "Invalid request: messages.0.content.1.text: Input should be a valid string")
          for t in (None, 28)),
    ],
)  # fmt: skip
def test_what_a_quote_cannot_honour_is_a_400_naming_it(live, extra, param, message):
    server, w = live
    with pytest.raises(openai.BadRequestError) as e:
        sdk(server, w.member).chat.completions.create(
            **{"model": "rag:handbook", "messages": [QUESTION], **extra}
        )
    assert (e.value.param, e.value.body["message"]) == (param, message)


def test_text_completions_quote_as_chat_does(live):
    # /v1/completions with no generator: the rag: model's prompt is the question, the quote its text, cut at
    # stop and max_tokens as chat's is; there is no plain model to continue a raw prompt
    server, w = live
    c = sdk(server, w.member)
    chat = c.chat.completions.create(model="rag:handbook", messages=[QUESTION])
    r = c.completions.create(model="rag:handbook", prompt=QUESTION["content"])
    assert r.choices[0].text == chat.choices[0].message.content and "twenty-eight days" in r.choices[0].text
    assert (r.usage, r.model_extra["sources"]) == (chat.usage, chat.model_extra["sources"])
    chunks = list(c.completions.create(model="rag:handbook", prompt=QUESTION["content"], stream=True,
                                       stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == r.choices[0].text
    assert chunks[-1].usage == r.usage
    short = c.completions.create(model="rag:handbook", prompt=QUESTION["content"], max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens <= 3
    with pytest.raises(openai.BadRequestError) as e:  # a quote is not sampled: it has no logprobs
        c.completions.create(model="rag:handbook", prompt=QUESTION["content"], logprobs=1)
    assert (e.value.code, e.value.param) == ("unsupported_parameter", "logprobs")
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    assert e.value.code == "model_not_found"
