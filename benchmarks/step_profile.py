"""Where one engine step's time goes, GLM-4-9B shapes, random weights, one CUDA GPU.

    python3 benchmarks/step_profile.py [--sections graph,kernels,engine,prefix,gemv,timeline,ab] [--int8]

- graph: a decode step replayed from its CUDA graph (GPU time per replay, and the host time of
  `execute`: filling and uploading the inputs), batch 1 at 640 tokens of context and batch 64 at 1,100;
- kernels: the same steps run eagerly under the profiler: GPU time per kernel family, summed over the
  layers, against the replay time (the difference is launch gaps);
- engine: the engine's own batch-1 decode rate, and how much of each step the loop thread spends
  waiting for the device (the rest is host work the GPU may idle through);
- prefix: one 108-token prefill over a cached 2,992-token prefix: wall time, GPU kernel time, families;
- gemv: torch's one-row matmul at each linear shape against the copy bandwidth;
- timeline: the batch-1 decode graph (640 tokens of context) under the profiler: per kernel family its GPU
  time and its share of the step's critical path (kernels overlap under programmatic dependent launch);
- ab: decode-step graph replays (batch 1 and 8 at 640 tokens, 64 at 1,100) under each environment setting
  of ``--ab`` (';'-separated settings of ','-separated NAME=VALUE, e.g. "AUTOGLM_PDL=0;AUTOGLM_PDL=1"),
  graphs recaptured per setting,
  the settings timed in two rounds in alternating order; the batch-1 roofline is weight bytes / copy rate.
  An item ``ablate=OPS`` (OPS '+'-separated of norm, rotary, attention, silu, matmul) captures the step
  without those ops' launches (their outputs are wrong, their shapes right): what each costs in the step.
Prints tables; JSON to $OUT/step_profile.json (or benchmarks/out/).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kernels  # noqa: E402
from benchmarks.engine import hf_config  # noqa: E402
from inference import Engine, SamplingParams  # noqa: E402
from inference.config import ModelConfig  # noqa: E402
from inference.model import GlmModel  # noqa: E402
from inference.runner import ModelRunner  # noqa: E402
from kernels import Int8Weight  # noqa: E402

DEV = torch.device("cuda")
FAMILIES = [  # (family, regex on the kernel name), first match wins
    ("attention", r"flash|_decode|_merge|prefill|attn"),
    ("rotary+cache", r"rotary"),
    ("rms_norm", r"norm"),
    ("silu_mul", r"silu|swiglu"),
    ("int8 matmul", r"int8|w8a16"),
    ("gemm (cuBLAS)", r"gemm|gemv|sm90|cutlass|nvjet|splitK|Kernel2"),
    ("elementwise/copy", r"elementwise|copy|index|fill|cat|reduce|arange|Memcpy|Memset"),
]


def randomize(model: GlmModel) -> None:
    """N(0, 0.02) matrices (INT8: random codes, matching scale), unit norms, small biases."""
    torch.manual_seed(0)

    def mat(w):
        if isinstance(w, Int8Weight):
            w.qweight.copy_(torch.randint(-127, 128, w.qweight.shape, device=DEV, dtype=torch.int8))
            w.scale.fill_(0.05 / 127)
        else:
            w.normal_(0, 0.02)

    model.embed.normal_(0, 0.02)
    model.norm.fill_(1)
    mat(model.lm_head)
    for layer in model.layers:
        for name in ("qkv", "o_proj", "gate_up", "down"):
            mat(getattr(layer, name))
        for name in ("input_norm", "post_attention_norm", "post_self_attn_norm", "post_mlp_norm"):
            if getattr(layer, name) is not None:
                getattr(layer, name).fill_(1)
        if layer.qkv_bias is not None:
            layer.qkv_bias.normal_(0, 0.02)


def decode_seqs(batch: int, ctx: int, block_size: int, first_block: int = 0):
    """`batch` decode rows with `ctx` tokens each (the last one is this step's), disjoint blocks."""
    nb = -(-ctx // block_size)
    seqs = []
    for b in range(batch):
        blocks = list(range(first_block + b * nb, first_block + (b + 1) * nb))
        seqs.append(([1 + (b + i) % 1000 for i in range(ctx)], ctx - 1, 1, blocks, True))
    return seqs


def gpu_ms(fn, reps: int = 50) -> float:
    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / reps


def host_ms(fn, reps: int = 50) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    host = (time.perf_counter() - t) / reps * 1e3
    torch.cuda.synchronize()
    return host


def kernel_trace(fn, reps: int = 3) -> tuple[dict[str, float], float, int, dict[str, float]]:
    """GPU milliseconds per call by kernel family, total, and kernels per call, from a chrome trace."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    path = Path(tempfile.mkdtemp()) / "trace.json"
    prof.export_chrome_trace(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    fam: dict[str, float] = defaultdict(float)
    names: dict[str, float] = defaultdict(float)
    n = 0
    for ev in events:
        if ev.get("cat") != "kernel":
            continue
        n += 1
        name = ev["name"]
        names[name] += ev["dur"] / 1e3 / reps
        for f, rx in FAMILIES:
            if re.search(rx, name, re.I):
                fam[f] += ev["dur"] / 1e3 / reps
                break
        else:
            fam["other: " + name[:40]] += ev["dur"] / 1e3 / reps
    top = dict(sorted(names.items(), key=lambda kv: -kv[1])[:12])
    return dict(fam), sum(fam.values()), n // reps, top


# ablate=...: ops replaced by launch-free stand-ins of the right shape (timing only, results are garbage)
def _qkv_without_rotary(x, w, bias, cos, sin, kc, vc, slots, ks, vs, nh, invariant=False):
    return kernels.linear(x, w, bias)[:, : nh * kc.shape[-1]].view(x.shape[0], nh, kc.shape[-1])


def _no_matmul(x, w, bias=None, invariant=False):
    return x.new_empty(x.shape[0], (w.qweight if isinstance(w, Int8Weight) else w).shape[0])


def _gate_up_without_silu(x, w, invariant=False):
    gu = kernels.linear(x, w, None, invariant)
    return gu[..., : gu.shape[-1] // 2]


def _no_gate_up(x, w, invariant=False):
    return x.new_empty(x.shape[0], (w.qweight if isinstance(w, Int8Weight) else w).shape[0] // 2)


ABLATIONS = {
    "norm": [
        ("rms_norm", lambda x, w, eps, residual=None, pre=None: x if residual is None else (x, residual))
    ],
    "rotary": [("qkv_rotary_cache", _qkv_without_rotary)],
    "attention": [("paged_attention", lambda q, *a, **k: q)],
    "silu": [("silu_and_mul", lambda x: x[..., : x.shape[-1] // 2]), ("gate_up_silu", _gate_up_without_silu)],
    "matmul": [
        ("linear", _no_matmul),
        ("qkv_rotary_cache", _qkv_without_rotary),
        ("gate_up_silu", _no_gate_up),
    ],
}


def ablate(ops: str) -> dict:
    """Patch ``kernels``' public ops named in ops ('+'-separated; '' or 'none': nothing); returns the originals."""
    saved = {}
    for op in filter(None, ops.split("+")):
        if op == "none":
            continue
        for name, fn in ABLATIONS[op]:
            saved.setdefault(name, getattr(kernels, name))
            setattr(kernels, name, fn)
    return saved


def graph_timeline(replay, reps: int = 3) -> dict:
    """Kernel start/end times inside CUDA-graph replays (CUPTI traces each node): per kernel family its GPU
    time and its share of the critical path, each kernel counted for how much later it ends than every
    kernel before it (under programmatic dependent launch a kernel starts before the previous one ends, so
    its duration overstates what it adds)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            replay()
        torch.cuda.synchronize()
    path = Path(tempfile.mkdtemp()) / "trace.json"
    prof.export_chrome_trace(str(path))
    events = sorted((e for e in json.loads(path.read_text())["traceEvents"] if e.get("cat") == "kernel"),
                    key=lambda e: e["ts"])  # fmt: skip
    n = len(events) // reps
    one = events[n : 2 * n]  # the middle replay
    fam_dur: dict[str, float] = defaultdict(float)
    fam_path: dict[str, float] = defaultdict(float)
    fam_n: dict[str, int] = defaultdict(int)
    prev_end = None
    for ev in one:
        fam = next((f for f, rx in FAMILIES if re.search(rx, ev["name"], re.I)), ev["name"][:30])
        end = ev["ts"] + ev["dur"]
        fam_dur[fam] += ev["dur"]
        # the critical path this kernel adds: how much later than the previous one it ends
        fam_path[fam] += end - prev_end if prev_end is not None else ev["dur"]
        fam_n[fam] += 1
        prev_end = max(prev_end or end, end)
    span = one[-1]["ts"] + one[-1]["dur"] - one[0]["ts"]
    rows = [("family", "kernels", "GPU us each", "critical path us each", "critical path us per step")]
    for fam in sorted(fam_path, key=lambda k: -fam_path[k]):
        rows.append((fam, fam_n[fam], f"{fam_dur[fam] / fam_n[fam]:.2f}", f"{fam_path[fam] / fam_n[fam]:.2f}",
                     f"{fam_path[fam]:.0f}"))  # fmt: skip
    print_table(f"batch-1 decode graph replay, {n} kernels, {span:.0f} us", rows)
    return {"kernels": n, "span_us": span, "critical_us": dict(fam_path), "gpu_us": dict(fam_dur),
            "count": dict(fam_n)}  # fmt: skip


def print_table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    for r in rows:
        print("  " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in r))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sections", default="gemv,graph,kernels,engine,prefix")
    ap.add_argument("--int8", action="store_true", help="INT8 weights instead of bf16")
    ap.add_argument(
        "--max-batch", type=int, default=64,
        help="largest decode batch profiled and captured (8 skips batch 64: an INT8 model then tunes and "
        "compiles W8A16 for fewer row counts, minutes less on a fresh GPU)",
    )  # fmt: skip
    ap.add_argument("--ab", default="AUTOGLM_PDL=0;AUTOGLM_PDL=1")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    out_dir = Path(os.environ.get("OUT") or Path(__file__).parent / "out")
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig.from_dict(hf_config(False).to_dict())
    res: dict = {"device": torch.cuda.get_device_name(), "int8": args.int8}

    src = torch.empty(1 << 30, dtype=torch.uint8, device=DEV)
    dst = torch.empty_like(src)
    copy_GBps = 2 * src.numel() / gpu_ms(lambda: dst.copy_(src), 20) / 1e6
    res["copy_GBps"] = copy_GBps
    print(f"device {res['device']}, copy {copy_GBps:.0f} GB/s", flush=True)

    if "gemv" in sections:
        rows = []
        shapes = {"qkv": (4608, 4096), "o_proj": (4096, 4096), "gate_up": (27392, 4096),
                  "down": (4096, 13696), "lm_head": (cfg.vocab_size, 4096)}  # fmt: skip
        for name, (n, k) in shapes.items():
            copies = max(1, (512 << 20) // (n * k * 2))
            ws = [torch.randn(n, k, dtype=torch.bfloat16, device=DEV) for _ in range(copies)]
            x = torch.randn(1, k, dtype=torch.bfloat16, device=DEV)
            i = iter(range(10**9))
            ms = gpu_ms(lambda x=x, ws=ws, i=i, c=copies: torch.nn.functional.linear(x, ws[next(i) % c]), 60)
            rows.append((name, ms * 1e3, n * k * 2 / ms / 1e6 / copy_GBps))
            del ws
        print_table("one-row bf16 F.linear: us, fraction of copy bandwidth", rows)
        res["gemv"] = rows

    t = time.perf_counter()
    model = GlmModel(cfg, DEV, torch.bfloat16, int8=args.int8)
    randomize(model)
    torch.cuda.synchronize()
    print(f"model built in {time.perf_counter() - t:.1f}s", flush=True)

    if sections & {"graph", "kernels"}:
        top = args.max_batch
        runner = ModelRunner(model, 6000, 16, max_num_seqs=top, max_model_len=32768)
        t = time.perf_counter()
        if "graph" in sections:
            runner.capture_graphs(top)
        print(f"graphs captured in {time.perf_counter() - t:.1f}s", flush=True)
        for batch, ctx in ((b, c) for b, c in ((1, 640), (8, 640), (64, 1100)) if b <= top):
            seqs = decode_seqs(batch, ctx, 16)
            key = f"b{batch}_ctx{ctx}"
            r = res.setdefault(key, {})
            if "graph" in sections:
                r["execute_gpu_ms"] = gpu_ms(lambda s=seqs: runner.execute(s))
                r["execute_host_ms"] = host_ms(lambda s=seqs: runner.execute(s))
                g = runner.graphs[min(b for b in runner.graphs if b >= batch)]
                r["replay_ms"] = gpu_ms(g.replay)
            if "kernels" in sections:
                graphs, runner.graphs = runner.graphs, {}
                r["eager_gpu_ms"] = gpu_ms(lambda s=seqs: runner.execute(s), 10)
                r["eager_host_ms"] = host_ms(lambda s=seqs: runner.execute(s), 10)
                fam, total, n, top = kernel_trace(lambda s=seqs: runner.execute(s))
                runner.graphs = graphs
                r.update(kernel_ms=total, kernels=n, families=fam, top=top)
            print(f"\n{key}: " + json.dumps({k: v for k, v in r.items() if not isinstance(v, dict)}))
            if "families" in r:
                print_table(
                    f"{key} kernel families (ms per step)",
                    sorted(r["families"].items(), key=lambda kv: -kv[1]),
                )
                print_table(f"{key} top kernels (ms per step)", list(r["top"].items()))
        del runner
        torch.cuda.empty_cache()

    if "ab" in sections:
        top = args.max_batch
        runner = ModelRunner(model, 6000, 16, max_num_seqs=top, max_model_len=32768)

        def nbytes(w):
            return w.qweight.numel() if isinstance(w, Int8Weight) else w.numel() * w.element_size()

        weight_bytes = nbytes(model.lm_head) + sum(
            nbytes(w) for layer in model.layers for w in (layer.qkv, layer.o_proj, layer.gate_up, layer.down)
        )
        roof_ms = weight_bytes / copy_GBps / 1e6
        settings = args.ab.split(";")
        cases = [(b, c) for b, c in ((1, 640), (8, 640), (64, 1100)) if b <= top]
        times: dict[str, dict[str, list[float]]] = {st: defaultdict(list) for st in settings}
        for rnd in range(2):
            for setting in settings if rnd == 0 else settings[::-1]:
                saved = {}
                for item in setting.split(","):
                    name, _, value = item.partition("=")
                    if name.strip() == "ablate":
                        saved = ablate(value.strip())
                    else:
                        os.environ[name.strip()] = value.strip()
                runner.graphs = {}
                torch.cuda.empty_cache()
                try:
                    runner.capture_graphs(top)
                finally:  # the graphs keep what was captured; later settings get the real ops back
                    for name, fn in saved.items():
                        setattr(kernels, name, fn)
                for batch, ctx in cases:
                    seqs = decode_seqs(batch, ctx, 16)
                    runner.execute(seqs)  # this case's inputs in the static buffers
                    g = runner.graphs[min(b for b in runner.graphs if b >= batch)]
                    times[setting][f"b{batch}x{ctx}"].append(gpu_ms(g.replay, 40))
                last = {k: round(v[-1], 4) for k, v in times[setting].items()}
                print(f"{setting} round {rnd}: {json.dumps(last)}", flush=True)
        base = {k: min(v) for k, v in times[settings[0]].items()}
        rows = [("setting", *(f"b{b}x{c} ms (speed-up)" for b, c in cases), "b1 of weights-only roofline")]
        for setting in settings:
            best = {k: min(v) for k, v in times[setting].items()}
            cells = [f"{best[k]:.3f} ({base[k] / best[k]:.3f}x)" for k in best]
            rows.append((setting, *cells, f"{roof_ms / best['b1x640']:.1%}"))
        weights = "INT8" if args.int8 else "bf16"
        print_table(
            f"decode step graph replay, best of 2 rounds ({weights}, roofline {roof_ms:.3f} ms)", rows
        )
        res["ab"] = {"roofline_ms": roof_ms, "times_ms": {st: dict(v) for st, v in times.items()}}
        del runner
        torch.cuda.empty_cache()

    if "timeline" in sections:
        runner = ModelRunner(model, 3000, 16, max_num_seqs=1, max_model_len=32768)
        runner.capture_graphs(1)
        runner.execute(decode_seqs(1, 640, 16))
        res["timeline"] = graph_timeline(runner.graphs[1].replay)
        del runner
        torch.cuda.empty_cache()

    if sections & {"engine", "prefix"}:
        from inference import sampling

        waited = [0.0]
        orig_wait = sampling.SampledTokens.wait

        def wait(self):
            t0 = time.perf_counter()
            try:
                return orig_wait(self)
            finally:
                waited[0] += time.perf_counter() - t0

        sampling.SampledTokens.wait = wait
        # prefill graphs only when the prefix step is profiled (INT8: fewer row counts to tune at start-up)
        prefill = 512 if "prefix" in sections else 0
        engine = Engine(model, None, max_num_seqs=8, kv_cache_memory=8 << 30, prefill_graph_tokens=prefill)
        greedy = SamplingParams(max_tokens=128, temperature=0, ignore_eos=True)
        g = torch.Generator().manual_seed(0)

        def toks(n):
            return torch.randint(2, cfg.vocab_size, (n,), generator=g).tolist()

        if "engine" in sections:
            engine.generate(toks(64), SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
            rates, fracs = [], []
            for _ in range(3):
                waited[0] = 0.0
                [c] = engine.generate(toks(512), greedy)
                rates.append(c.timings.decode_tokens_per_s)
                fracs.append(waited[0] / c.timings.total_s)
            res["engine"] = {"tok_s": statistics.median(rates), "step_ms": 1e3 / statistics.median(rates),
                             "wait_fraction": statistics.median(fracs)}  # fmt: skip
            sp = SamplingParams(max_tokens=128, temperature=0.7, top_p=0.9, ignore_eos=True)
            [c] = engine.generate(toks(512), sp)
            res["engine"]["top_p_tok_s"] = c.timings.decode_tokens_per_s
            print("\nengine batch-1 decode: " + json.dumps(res["engine"]), flush=True)
        if "prefix" in sections:
            one = SamplingParams(max_tokens=1, temperature=0, ignore_eos=True)
            prefix = toks(3000)
            cold = [engine.generate(toks(3100), one)[0].timings.ttft_s for _ in range(2)]
            engine.generate(prefix + toks(100), one)
            warm = [engine.generate(prefix + toks(100), one)[0].timings.ttft_s for _ in range(3)]
            # a fresh tail per call: 108 new tokens each time (the same tail again would hit the cache)
            fam, total, n, top = kernel_trace(lambda: engine.generate(prefix + toks(100), one), reps=1)
            res["prefix"] = {"cold_ms": 1e3 * min(cold), "warm_ms": 1e3 * statistics.median(warm),
                             "warm_kernel_ms": total, "kernels": n, "families": fam, "top": top}  # fmt: skip
            print(f"\nprefix: cold {1e3 * min(cold):.1f} ms, warm {res['prefix']['warm_ms']:.1f} ms, "
                  f"GPU kernels {total:.1f} ms in {n} kernels", flush=True)  # fmt: skip
            print_table("prefix step kernel families (ms)", sorted(fam.items(), key=lambda kv: -kv[1]))
            print_table("prefix step top kernels (ms)", list(top.items()))
        engine.close()
    (out_dir / f"step_profile{'_int8' if args.int8 else ''}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
