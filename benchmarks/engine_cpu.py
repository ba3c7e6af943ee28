"""CPU throughput of the engine vs transformers `generate` on the same small random GLM-4, and the
prefill saved by prefix reuse on a RAG-shaped workload.

    .venv/bin/python benchmarks/engine_cpu.py [--threads 2] [--new-tokens 64] [--json out.json]

Prints a table; numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the repository root first: benchmarks/kernels.py would otherwise shadow the kernels package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_checkpoint(out: Path, args) -> None:
    from transformers import Glm4Config, Glm4ForCausalLM

    cfg = Glm4Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3 // 64 * 64,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        num_key_value_heads=2,
        head_dim=64,
        partial_rotary_factor=0.5,
        pad_token_id=0,
        eos_token_id=[1],
    )
    torch.manual_seed(0)
    Glm4ForCausalLM(cfg).save_pretrained(out, max_shard_size="20MB")


def bench_ours(engine, prompts, new_tokens: int) -> float:
    from inference import SamplingParams

    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    engine.generate(prompts[:1], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))  # warm-up
    t = time.perf_counter()
    res = engine.generate(prompts, params)
    dt = time.perf_counter() - t
    assert all(len(r.token_ids) == new_tokens for r in res)
    return len(prompts) * new_tokens / dt


def bench_hf(model, prompts, new_tokens: int) -> float:
    from transformers import GenerationConfig

    cfg = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    ids = torch.tensor(prompts)  # equal lengths: no padding
    with torch.no_grad():
        model.generate(
            ids[:1], generation_config=GenerationConfig(max_new_tokens=4, do_sample=False, pad_token_id=0)
        )
        t = time.perf_counter()
        out = model.generate(ids, generation_config=cfg)
        dt = time.perf_counter() - t
    assert out.shape[1] == ids.shape[1] + new_tokens
    return len(prompts) * new_tokens / dt


def rag_workload(vocab: int, n_questions: int, rng: random.Random) -> list[list[int]]:
    """System prompt (shared by all) + 3 of 4 context passages in a stable order + a question."""

    def text(n):
        return [rng.randrange(2, vocab) for _ in range(n)]

    system = text(120)
    passages = [text(200) for _ in range(4)]
    prompts = []
    for i in range(n_questions):
        picked = [passages[j] for j in range(4) if j != (i // 4) % 4]  # groups of 4 questions share context
        prompts.append(system + sum(picked, []) + text(30))
    return prompts


def bench_rag(path: Path, args, prefix: bool) -> dict:
    from inference import Engine, SamplingParams
    from inference.weights import load_model

    engine = Engine(load_model(path), None, num_blocks=2048, block_size=16, enable_prefix_caching=prefix)
    prompts = rag_workload(args.vocab, args.rag_questions, random.Random(1))
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    t = time.perf_counter()
    res = [engine.generate([p], params)[0] for p in prompts]  # one after another, like user sessions
    dt = time.perf_counter() - t
    engine.close()
    prompt_tokens = sum(r.usage.prompt_tokens for r in res)
    hit = sum(r.usage.prefix_hit_tokens for r in res)
    return {
        "prompt_tokens": prompt_tokens,
        "prefix_hit_tokens": hit,
        "saved": hit / prompt_tokens,
        "seconds": dt,
        "mean_ttft_ms": 1000 * sum(r.timings.ttft_s for r in res) / len(res),
        "tokens": [r.token_ids for r in res],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rag-questions", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per measurement")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from inference import Engine
    from inference.weights import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        build_checkpoint(path, args)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        model = load_model(path)
        n_params = sum(p.numel() for p in hf.parameters())
        rng = random.Random(0)
        prompts = [[rng.randrange(2, args.vocab) for _ in range(args.prompt_len)] for _ in range(8)]
        rows = []
        for bs in (1, 8):
            engine = Engine(model, None, num_blocks=512, block_size=16, enable_prefix_caching=False)
            # best of --repeat runs each, alternating, so a burst of load from other processes hits both sides
            ours = theirs = 0.0
            for _ in range(args.repeat):
                ours = max(ours, bench_ours(engine, prompts[:bs], args.new_tokens))
                theirs = max(theirs, bench_hf(hf, prompts[:bs], args.new_tokens))
            engine.close()
            rows.append({"batch": bs, "ours_tok_s": ours, "hf_tok_s": theirs, "speedup": ours / theirs})
        rag_on = bench_rag(path, args, prefix=True)
        rag_off = bench_rag(path, args, prefix=False)
        assert rag_on.pop("tokens") == rag_off.pop("tokens"), "prefix reuse changed greedy outputs"

    print(
        f"GLM-4 (Glm4ForCausalLM) random weights: {n_params / 1e6:.1f}M params, hidden {args.hidden}, "
        f"{args.layers} layers, float32, {args.threads} threads, prompt {args.prompt_len}, "
        f"{args.new_tokens} new tokens (greedy)"
    )
    print(f"{'batch':>5} | {'engine tok/s':>12} | {'HF generate tok/s':>17} | {'ratio':>5}")
    for r in rows:
        print(f"{r['batch']:>5} | {r['ours_tok_s']:>12.1f} | {r['hf_tok_s']:>17.1f} | {r['speedup']:>5.2f}")
    print(
        f"\nRAG workload: {args.rag_questions} requests, shared system prompt + 3 shared passages + question"
    )
    print(
        f"{'prefix cache':>12} | {'prompt tok':>10} | {'reused':>6} | {'saved':>6} | {'total s':>7} | {'mean TTFT ms':>12}"
    )
    for name, r in (("on", rag_on), ("off", rag_off)):
        print(
            f"{name:>12} | {r['prompt_tokens']:>10} | {r['prefix_hit_tokens']:>6} | {r['saved']:>6.1%} | "
            f"{r['seconds']:>7.2f} | {r['mean_ttft_ms']:>12.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"throughput": rows, "rag_on": rag_on, "rag_off": rag_off}, indent=2))


if __name__ == "__main__":
    main()
