"""Stream a Hugging Face GLM-4 checkpoint (safetensors, sharded or not) into a `GlmModel`.

Shards are read one at a time and each tensor is copied (converted, quantized) straight into the
model's preallocated storage, so peak host memory is about one shard beyond the model itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open

from kernels import Int8Weight

from .config import ModelConfig
from .model import GlmModel

log = logging.getLogger(__name__)

Writer = Callable[[torch.Tensor], None]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; choose one of {', '.join(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def shard_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, each checked to exist."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not weight_map:
            raise ValueError(f"{index} has no 'weight_map'")
        files = [path / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"shard {f.name!r} listed in {index.name} is missing from {path}")
        return files
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}")


def _row_writer(target: torch.Tensor | Int8Weight, row0: int = 0, rows: int | None = None) -> Writer:
    """Copy a checkpoint tensor of exactly `rows` rows into target[row0:row0 + rows] (all rows by
    default), quantizing for an Int8Weight."""
    dest = target.qweight if isinstance(target, Int8Weight) else target
    rows = dest.shape[0] - row0 if rows is None else rows
    expected = (rows, *dest.shape[1:])

    def write(t: torch.Tensor) -> None:
        if tuple(t.shape) != expected:
            raise ValueError(f"expected shape {expected}, got {tuple(t.shape)}")
        if isinstance(target, Int8Weight):
            q = Int8Weight.quantize(t)
            target.qweight[row0 : row0 + rows].copy_(q.qweight)
            target.scale[row0 : row0 + rows].copy_(q.scale)
        else:
            target[row0 : row0 + rows].copy_(t)

    return write


def weight_slots(model: GlmModel) -> dict[str, Writer]:
    """Checkpoint key -> writer into the model's storage (q/k/v land in slices of the fused qkv)."""
    cfg = model.cfg
    hd = cfg.head_dim
    q_rows, kv_rows = cfg.num_heads * hd, cfg.num_kv_heads * hd
    slots = {
        "model.embed_tokens.weight": _row_writer(model.embed),
        "model.norm.weight": _row_writer(model.norm),
        "lm_head.weight": _row_writer(model.lm_head),
    }
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        for name, row0, rows in (("q", 0, q_rows), ("k", q_rows, kv_rows), ("v", q_rows + kv_rows, kv_rows)):
            slots[f"{p}self_attn.{name}_proj.weight"] = _row_writer(layer.qkv, row0, rows)
            if layer.qkv_bias is not None:
                slots[f"{p}self_attn.{name}_proj.bias"] = _row_writer(layer.qkv_bias, row0, rows)
        slots[f"{p}self_attn.o_proj.weight"] = _row_writer(layer.o_proj)
        slots[f"{p}mlp.gate_up_proj.weight"] = _row_writer(layer.gate_up)
        slots[f"{p}mlp.down_proj.weight"] = _row_writer(layer.down)
        slots[f"{p}input_layernorm.weight"] = _row_writer(layer.input_norm)
        slots[f"{p}post_attention_layernorm.weight"] = _row_writer(layer.post_attention_norm)
        if layer.post_self_attn_norm is not None:
            slots[f"{p}post_self_attn_layernorm.weight"] = _row_writer(layer.post_self_attn_norm)
            slots[f"{p}post_mlp_layernorm.weight"] = _row_writer(layer.post_mlp_norm)
    return slots


_IGNORED = re.compile(r"rotary_emb\.inv_freq$")


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    quantization: str | None = None,
) -> GlmModel:
    """Build a GlmModel from a checkpoint directory, streaming its shards."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {str(path)!r} does not exist")
    if quantization not in (None, "int8"):
        raise ValueError(f"unsupported quantization {quantization!r}; choose None or 'int8'")
    cfg = ModelConfig.from_dir(path)
    files = shard_files(path)
    model = GlmModel(cfg, device, resolve_dtype(dtype), int8=quantization == "int8")
    slots = weight_slots(model)
    loaded: set[str] = set()
    with torch.no_grad():
        for file in files:
            with safe_open(str(file), framework="pt", device="cpu") as f:
                for key in f.keys():
                    write = slots.get(key)
                    if write is None:
                        if not _IGNORED.search(key):
                            log.warning("ignoring unexpected weight %r in %s", key, file.name)
                        continue
                    t = f.get_tensor(key).to(device=model.device, dtype=model.dtype)
                    try:
                        write(t)
                    except ValueError as e:
                        raise ValueError(f"weight {key!r} in {file.name}: {e}") from None
                    loaded.add(key)
            log.info("loaded %s", file.name)
    if "lm_head.weight" not in loaded and cfg.tie_word_embeddings:
        model.lm_head = Int8Weight.quantize(model.embed) if model.int8 else model.embed
        loaded.add("lm_head.weight")
    missing = sorted(set(slots) - loaded)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"checkpoint {path} is missing weight {missing[0]!r}{more}")
    return model
