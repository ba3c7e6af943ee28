"""Checkpoint loading: sharded streaming, INT8 at load, and errors that name what is wrong."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.config import ModelConfig
from inference.runner import ModelRunner
from inference.weights import load_model, shard_files
from kernels import Int8Weight

from .conftest import rel_err


@pytest.fixture
def ckpt_copy(checkpoints, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(checkpoints["glm"], dst)
    return dst


def test_config_reads_both_architectures(checkpoints):
    glm, glm4 = ModelConfig.from_dir(checkpoints["glm"]), ModelConfig.from_dir(checkpoints["glm4"])
    assert (glm.architecture, glm.post_norms, glm.rotary_dim) == ("GlmForCausalLM", False, 8)
    assert (glm4.architecture, glm4.post_norms, glm4.num_layers) == ("Glm4ForCausalLM", True, 3)
    assert glm.num_heads == 4 and glm.num_kv_heads == 2 and glm.attention_bias
    assert len(shard_files(checkpoints["glm"])) > 3  # the index path is exercised


def test_missing_files_and_keys_are_named(ckpt_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    index = json.loads((ckpt_copy / "model.safetensors.index.json").read_text())
    # a tensor missing from its shard
    key = "model.layers.1.self_attn.k_proj.bias"
    shard = ckpt_copy / index["weight_map"][key]
    tensors = load_file(shard)
    del tensors[key]
    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing weight 'model\.layers\.1\.self_attn\.k_proj\.bias'"):
        load_model(ckpt_copy)
    # a shard file missing from the directory
    shard.unlink()
    with pytest.raises(
        FileNotFoundError, match=f"shard '{shard.name}' listed in model.safetensors.index.json"
    ):
        load_model(ckpt_copy)
    (ckpt_copy / "model.safetensors.index.json").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json"):
        load_model(ckpt_copy)
    (ckpt_copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(ckpt_copy)


def test_bad_config_and_options(ckpt_copy):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    (ckpt_copy / "config.json").write_text(json.dumps({**cfg, "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(
        ValueError, match="unsupported architecture 'LlamaForCausalLM'; supported: GlmForCausalLM"
    ):
        load_model(ckpt_copy)
    # the original ChatGLM-format GLM-4 (its config has no vocab_size): named as such, with what to load instead
    chatglm = {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "padded_vocab_size": 151552,
               "hidden_size": 4096, "ffn_hidden_size": 13696, "num_layers": 40, "multi_query_group_num": 2}  # fmt: skip
    (ckpt_copy / "config.json").write_text(json.dumps(chatglm))
    with pytest.raises(ValueError, match="original ChatGLM-format release.*glm-4-9b-chat-hf"):
        load_model(ckpt_copy)
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ValueError, match="unsupported dtype 'float64'; choose one of float32, bfloat16, float16"
    ):
        load_model(ckpt_copy, dtype="float64")
    with pytest.raises(ValueError, match="unsupported quantization 'int4'"):
        load_model(ckpt_copy, quantization="int4")
    # a weight of the wrong shape names the key
    index = json.loads((ckpt_copy / "model.safetensors.index.json").read_text())
    shard = ckpt_copy / index["weight_map"]["model.norm.weight"]
    tensors = load_file(shard)
    tensors["model.norm.weight"] = torch.ones(3)
    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="weight 'model.norm.weight'"):
        load_model(ckpt_copy)


def test_int8_weights_equal_dequantized_float_model_and_int8_kv_is_close(checkpoints):
    """INT8 weights compute exactly what a float model holding the dequantized weights computes;
    the INT8 KV cache stays close to the float cache."""
    path = checkpoints["glm4"]
    tokens = [(i * 31 + 7) % 560 for i in range(30)]

    def logits(model, kv="auto"):
        runner = ModelRunner(model, num_blocks=16, block_size=4, kv_cache_dtype=kv)
        blocks = list(range(8))
        runner.execute([(tokens, 0, 20, blocks, False)])
        return runner.execute([(tokens, 20, 10, blocks, True)])[0]

    q = load_model(path, quantization="int8")
    assert isinstance(q.layers[0].qkv, Int8Weight) and q.layers[0].qkv.qweight.dtype == torch.int8
    assert isinstance(q.lm_head, Int8Weight)  # the vocabulary projection is read every decode step too
    fake = load_model(path)
    for layer in fake.layers:
        for name in ("qkv", "o_proj", "gate_up", "down"):
            setattr(layer, name, Int8Weight.quantize(getattr(layer, name)).dequantize())
    fake.lm_head = Int8Weight.quantize(fake.lm_head).dequantize()
    full = logits(load_model(path))
    int8_w = logits(q)
    assert rel_err(int8_w, logits(fake)) < 1e-5
    assert 1e-3 < rel_err(int8_w, full) < 0.15  # quantized, but not far
    kv8 = logits(load_model(path), kv="int8")
    assert 1e-4 < rel_err(kv8, full) < 0.05


def test_transformers4_style_config_and_rope_scaling_refused():
    base = {
        "architectures": ["GlmForCausalLM"],
        "vocab_size": 151552,
        "hidden_size": 4096,
        "intermediate_size": 13696,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 2,
        "head_dim": 128,
        "partial_rotary_factor": 0.5,
        "rope_theta": 10000.0,
        "eos_token_id": [151329, 151336, 151338],
    }  # glm-4-9b-chat-hf as transformers 4.x wrote it
    cfg = ModelConfig.from_dict(base)
    assert (cfg.rotary_dim, cfg.rope_theta, cfg.eos_token_ids) == (64, 10000.0, [151329, 151336, 151338])
    with pytest.raises(ValueError, match="unsupported rope_type 'yarn'"):
        ModelConfig.from_dict({**base, "rope_scaling": {"type": "yarn", "factor": 4.0}})
    with pytest.raises(ValueError, match="missing the key 'hidden_size'"):
        ModelConfig.from_dict({k: v for k, v in base.items() if k != "hidden_size"})


def test_shards_are_streamed_one_at_a_time(checkpoints, monkeypatch):
    """Each shard is opened, copied into the model and closed before the next one is opened."""
    import contextlib

    import inference.weights as weights

    real = weights.safe_open
    state = {"open": 0, "max_open": 0, "files": []}

    @contextlib.contextmanager
    def tracking(path, **kw):
        state["open"] += 1
        state["max_open"] = max(state["max_open"], state["open"])
        state["files"].append(path)
        with real(path, **kw) as f:
            yield f
        state["open"] -= 1

    monkeypatch.setattr(weights, "safe_open", tracking)
    load_model(checkpoints["glm"])
    assert state["max_open"] == 1
    assert len(state["files"]) == len(shard_files(checkpoints["glm"])) > 3
