"""Model hyper-parameters read from a checkpoint's config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# architecture name in config.json -> whether each layer has the extra post-attention / post-MLP norms
ARCHITECTURES = {"GlmForCausalLM": False, "Glm4ForCausalLM": True}


def _unsupported(arch: str, cfg: dict) -> str:
    """Why a config.json of another architecture cannot be loaded, and what to load instead."""
    supported = ", ".join(ARCHITECTURES)
    if cfg.get("model_type") == "chatglm" or arch.startswith("ChatGLM"):
        return (
            f"unsupported architecture {arch!r}: this is the original ChatGLM-format release of the model (custom "
            f"code, fused query_key_value weights, a tiktoken tokenizer); the engine reads the Hugging Face-format "
            f"releases ({supported}), e.g. THUDM/glm-4-9b-chat-hf or THUDM/GLM-4-9B-0414"
        )
    return f"unsupported architecture {arch!r}; supported: {supported} (GLM-4 text models)"


@dataclass
class ModelConfig:
    """GLM-4 hyper-parameters (both `GlmForCausalLM` and `Glm4ForCausalLM`)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1.5625e-07
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5
    attention_bias: bool = True
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 131072
    eos_token_ids: list[int] = field(default_factory=list)
    # derived
    post_norms: bool = field(init=False)
    rotary_dim: int = field(init=False)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unsupported architecture {self.architecture!r}; supported: {', '.join(ARCHITECTURES)}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads={self.num_heads} is not a multiple of {self.num_kv_heads=}"
            )
        self.post_norms = ARCHITECTURES[self.architecture]
        self.rotary_dim = int(self.head_dim * self.partial_rotary_factor)
        assert self.rotary_dim % 2 == 0 and self.rotary_dim <= self.head_dim, f"{self.rotary_dim=}"

    @classmethod
    def from_dict(cls, cfg: dict) -> ModelConfig:
        archs = cfg.get("architectures") or []
        if not archs:
            raise ValueError(f"config.json has no 'architectures'; supported: {', '.join(ARCHITECTURES)}")
        if archs[0] not in ARCHITECTURES:
            # named before the keys are checked: other families name them differently, and "missing the key
            # 'vocab_size'" would send the user looking in the wrong place
            raise ValueError(_unsupported(archs[0], cfg))
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        ):
            if key not in cfg:
                raise ValueError(f"config.json is missing the key {key!r}")
        # transformers 5 nests rope settings in rope_parameters; 4.x checkpoints keep them at top level
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"unsupported rope_type {rope_type!r}; supported: 'default'")
        eos = cfg.get("eos_token_id")
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        return cls(
            architecture=archs[0],
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            num_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
            rms_norm_eps=cfg.get("rms_norm_eps", 1.5625e-07),
            rope_theta=rope.get("rope_theta", cfg.get("rope_theta", 10000.0)),
            partial_rotary_factor=rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 0.5)),
            attention_bias=cfg.get("attention_bias", True),
            tie_word_embeddings=cfg.get("tie_word_embeddings", False),
            max_position_embeddings=cfg.get("max_position_embeddings", 131072),
            eos_token_ids=eos,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> ModelConfig:
        file = Path(path) / "config.json"
        if not file.is_file():
            raise FileNotFoundError(f"model directory {str(path)!r} has no config.json")
        return cls.from_dict(json.loads(file.read_text()))
