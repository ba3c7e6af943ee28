"""Whole-engine parity of the Triton kernels on a random GLM-4 with GLM-4-9B's layer shapes (few layers).

    python benchmarks/kernel_parity_engine.py [--layers 4] [--prompts 16] [--new-tokens 48]

1. bf16: greedy tokens of the engine with the Triton kernels vs the torch reference path
   (AUTOGLM_KERNELS=torch) on the same weights and prompts; per prompt, how many leading tokens agree.
2. INT8 (weights W8A16, KV cache, both), Triton path: relative error of each layer's output (the first k
   layers followed by the final norm) against bf16, and next-token (argmax) agreement after the prompt.
Needs a CUDA GPU. JSON goes to --json, else $OUT/kernel_parity_engine.json, else benchmarks/out/.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import Engine, SamplingParams  # noqa: E402
from inference.config import ModelConfig  # noqa: E402
from inference.model import GlmModel  # noqa: E402
from inference.runner import ModelRunner  # noqa: E402
from kernels import Int8Weight  # noqa: E402

BLOCK = 16
MATRICES = ("qkv", "o_proj", "gate_up", "down")


def glm4_9b_shaped(layers: int, vocab: int) -> ModelConfig:
    return ModelConfig(
        architecture="GlmForCausalLM", vocab_size=vocab, hidden_size=4096, intermediate_size=13696,
        num_layers=layers, num_heads=32, num_kv_heads=2, head_dim=128, partial_rotary_factor=0.5,
        attention_bias=True,
    )  # fmt: skip


@torch.no_grad()
def random_model(cfg: ModelConfig, seed: int, device: str = "cuda", lm_head_std: float = 0.02) -> GlmModel:
    """transformers' initialization: N(0, 0.02) matrices, embeddings and biases; unit norm weights.
    A larger lm_head_std spreads the logits (an untrained model's top two logits are nearly tied, so any
    rounding difference flips its greedy choice far more often than a trained model's would)."""
    torch.manual_seed(seed)
    m = GlmModel(cfg, device, torch.bfloat16)
    m.embed.normal_(0, 0.02)
    m.lm_head.normal_(0, lm_head_std)
    m.norm.fill_(1)
    for layer in m.layers:
        for name in MATRICES:
            getattr(layer, name).normal_(0, 0.02)
        layer.qkv_bias.normal_(0, 0.02)
        layer.input_norm.fill_(1)
        layer.post_attention_norm.fill_(1)
    return m


def int8_copy(m: GlmModel) -> GlmModel:
    q = copy.copy(m)
    q.layers = []
    for layer in m.layers:
        ql = copy.copy(layer)
        for name in MATRICES:
            setattr(ql, name, Int8Weight.quantize(getattr(layer, name)))
        q.layers.append(ql)
    q.lm_head = Int8Weight.quantize(m.lm_head)  # as load_model(..., quantization="int8") does
    q.int8 = True
    return q


def greedy(model: GlmModel, prompts: list[list[int]], new_tokens: int, backend: str, kv: str = "auto"):
    os.environ["AUTOGLM_KERNELS"] = backend
    total = sum(len(p) + new_tokens for p in prompts)
    engine = Engine(model, None, num_blocks=total // BLOCK + 2 * len(prompts) + 8, kv_cache_dtype=kv,
                    max_num_seqs=len(prompts), max_num_batched_tokens=4096)  # fmt: skip
    try:
        res = engine.generate(prompts, SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True))
    finally:
        engine.close()
    return [r.token_ids for r in res]


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two outputs share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@torch.inference_mode()
def layer_outputs(model: GlmModel, prompts: list[list[int]], kv: str, backend: str = "auto"):
    """[(T, H) float32 output of the first k layers + final norm for k = 1..L], last-token logits (B, V)."""
    os.environ["AUTOGLM_KERNELS"] = backend
    blocks = [(len(p) + BLOCK - 1) // BLOCK for p in prompts]
    runner = ModelRunner(model, sum(blocks) + 1, BLOCK, kv)
    seqs, first = [], 0
    for p, n in zip(prompts, blocks, strict=True):
        seqs.append((p, 0, len(p), list(range(first, first + n)), True))
        first += n
    ids, pos, meta, rows = runner.prepare(seqs)
    layers, outs = model.layers, []
    try:
        for k in range(1, len(layers) + 1):
            model.layers = layers[:k]
            outs.append(model.forward(ids, pos, meta, runner.caches[:k]).float())
    finally:
        model.layers = layers
    return outs, model.compute_logits(outs[-1][rows].to(model.dtype))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=151552)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm-head-std", type=float, default=0.02)
    ap.add_argument("--skip-int8", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/kernel_parity_engine.py needs a CUDA GPU")
    cfg = glm4_9b_shaped(args.layers, args.vocab)
    model = random_model(cfg, args.seed, lm_head_std=args.lm_head_std)
    g = torch.Generator().manual_seed(args.seed)
    lengths = [1, 7, 17, 40, 100, 250, 500, 1000]
    lengths = (lengths * (args.prompts // len(lengths) + 1))[: args.prompts]
    prompts = [torch.randint(0, args.vocab, (n,), generator=g).tolist() for n in lengths]
    # two prompts that share a 600-token prefix exercise the prefix cache (cached-prefix prefill)
    shared = torch.randint(0, args.vocab, (600,), generator=g).tolist()
    prompts += [shared + torch.randint(0, args.vocab, (n,), generator=g).tolist() for n in (5, 120)]
    result: dict = {
        "device": torch.cuda.get_device_name(0),
        "layers": args.layers,
        "new_tokens": args.new_tokens,
    }

    ref = greedy(model, prompts, args.new_tokens, "torch")
    tri = greedy(model, prompts, args.new_tokens, "auto")
    agree = [common_prefix(a, b) for a, b in zip(tri, ref, strict=True)]
    at32 = sum(a >= min(32, args.new_tokens) for a in agree)
    result["bf16_greedy"] = {"prompt_lens": [len(p) for p in prompts], "agree_tokens": agree, "ge32": at32}
    print(f"bf16 greedy, Triton vs torch reference: {at32}/{len(prompts)} prompts identical for >= 32 tokens; "
          f"agreeing prefix per prompt {agree} (of {args.new_tokens})")  # fmt: skip

    sub = prompts[: min(8, len(prompts))]
    base, base_logits = layer_outputs(model, sub, "auto")
    ref_outs, ref_logits = layer_outputs(model, sub, "auto", backend="torch")
    errs = [((o - r).norm() / r.norm()).item() for o, r in zip(base, ref_outs, strict=True)]
    nt = (base_logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()
    result["bf16_layer_rel_err_vs_torch"] = errs
    print(
        f"bf16 Triton vs torch per-layer rel err {' '.join(f'{e:.2e}' for e in errs)}; next-token agreement {nt:.0%}"
    )
    if args.skip_int8:
        variants = {}
    else:
        q8 = int8_copy(model)
        variants = {"int8-weights": (q8, "auto"), "int8-kv": (model, "int8"), "int8-both": (q8, "int8")}
    for name, (m, kv) in variants.items():
        outs, logits = layer_outputs(m, sub, kv)
        errs = [((o - b).norm() / b.norm()).item() for o, b in zip(outs, base, strict=True)]
        nt = (logits.argmax(-1) == base_logits.argmax(-1)).float().mean().item()
        toks = greedy(m, prompts, args.new_tokens, "auto", kv)
        g_agree = [common_prefix(a, b) for a, b in zip(toks, tri, strict=True)]
        result[name] = {"layer_rel_err": errs, "next_token_agree": nt, "greedy_agree_tokens": g_agree}
        print(f"{name:<12} per-layer rel err vs bf16 {' '.join(f'{e:.2e}' for e in errs)}; next-token agreement "
              f"{nt:.0%}; greedy agreeing prefix median {statistics.median(g_agree)} of {args.new_tokens}")  # fmt: skip
    fname = f"kernel_parity_engine_std{args.lm_head_std:g}.json"
    out = args.json or (Path(os.environ["OUT"]) / fname if os.environ.get("OUT") else None)
    out = Path(out) if out else Path(__file__).parent / "out" / fname
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
