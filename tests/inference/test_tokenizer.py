"""Tokenizer loading, the GLM-4 chat template, and UTF-8-safe incremental detokenization."""

import pytest

from inference.tokenizer import IncrementalDetokenizer, Tokenizer, glm4_chat_format

MESSAGES = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "差旅政策是什么？"},
]
EXPECTED = "[gMASK]<sop><|system|>\nYou answer briefly.<|user|>\n差旅政策是什么？<|assistant|>"


def test_chat_template_from_tokenizer_config(checkpoints):
    tok = Tokenizer(checkpoints["glm"])
    assert tok.chat_template is not None
    assert tok.apply_chat_template(MESSAGES) == EXPECTED
    assert glm4_chat_format(MESSAGES) == EXPECTED  # the built-in fallback renders the same
    ids = tok.encode_chat(MESSAGES)
    assert ids[:2] == [tok.token_to_id("[gMASK]"), tok.token_to_id("<sop>")]
    assert ids[-1] == tok.token_to_id("<|assistant|>")
    assert tok.encode("hi")[:2] == ids[:2]  # plain text gets the prefix from the post-processor
    with pytest.raises(ValueError, match="'role' and 'content'"):
        tok.apply_chat_template([{"content": "x"}])


def test_missing_tokenizer_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json"):
        Tokenizer(tmp_path)


@pytest.mark.parametrize(
    "text",
    ["企业问答系统读取公司文档。你好，世界！", "Mixed 中文 and English: 季度收入增长了百分之十二 ✓ 🚀"],
)
def test_incremental_detokenizer_never_emits_broken_utf8(checkpoints, text):
    tok = Tokenizer(checkpoints["glm"])
    ids = tok.encode(text, add_special_tokens=False)
    # byte-level BPE splits rare characters (the emoji, the check mark) into several byte tokens
    assert len(ids) > len(text) // 4
    detok = IncrementalDetokenizer(tok)
    deltas = [detok.add(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + detok.flush() == text
    assert "".join(deltas) == text
    assert any(d == "" for d in deltas)  # some tokens were held back mid-character


def test_special_tokens_skipped_in_stream(checkpoints):
    tok = Tokenizer(checkpoints["glm"])
    ids = tok.encode("<|assistant|>你好", add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, skip_special_tokens=True)
    assert "".join(detok.add(i) for i in ids) == "你好"
