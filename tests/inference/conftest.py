"""Tiny random GLM-4 checkpoints (both architectures) and a small trained tokenizer, built once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
            "<|assistant|>", "<|observation|>"]  # fmt: skip

# The GLM-4 chat template layout (tokenizer_config.json of glm-4-9b-chat-hf, without the tool branches).
CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for item in messages %}<|{{ item['role'] }}|>\n{{ item['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CORPUS = """
The engine answers questions about company documents. Employees ask in a browser and tools call the API.
Retrieval finds the passages; the model reads them and writes a cited answer, token by token.
Prefix caching reuses the key and value blocks of a shared system prompt and shared context passages.
When the pool of blocks runs short, the newest request is preempted and recomputed later.
Quarterly revenue grew by twelve percent; the travel policy allows economy class for short flights.
企业问答系统读取公司文档并回答员工的问题。检索模块找到相关段落，模型生成带引用的答案。
前缀缓存复用共享系统提示和上下文段落的键值块。当内存不足时，最新的请求会被抢占并稍后重新计算。
差旅政策规定短途航班乘坐经济舱。季度收入增长了百分之十二。你好，世界！今天天气很好。
"""

VOCAB = 640  # model vocabulary (>= tokenizer vocabulary; the rest are never produced by the tokenizer)


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=560, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([line for line in CORPUS.splitlines() if line] * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[gMASK]:0 <sop>:0 $A:0",
        special_tokens=[("[gMASK]", tok.token_to_id("[gMASK]")), ("<sop>", tok.token_to_id("<sop>"))],
    )
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "chat_template": CHAT_TEMPLATE,
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|observation|>"],
            }
        )
    )


def build_checkpoint(out: Path, arch: str, tok_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import Glm4Config, Glm4ForCausalLM, GlmConfig, GlmForCausalLM

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    eos = [tok.token_to_id(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    cfg_cls, model_cls = (GlmConfig, GlmForCausalLM) if arch == "glm" else (Glm4Config, Glm4ForCausalLM)
    cfg = cfg_cls(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2 if arch == "glm" else 3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        partial_rotary_factor=0.5,
        pad_token_id=eos[0],
        eos_token_id=eos,
        initializer_range=0.2,  # spread logits so greedy choices are not near-ties
        tie_word_embeddings=False,
    )
    torch.manual_seed(1234 if arch == "glm" else 4321)
    model = model_cls(cfg).eval()
    with torch.no_grad():  # make biases and norm weights non-trivial so a missed one shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.2)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(out, max_shard_size="60KB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (out / f).write_bytes((tok_dir / f).read_bytes())


def build_scripted_checkpoint(
    out: Path,
    pieces: list[str],
    chat_template: str = CHAT_TEMPLATE,
    last: str = "<|assistant|>",
    special: tuple[str, ...] = (),
) -> Path:
    """A GlmForCausalLM in `out` whose greedy answer to any chat prompt is `pieces`, one token each (added to the
    tokenizer as plain text where missing; those in `special` as special tokens), then end of text: an engine
    answer a test can know in advance. `chat_template`: the tokenizer's; `last`: the token its generation prompt
    ends with (added like the pieces).

    Each layer's output projections are zero, so the last hidden state is the current token's embedding; the
    embedding of the i-th token of the chain (`last`, which ends the prompt, then the pieces) is the unit
    vector e_i, and lm_head maps e_i to the chain's next token: a bigram model, so no piece may repeat."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import GlmConfig, GlmForCausalLM

    out.mkdir(parents=True)
    build_tokenizer(out)
    if chat_template != CHAT_TEMPLATE:
        cfg_file = out / "tokenizer_config.json"
        cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "chat_template": chat_template}))
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(p, special=True) for p in special if tok.token_to_id(p) is None])
    tok.add_tokens([p for p in (last, *pieces) if tok.token_to_id(p) is None])
    tok.save(str(out / "tokenizer.json"))
    chain = [tok.token_to_id(t) for t in (last, *pieces, "<|endoftext|>")]
    assert len(set(chain)) == len(chain), f"{chain=}"  # a bigram chain must not revisit a token
    eos = [tok.token_to_id(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    cfg = GlmConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, partial_rotary_factor=0.5,
                    pad_token_id=eos[0], eos_token_id=eos, tie_word_embeddings=False)  # fmt: skip
    assert len(chain) <= cfg.hidden_size and tok.get_vocab_size(with_added_tokens=True) <= VOCAB
    torch.manual_seed(0)
    model = GlmForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for i, (here, nxt) in enumerate(zip(chain, chain[1:], strict=False)):
            model.model.embed_tokens.weight[here, i] = 1.0
            model.lm_head.weight[nxt, i] = 10.0  # the final RMSNorm scales e_i to 8 e_i: logit 80, the rest 0
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """{'glm': GlmForCausalLM dir, 'glm4': Glm4ForCausalLM dir}, sharded safetensors + tokenizer."""
    root = tmp_path_factory.mktemp("ckpt")
    tok_dir = root / "tok"
    tok_dir.mkdir()
    build_tokenizer(tok_dir)
    out = {}
    for arch in ("glm", "glm4"):
        d = root / arch
        build_checkpoint(d, arch, tok_dir)
        out[arch] = d
    return out


_HF: dict[Path, object] = {}


def hf_model(path: Path):
    """transformers' model on the same weights (float32, eager attention), cached per path."""
    if path not in _HF:
        from transformers import AutoModelForCausalLM

        _HF[path] = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager"
        ).eval()
    return _HF[path]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()
