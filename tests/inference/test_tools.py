"""Tool calling the GLM-4 way (inference.tools): what a chat template does with tools, calls and results, found by
rendering; the prompt a conversation with tools becomes; a reply read as calls or text, whole and streamed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference import Chat, ToolCall, ToolCallSplitter, ToolFormat
from inference.tokenizer import Tokenizer
from inference.tools import parse_tool_calls
from tests.inference.conftest import CHAT_TEMPLATE, build_tokenizer

# Ours, written for these tests, laid out as GLM-4-0414's: the tools in the `tools` variable, an earlier call an
# assistant turn named by `metadata`, a result an `observation` turn (any other role is dropped)
GLM_WAY = (
    "[gMASK]<sop>{% if tools %}<|system|>\nTools you may call:{% for t in tools %}\n\n## {{ t.function.name }}\n"
    "{{ t.function | tojson }}{% endfor %}\nCall one as its name on a line, then its arguments in JSON.{% endif %}"
    "{% for m in messages %}{% if m.role == 'assistant' and m.metadata %}<|assistant|>{{ m.metadata }}\n"
    "{{ m.content }}{% elif m.role in ['system', 'user', 'assistant', 'observation'] %}<|{{ m.role }}|>\n"
    "{{ m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# laid out as glm-4-9b-chat's: the tools on a message of their own, every role written as <|role|>
ON_A_MESSAGE = (
    "[gMASK]<sop>{% for m in messages %}{% if m.tools is defined %}<|system|>\nTools:{% for t in m.tools %} "
    "{{ t.function.name }}{% endfor %}{% endif %}{% if m.content %}<|{{ m.role }}|>{{ m.metadata }}\n"
    "{{ m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# OpenAI's names: `tool_calls` on the assistant turn, results as `tool` turns
OPENAI_WAY = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>{% endif %}"
    "{% for m in messages %}{% if m.role == 'tool' %}<result {{ m.name }}>{{ m.content }}</result>"
    "{% elif m.tool_calls %}{% for c in m.tool_calls %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}"
    "</call>{% endfor %}{% elif m.role in ['system', 'user', 'assistant'] %}<{{ m.role }}>{{ m.content }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1", "name": "get_weather"},
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tools-tok")
    build_tokenizer(d)
    return d


def _tokenizer(tok_dir: Path, template: str, tmp_path: Path) -> Tokenizer:
    tmp_path.mkdir(exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / f).write_bytes((tok_dir / f).read_bytes())
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "chat_template": template}))
    return Tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (GLM_WAY, ToolFormat("variable", "metadata", "observation")),
        (
            ON_A_MESSAGE,
            ToolFormat("message", "metadata", "observation"),
        ),  # <|tool|> shows too: GLM's name wins
        (OPENAI_WAY, ToolFormat("variable", "tool_calls", "tool")),
        (CHAT_TEMPLATE, None),  # the tiny checkpoints' template has no tools: none can be offered
    ],
)
def test_the_format_is_found_by_rendering(tok_dir, tmp_path, template, expected):
    assert ToolFormat.detect(_tokenizer(tok_dir, template, tmp_path)) == expected


def test_a_conversation_with_tools_renders_the_glm_way(tok_dir, tmp_path):
    tok = _tokenizer(tok_dir, GLM_WAY, tmp_path)
    fmt = ToolFormat.detect(tok)
    chat = fmt.chat(TURNS, [WEATHER])
    assert chat.tools == [WEATHER] and chat.reply_start == ""
    assert tok.apply_chat_template(chat.messages, tools=chat.tools) == (
        # (a newline right after a block tag is dropped: trim_blocks, as transformers renders)
        "[gMASK]<sop><|system|>\nTools you may call:\n## get_weather\n"
        + json.dumps(WEATHER["function"])
        + "Call one as its name on a line, then its arguments in JSON.<|user|>\nWeather in Paris?"
        '<|assistant|>get_weather\n{"city": "Paris"}<|observation|>\n{"temp": 21}<|assistant|>'
    )
    # what the model writes after a call's text goes back as it was; a named function starts the reply
    chat = fmt.chat([TURNS[0]], [WEATHER], "get_weather\n")
    text = tok.decode(tok.encode_chat(chat), skip_special_tokens=False)
    assert text.endswith("<|user|>\nWeather in Paris?<|assistant|>get_weather\n"), text


def test_text_beside_calls_and_several_calls_go_back_as_turns(tok_dir, tmp_path):
    fmt = ToolFormat.detect(_tokenizer(tok_dir, GLM_WAY, tmp_path))
    second = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    chat = fmt.chat([{"role": "assistant", "content": "Let me look.", "tool_calls": [CALL, second]}], None)
    assert chat.tools is None
    assert chat.messages == [
        {"role": "assistant", "content": "Let me look."},
        {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Paris"}'},
        {"role": "assistant", "metadata": "get_time", "content": "{}"},
    ]


def test_tools_on_a_message_and_in_openai_names(tok_dir, tmp_path):
    tok = _tokenizer(tok_dir, ON_A_MESSAGE, tmp_path / "a")
    chat = ToolFormat.detect(tok).chat([{"role": "system", "content": "Be brief."}, *TURNS], [WEATHER])
    assert chat.tools is None
    assert tok.apply_chat_template(chat.messages) == (
        "[gMASK]<sop><|system|>\nTools: get_weather<|system|>\nBe brief.<|user|>\nWeather in Paris?"
        '<|assistant|>get_weather\n{"city": "Paris"}<|observation|>\n{"temp": 21}<|assistant|>'
    )
    tok = _tokenizer(tok_dir, OPENAI_WAY, tmp_path / "b")
    chat = ToolFormat.detect(tok).chat(TURNS, [WEATHER])
    assert tok.apply_chat_template(chat.messages, tools=chat.tools) == (
        '<tools>get_weather;</tools><user>Weather in Paris?<call>get_weather {"city": "Paris"}</call>'
        '<result get_weather>{"temp": 21}</result><assistant>'
    )


def test_a_template_without_results_refuses_them(tok_dir, tmp_path):
    no_results = GLM_WAY.replace("'observation'", "'nothing'")
    fmt = ToolFormat.detect(_tokenizer(tok_dir, no_results, tmp_path))
    assert fmt == ToolFormat("variable", "metadata", None)
    assert isinstance(fmt.chat(TURNS[:2], [WEATHER]), Chat)
    with pytest.raises(ValueError, match="shows no tool results"):
        fmt.chat(TURNS, [WEATHER])


NAMES = frozenset({"get_weather", "get_time"})


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('get_weather\n{"city": "Paris"}', [ToolCall("get_weather", '{"city": "Paris"}')]),
        ('\nget_weather\n  {"city": "巴黎"}\n', [ToolCall("get_weather", '{"city": "巴黎"}')]),
        # two calls in one turn: the <|assistant|> between them is not in the decoded text
        (
            'get_weather\n{"city": "Paris"}get_time\n{}',
            [ToolCall("get_weather", '{"city": "Paris"}'), ToolCall("get_time", "{}")],
        ),  # fmt: skip
        ('get_weather\n{"city": Paris}', None),  # not JSON
        ("get_weather\n[1, 2]", None),  # not an object
        ('get_news\n{"city": "Paris"}', None),  # not a function offered
        ('get_weather\n{"city": "Paris"} and then some', None),  # text after the call
        ("get_weather", None),
        ("It is sunny in Paris.", None),
        ("", None),
    ],
)
def test_a_reply_is_calls_or_text(text, calls):
    assert parse_tool_calls(text, NAMES) == calls


def _stream(splitter: ToolCallSplitter, pieces: list[str]) -> tuple[list[str], str, list[ToolCall]]:
    shown = [splitter.feed(p) for p in pieces]
    rest, calls = splitter.finish()
    return shown, rest, calls


def test_a_call_is_held_back_while_it_streams():
    shown, rest, calls = _stream(ToolCallSplitter(NAMES), ["get", "_weather", "\n", '{"city":', ' "Paris"}'])
    assert shown == [""] * 5 and rest == ""
    assert calls == [ToolCall("get_weather", '{"city": "Paris"}')]


def test_text_is_shown_once_it_cannot_be_a_call():
    # "get" may begin get_weather; " ready" cannot: both go out then, and the rest at once
    shown, rest, calls = _stream(ToolCallSplitter(NAMES), ["\n", "get", " ready", ",", " it rains."])
    assert shown == ["", "", "\nget ready", ",", " it rains."] and (rest, calls) == ("", [])
    # a function's name and then no JSON object is text too
    shown, rest, calls = _stream(ToolCallSplitter(NAMES), ["get_time", "\n", "is", " now."])
    assert shown == ["", "", "get_time\nis", " now."] and (rest, calls) == ("", [])


def test_a_broken_call_comes_out_as_text_at_the_end():
    pieces = ["get_weather", "\n", '{"city":', " Paris}"]
    shown, rest, calls = _stream(ToolCallSplitter(NAMES), pieces)
    assert shown == [""] * 4 and rest == "".join(pieces) and calls == []


def test_a_named_function_reply_is_its_arguments():
    shown, rest, calls = _stream(ToolCallSplitter(NAMES, forced="get_time"), ['{"zone":', ' "UTC"}'])
    assert shown == ["", ""] and rest == "" and calls == [ToolCall("get_time", '{"zone": "UTC"}')]
    shown, rest, calls = _stream(ToolCallSplitter(NAMES, forced="get_time"), ["I", " cannot."])
    assert (rest, calls) == ("I cannot.", [])
