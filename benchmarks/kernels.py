"""Triton kernels against their peers and the GPU's limits, one table per kernel family.

    python benchmarks/kernels.py [--sections prefill,decode,int8,fused] [--json PATH]
    python benchmarks/kernels.py --sections sweep-prefill,sweep-decode,sweep-int8   # config grids
    python benchmarks/kernels.py --sections parity,int8,decode,sweep-decode-b1      # INT8 follow-up run
    DECODE_COMPARE=before=old_decode.py python benchmarks/kernels.py --sections decode-wide  # decode versions
    DECODE_CASES=1x640x2048,64x1100x2048 python benchmarks/kernels.py --sections decode-wide  # some cases

- prefill attention (causal, 32/2 heads, d=128, paged cache): TFLOP/s vs torch SDPA (flash backend);
- decode attention (split-KV, paged): KV bytes read per second vs the measured device copy bandwidth;
- W8A16 matmul at GLM-4-9B's layer shapes: time vs bf16 torch.matmul (cuBLAS);
- fused add+RMSNorm, rotary+cache write, SiLU-and-mul: bytes/s vs the copy bandwidth, and the torch ops.
Times are triton.testing.do_bench medians (L2 flushed between runs); decode and W8A16 also report GPU
time from CUDA-graph replays over enough input copies to overflow L2. Needs a CUDA GPU. JSON goes to
--json, else $OUT/kernels.json, else benchmarks/out/kernels.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels import int8_gemm_ws, int8_ws  # noqa: E402
from kernels.activation import silu_and_mul_ref  # noqa: E402
from kernels.attention import paged_attention_ref  # noqa: E402
from kernels.flash_decode import flash_decode_triton, plan_splits  # noqa: E402
from kernels.flash_prefill import flash_prefill_triton  # noqa: E402
from kernels.fused_norm import rms_norm_triton  # noqa: E402
from kernels.int8_matmul import (  # noqa: E402
    FEW_ROWS,
    IMMA_MIN_ROWS,
    IMMA_ROWS,
    _few_rows,
    _many_rows_imma,
    gemm_ws_decisions,
    imma_decisions,
    int8_linear_triton,
    ws_decisions,
)
from kernels.norm import rms_norm_ref  # noqa: E402
from kernels.quant import Int8Weight, quantize_kv_ref  # noqa: E402
from kernels.rotary import rotary_and_cache_ref  # noqa: E402
from kernels.rotary_cache import rotary_and_cache_triton  # noqa: E402
from kernels.swiglu import silu_and_mul_triton  # noqa: E402
from kernels.triton_common import next_pow2  # noqa: E402

DEV = "cuda"
BF16 = torch.bfloat16
NH, NKV, HD, BS = 32, 2, 128, 16
# GLM-4-9B linear layers (N, K): fused q/k/v (4096 + 2 * 256), o_proj, fused gate/up, down
GLM_LINEARS = {"qkv": (4608, 4096), "o_proj": (4096, 4096), "gate_up": (27392, 4096), "down": (4096, 13696)}


def bench(fn) -> float:
    """Median milliseconds."""
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def graph_ms(fns, reps: int = 30) -> float:
    """Median GPU milliseconds per call, launch overhead excluded: the calls (one per input copy, so that
    together they overflow L2) are captured in one CUDA graph, as the engine's decode step will be."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in fns:
            f()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times) / len(fns)


def program_timeline(launch, progs: int, reps: int = 6) -> str:
    """Per-program %globaltimer stamps of one cold call (after a read of twice the L2): ``launch(t, rep)`` runs
    the kernel writing 5 int64 stamps a program into t (progs, 5); returns "median / max" us after the first
    program's start for each stamp, medians over reps - 1 calls (the first compiles), as table cells."""
    buf = torch.ones(torch.cuda.get_device_properties(0).L2_cache_size // 2, device="cuda")
    t = torch.zeros((progs, 5), dtype=torch.int64, device="cuda")
    rows = []
    for rep in range(reps):
        buf.sum()
        launch(t, rep)
        torch.cuda.synchronize()
        if rep:
            r = (t - t[:, 0].min()).double() / 1e3
            rows.append([v for c in range(5) for v in (r[:, c].median().item(), r[:, c].max().item())])
    med = torch.tensor(rows).median(0).values.tolist()
    return " | ".join(f"{med[2 * c]:.2f} / {med[2 * c + 1]:.2f}" for c in range(5))


def copies_for(nbytes: int) -> int:
    """Input copies so that one graph replay reads >= 256 MB (well past the 50-60 MB L2), at most 8."""
    return max(1, min(8, -(-(256 << 20) // max(nbytes, 1))))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def limits() -> dict:
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=DEV).random_()
    dst = torch.empty_like(src)
    copy_ms = bench(lambda: dst.copy_(src))
    a = torch.randn(8192, 8192, dtype=BF16, device=DEV)
    b = torch.randn(8192, 8192, dtype=BF16, device=DEV)
    mm_ms = bench(lambda: a @ b)
    return {"copy_GBps": 2 * n / copy_ms / 1e6, "bf16_mm_TFLOPs": 2 * 8192**3 / mm_ms / 1e9}


@contextlib.contextmanager
def environ(**settings: str):
    """Environment variables set for the block (the kernels read theirs at launch), restored after it."""
    keep = {k: os.environ.get(k) for k in settings}
    os.environ.update({k: str(v) for k, v in settings.items()})
    try:
        yield
    finally:
        for k, v in keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def report_table(path: str, columns: tuple[str, ...], fmts: tuple[str, ...], table: list[tuple]) -> None:
    """Print ``table`` as a markdown table (``fmts``: a format spec per column) and write it, with the device's
    name, as JSON to ``path`` (the diagnostic scripts beside this one)."""
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(format(v, f) for v, f in zip(row, fmts, strict=True)) + " |")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows = [dict(zip(columns, r, strict=True)) for r in table]
    Path(path).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    print(f"wrote {path}")


def paged_cache(batch: int, ctx: int, quant: bool = False):
    """A cache holding `batch` sequences of `ctx` tokens in randomly scattered blocks."""
    nblk = ctx // BS
    perm = torch.randperm(batch * nblk, device=DEV).int()
    tables = perm.view(batch, nblk).contiguous()
    k = torch.randn(batch * nblk, BS, NKV, HD, dtype=BF16, device=DEV)
    v = torch.randn_like(k)
    ks = vs = None
    if quant:
        k, ks = quantize_kv_ref(k)
        v, vs = quantize_kv_ref(v)
    seq = torch.full((batch,), ctx, dtype=torch.int32, device=DEV)
    return k, v, ks, vs, tables, seq


def section_prefill(rows: list, lim: dict) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for L, quant in ((1024, False), (4096, False), (16384, False), (4096, True)):
        k, v, ks, vs, tables, seq = paged_cache(1, L, quant)
        q = torch.randn(L, NH, HD, dtype=BF16, device=DEV)
        cu = torch.tensor([0, L], dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, L, HD**-0.5, ks, vs)
        t0 = time.perf_counter()
        out = flash_prefill_triton(*args)
        torch.cuda.synchronize()
        first_s = time.perf_counter() - t0
        ms = bench(lambda args=args: flash_prefill_triton(*args))
        flops = 4 * NH * HD * L * L / 2  # causal: half of QK^T and PV
        row = {"L": L, "kv": "int8" if quant else "bf16", "ours_ms": ms, "ours_TFLOPs": flops / ms / 1e9,
               "first_call_s": first_s}  # fmt: skip
        # SDPA peer on the same (dequantized) values, contiguous, K/V heads expanded to 32 (flash needs that)
        kk = (k.float() * ks[..., None]).to(BF16) if quant else k
        vv = (v.float() * vs[..., None]).to(BF16) if quant else v
        order = tables[0].long()
        kd = kk[order].reshape(L, NKV, HD).repeat_interleave(NH // NKV, 1).transpose(0, 1)[None].contiguous()
        vd = vv[order].reshape(L, NKV, HD).repeat_interleave(NH // NKV, 1).transpose(0, 1)[None].contiguous()
        qd = q.transpose(0, 1)[None].contiguous()
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            ref = F.scaled_dot_product_attention(qd, kd, vd, is_causal=True)
            sdpa = lambda a=(qd, kd, vd): F.scaled_dot_product_attention(*a, is_causal=True)  # noqa: E731
            sms = bench(sdpa)
            # GPU time of both without the Python launch (CUDA-graph replays): at 1k tokens the kernels run
            # for tens of us, about what a slow host takes to launch them, so do_bench times the host too
            sdpa_gms = graph_ms([sdpa])
        ours_gms = graph_ms([lambda args=args: flash_prefill_triton(*args)])
        row.update(sdpa_ms=sms, sdpa_TFLOPs=flops / sms / 1e9, rel_err=rel(out, ref[0].transpose(0, 1)))
        row["vs_sdpa"] = row["ours_TFLOPs"] / row["sdpa_TFLOPs"]
        row.update(ours_graph_TFLOPs=flops / ours_gms / 1e9, sdpa_graph_TFLOPs=flops / sdpa_gms / 1e9)
        row["vs_sdpa_graph"] = sdpa_gms / ours_gms
        rows.append(row)
        print(f"prefill L={L:>5} kv={row['kv']:<4} ours {row['ours_TFLOPs']:6.1f} TFLOP/s  sdpa-flash "
              f"{row['sdpa_TFLOPs']:6.1f}  ratio {row['vs_sdpa']:.2f} | GPU (graph) ours "
              f"{row['ours_graph_TFLOPs']:6.1f}  sdpa {row['sdpa_graph_TFLOPs']:6.1f}  ratio "
              f"{row['vs_sdpa_graph']:.2f}  rel_err {row['rel_err']:.1e}  first call {first_s:.1f}s", flush=True)  # fmt: skip


def section_decode(rows: list, lim: dict) -> None:
    for quant in (False, True):
        for B in (1, 32, 128):
            for ctx in (1024, 8192, 32768):
                if quant and ctx != 32768:
                    continue
                kv_bytes = B * ctx * NKV * HD * 2 * (1 if quant else 2) + (
                    B * ctx * NKV * 4 * 2 if quant else 0
                )
                fns = []
                for _ in range(copies_for(kv_bytes)):
                    k, v, ks, vs, tables, seq = paged_cache(B, ctx, quant)
                    q = torch.randn(B, NH, HD, dtype=BF16, device=DEV)
                    cu = torch.arange(B + 1, dtype=torch.int32, device=DEV)
                    args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
                    fns.append(lambda args=args: flash_decode_triton(*args))
                fns[0]()
                eager = bench(fns[0])
                ms = graph_ms(fns)
                gbps = kv_bytes / ms / 1e6
                row = {"B": B, "ctx": ctx, "kv": "int8" if quant else "bf16", "graph_ms": ms, "eager_ms": eager,
                       "KV_GBps": gbps, "frac_copy": gbps / lim["copy_GBps"]}  # fmt: skip
                rows.append(row)
                print(f"decode B={B:>3} ctx={ctx:>5} kv={row['kv']:<4} GPU {ms * 1e3:7.1f} us (eager {eager * 1e3:6.1f})"
                      f"  {gbps:6.0f} GB/s  {row['frac_copy']:.0%} of copy", flush=True)  # fmt: skip
                del fns


def section_int8(rows: list, lim: dict) -> None:
    for name, (N, K) in GLM_LINEARS.items():
        copies = copies_for(N * K)
        ws = [torch.randn(N, K, dtype=BF16, device=DEV) * 0.02 for _ in range(copies)]
        iws = [Int8Weight.quantize(w) for w in ws]
        for M in (1, 8, 32, 64, 256, 1024, 4096):
            x = torch.randn(M, K, dtype=BF16, device=DEV)
            t0 = time.perf_counter()
            out = int8_linear_triton(x, iws[0].qweight, iws[0].scale)
            torch.cuda.synchronize()
            first_s = time.perf_counter() - t0
            err = rel(out, x.float() @ iws[0].dequantize().T)
            n = copies if M <= FEW_ROWS else 1
            ms = graph_ms([lambda x=x, iw=iw: int8_linear_triton(x, iw.qweight, iw.scale) for iw in iws[:n]])
            ref_ms = graph_ms([lambda x=x, w=w: torch.matmul(x, w.T) for w in ws[:n]])
            eager = bench(lambda x=x, iw=iws[0]: int8_linear_triton(x, iw.qweight, iw.scale))
            cfg = ""
            if M <= FEW_ROWS:
                c = _few_rows.best_config
                cfg = (f"{'dot' if c.kwargs['DOT'] else 'fma'} {c.kwargs['BLOCK_N']}x{c.kwargs['BLOCK_K']} "
                       f"split {c.kwargs['SPLIT_K']}")  # fmt: skip
            row = {"layer": name, "N": N, "K": K, "M": M, "int8_ms": ms, "bf16_ms": ref_ms, "int8_eager_ms": eager,
                   "speedup": ref_ms / ms, "int8_weight_GBps": N * K / ms / 1e6, "rel_err": err,
                   "first_call_s": first_s, "config": cfg}  # fmt: skip
            if 1 < M <= IMMA_ROWS:
                # both paths forced (AUTOGLM_W8_IMMA=off: converting / dequantizing; =on: the rows as int8
                # planes, int8 x int8 dots), same run, same inputs; "int8" above is the measured choice (auto)
                row["imma_chosen"] = next(
                    (
                        d["imma"]
                        for d in imma_decisions()
                        if (d["rows_bucket"], d["N"], d["K"]) == (next_pow2(M), N, K)
                    ),
                    None,
                )
                for mode in ("off", "on"):
                    with environ(AUTOGLM_W8_IMMA=mode, AUTOGLM_W8_WS="off"):
                        fns = [
                            lambda x=x, iw=iw: int8_linear_triton(x, iw.qweight, iw.scale) for iw in iws[:n]
                        ]
                        row[f"imma_{mode}_rel_err"] = rel(fns[0](), x.float() @ iws[0].dequantize().T)
                        row[f"imma_{mode}_ms"] = graph_ms(fns)
                        row[f"imma_{mode}_speedup"] = ref_ms / row[f"imma_{mode}_ms"]
                if M > FEW_ROWS:
                    c = _many_rows_imma.best_config
                    row["imma_on_config"] = (
                        f"{c.kwargs['BLOCK_M']}x{c.kwargs['BLOCK_N']}x{c.kwargs['BLOCK_K']}"
                    )
            if 1 < M <= int8_ws.WS_ROWS and int8_ws.available(x, iws[0].qweight):
                # the warp-specialized int8 x int8 GEMM (Gluon) forced; "int8" above took it if auto chose it
                with environ(AUTOGLM_W8_WS="on"):
                    fns = [lambda x=x, iw=iw: int8_linear_triton(x, iw.qweight, iw.scale) for iw in iws[:n]]
                    row["ws_rel_err"] = rel(fns[0](), x.float() @ iws[0].dequantize().T)
                    row["ws_ms"] = graph_ms(fns)
                    row["ws_speedup"] = ref_ms / row["ws_ms"]
                row["ws_chosen"] = next((d["ws"] for d in ws_decisions() if (d["N"], d["K"]) == (N, K)
                                         and d["rows_bucket"] == int8_ws.row_bucket(M)), None)  # fmt: skip
            if int8_gemm_ws.available(x, iws[0].qweight):
                # the Gluon GEMM converting the weights in registers forced off (the int8-planes GEMM or
                # dequantize + cuBLAS, as use_imma picks) and on; "int8" above is use_gemm_ws's choice
                for mode in ("off", "on"):
                    with environ(AUTOGLM_W8_GEMM_WS=mode):
                        fn = lambda x=x, iw=iws[0]: int8_linear_triton(x, iw.qweight, iw.scale)  # noqa: E731
                        row[f"gemm_ws_{mode}_rel_err"] = rel(fn(), x.float() @ iws[0].dequantize().T)
                        row[f"gemm_ws_{mode}_ms"] = graph_ms([fn])
                        row[f"gemm_ws_{mode}_speedup"] = ref_ms / row[f"gemm_ws_{mode}_ms"]
                row["gemm_ws_chosen"] = next((d["gemm_ws"] for d in gemm_ws_decisions() if (d["N"], d["K"]) == (N, K)
                                              and d["rows_bucket"] == next_pow2(M)), None)  # fmt: skip
            rows.append(row)
            print(f"int8 {name:<8} M={M:>4} int8 {ms * 1e3:8.1f} us (eager {eager * 1e3:6.1f})  bf16 "
                  f"{ref_ms * 1e3:8.1f} us  x{row['speedup']:.2f}  weight {row['int8_weight_GBps']:5.0f} GB/s  "
                  f"rel_err {err:.1e}  first {first_s:.1f}s  {cfg}", flush=True)  # fmt: skip
            if "ws_ms" in row:
                print(f"int8 {name:<8} M={M:>4} warp-specialized int8 x int8 {row['ws_ms'] * 1e3:8.1f} us "
                      f"x{row['ws_speedup']:.2f} (rel_err {row['ws_rel_err']:.1e})  chosen: {row['ws_chosen']}",
                      flush=True)  # fmt: skip
            if "gemm_ws_on_ms" in row:
                print(f"int8 {name:<8} M={M:>4} without the Gluon GEMM {row['gemm_ws_off_ms'] * 1e3:8.1f} us "
                      f"x{row['gemm_ws_off_speedup']:.2f}  Gluon GEMM {row['gemm_ws_on_ms'] * 1e3:8.1f} us "
                      f"x{row['gemm_ws_on_speedup']:.2f} (rel_err {row['gemm_ws_on_rel_err']:.1e})  chosen: "
                      f"{row['gemm_ws_chosen']}", flush=True)  # fmt: skip
            if "imma_on_ms" in row:
                print(f"int8 {name:<8} M={M:>4} converting {row['imma_off_ms'] * 1e3:8.1f} us x{row['imma_off_speedup']:.2f}"
                      f"  int8 x int8 {row['imma_on_ms'] * 1e3:8.1f} us x{row['imma_on_speedup']:.2f} (rel_err "
                      f"{row['imma_on_rel_err']:.1e})  chosen: {'int8 x int8' if row['imma_chosen'] else 'converting'}",
                      flush=True)  # fmt: skip


# (label, environment) of the few-rows launch settings that `int8-preload` compares in one process (the
# autotuner's pick is shared, so only the setting differs)
PRELOAD_SETTINGS = (
    ("PDL off", {"AUTOGLM_PDL": "0"}),
    ("PDL, no dot preload", {"AUTOGLM_DOT_PRELOAD": "0"}),
    ("PDL + dot preload", {}),
    ("PDL + 16 KB dot preload", {"AUTOGLM_PRELOAD_BYTES": "8192"}),
)


def section_int8_preload(rows: list, lim: dict) -> None:
    """W8A16 at 2-64 rows (the tensor-core few-rows kernel, converting and int8 planes): programmatic dependent
    launch off, on without a preload, on with each program's first K tile loaded before its wait; two rounds
    in alternating order (GPU us, CUDA-graph replays over rotating weight copies)."""
    for name, (N, K) in GLM_LINEARS.items():
        copies = copies_for(N * K)
        ws = [torch.randn(N, K, dtype=BF16, device=DEV) * 0.02 for _ in range(copies)]
        iws = [Int8Weight.quantize(w) for w in ws]
        for M in [int(m) for m in os.environ.get("PRELOAD_ROWS", "2,8,16,32,64").split(",")]:
            x = torch.randn(M, K, dtype=BF16, device=DEV)
            ref_ms = graph_ms([lambda x=x, w=w: torch.matmul(x, w.T) for w in ws])
            for mode in ("off", "on") if M >= IMMA_MIN_ROWS else ("off",):
                fns = [lambda x=x, iw=iw: int8_linear_triton(x, iw.qweight, iw.scale) for iw in iws]
                times: dict = {label: [] for label, _ in PRELOAD_SETTINGS}
                with environ(AUTOGLM_W8_IMMA=mode):
                    err = rel(fns[0](), x.float() @ iws[0].dequantize().T)
                    for order in (PRELOAD_SETTINGS, PRELOAD_SETTINGS[::-1]):
                        for label, env in order:
                            with environ(**env):
                                times[label].append(graph_ms(fns))
                best = {label: min(t) for label, t in times.items()}
                row = {"layer": name, "M": M, "imma": mode, "bf16_ms": ref_ms, "rel_err": err,
                       **{f"{label}_ms": t for label, t in best.items()}}  # fmt: skip
                rows.append(row)
                print(f"int8-preload {name:<8} M={M:>3} {'planes' if mode == 'on' else 'convert'}: bf16 "
                      f"{ref_ms * 1e3:6.1f} us | " + " | ".join(
                          f"{label} {t * 1e3:6.1f} ({ref_ms / t:.2f}x)" for label, t in best.items())
                      + f" | rel_err {err:.1e}", flush=True)  # fmt: skip


def section_parity(rows: list, lim: dict) -> None:
    """Full-size parity of the INT8 paths (NaN-poisoned outputs): W8A16 at GLM-4-9B shapes against the
    exact product with the dequantized weight, and decode (bf16 / INT8 KV) against the torch reference."""
    vals = torch.arange(-128, 128, dtype=torch.int8, device=DEV)
    ok = True
    for name, (N, K) in GLM_LINEARS.items():
        iw = Int8Weight.quantize(torch.randn(N, K, dtype=BF16, device=DEV) * 0.02)
        exact_w = iw.dequantize(torch.float32)
        cases = [(1, BF16, True), (8, BF16, False), (17, BF16, True), (32, BF16, False), (100, BF16, False)]
        if name == "o_proj":  # float32 activations once (every config compiles again for them)
            cases.append((3, torch.float32, True))
        for M, dtype, bias in cases:
            x = torch.randn(M, K, dtype=dtype, device=DEV)
            b = torch.randn(N, dtype=dtype, device=DEV) if bias else None
            out = torch.full((M, N), float("nan"), dtype=dtype, device=DEV)
            int8_linear_triton(x, iw.qweight, iw.scale, b, out=out)
            exact = x.double() @ exact_w.double().T + (b.double() if bias else 0)
            err = rel(out.double(), exact)
            tol = 1e-2 if dtype == BF16 else 1e-4
            good = not out.isnan().any().item() and err <= tol
            ok &= good
            rows.append(
                {"op": "int8_linear", "layer": name, "M": M, "dtype": str(dtype), "rel_err": err, "ok": good}
            )
            print(
                f"parity int8 {name:<8} M={M:>3} {str(dtype)[6:]:<8} rel_err {err:.1e} {'ok' if good else 'FAIL'}"
            )
    del vals
    for quant in (False, True):
        lens = [1, 17, 1000, 4097, 32768]
        B = len(lens)
        nblk = [-(-n // BS) for n in lens]
        tables = torch.zeros(B, max(nblk), dtype=torch.int32, device=DEV)
        perm = torch.randperm(sum(nblk), device=DEV).int()
        used = 0
        for i, n in enumerate(nblk):
            tables[i, :n] = perm[used : used + n]
            used += n
        k = torch.randn(sum(nblk), BS, NKV, HD, dtype=BF16, device=DEV)
        v = torch.randn_like(k)
        ks = vs = None
        if quant:
            k, ks = quantize_kv_ref(k)
            v, vs = quantize_kv_ref(v)
        q = torch.randn(B, NH, HD, dtype=BF16, device=DEV)
        seq = torch.tensor(lens, dtype=torch.int32, device=DEV)
        cu = torch.arange(B + 1, dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
        out = torch.full_like(q, float("nan"))
        flash_decode_triton(*args, out=out)
        ref = paged_attention_ref(*args)
        err = rel(out, ref)
        good = not out.isnan().any().item() and err <= 1e-2
        ok &= good
        rows.append({"op": "decode", "kv": "int8" if quant else "bf16", "rel_err": err, "ok": good})
        print(
            f"parity decode kv={'int8' if quant else 'bf16'} lens {lens} rel_err {err:.1e} {'ok' if good else 'FAIL'}"
        )
    print(f"parity: {'all ok' if ok else 'FAILURES'}", flush=True)


def section_sweep_decode_b1(rows: list, lim: dict) -> None:
    """Batch-1 32k decode: tile size x split count, bf16 and INT8; then INT8 tile/warps/stages at batch 32."""
    for quant in (False, True):
        k, v, ks, vs, tables, seq = paged_cache(1, 32768, quant)
        q = torch.randn(1, NH, HD, dtype=BF16, device=DEV)
        cu = torch.arange(2, dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
        ref = flash_decode_triton(*args)
        kv_bytes = k.numel() * k.element_size() * 2 + (ks.numel() * 8 if quant else 0)
        line = []
        for bn, splits, w, st in SWEEP_B1:
            kw = dict(block_n=bn, num_splits=splits, num_warps=w, num_stages=st)
            err = rel(flash_decode_triton(*args, **kw), ref)
            ms = graph_ms([lambda kw=kw, a=args: flash_decode_triton(*a, **kw)], reps=50)
            rows.append({"quant": quant, **kw, "ms": ms, "err": err})
            line.append(
                f"{bn}/{splits}/{w}w{st}s:{ms * 1e3:.1f}us {kv_bytes / ms / 1e6:.0f}GB/s{'' if err < 1e-2 else '!'}"
            )
        print(
            f"sweep decode B=1 32k quant={quant} (block_n/splits/warps/stages): {' '.join(line)}", flush=True
        )
    # INT8 KV at batch 32: warps/stages/tile
    k, v, ks, vs, tables, seq = paged_cache(32, 32768, True)
    q = torch.randn(32, NH, HD, dtype=BF16, device=DEV)
    cu = torch.arange(33, dtype=torch.int32, device=DEV)
    args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
    kv_bytes = k.numel() * 2 + ks.numel() * 8
    line = []
    for bn, w, st in SWEEP_B32_INT8:
        kw = dict(block_n=bn, num_warps=w, num_stages=st)
        ms = graph_ms([lambda kw=kw, a=args: flash_decode_triton(*a, **kw)], reps=20)
        rows.append({"quant": True, "B": 32, **kw, "ms": ms})
        line.append(f"{bn}/{w}w{st}s:{ms * 1e3:.0f}us {kv_bytes / ms / 1e6:.0f}GB/s")
    print(f"sweep decode B=32 32k int8 (block_n/warps/stages): {' '.join(line)}", flush=True)


# (block_n, splits, warps, stages) at batch 1; (block_n, warps, stages) for INT8 at batch 32
SWEEP_B1 = ((128, 128, 4, 3), (128, 64, 4, 3), (64, 128, 4, 3), (128, 128, 4, 2))
SWEEP_B32_INT8 = ((128, 4, 3), (128, 4, 2), (64, 4, 3), (64, 4, 4), (128, 8, 3))


def section_sweep_decode(rows: list, lim: dict) -> None:
    """Decode block/warp/stage grid at a few shapes (to choose the launcher's fixed config)."""
    for B, ctx, quant in ((1, 32768, False), (32, 32768, False), (32, 32768, True), (128, 8192, False)):
        k, v, ks, vs, tables, seq = paged_cache(B, ctx, quant)
        q = torch.randn(B, NH, HD, dtype=BF16, device=DEV)
        cu = torch.arange(B + 1, dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
        ref = flash_decode_triton(*args)
        kv_bytes = k.numel() * k.element_size() * 2 + (ks.numel() * 8 if quant else 0)
        line = []
        for bn in (64, 128):
            for w in (4, 8):
                for st in (2, 3, 4):
                    kw = dict(block_n=bn, num_warps=w, num_stages=st)
                    err = rel(flash_decode_triton(*args, **kw), ref)
                    ms = graph_ms([lambda kw=kw, a=args: flash_decode_triton(*a, **kw)])
                    rows.append({"B": B, "ctx": ctx, "quant": quant, **kw, "ms": ms, "err": err})
                    line.append(f"{bn}/{w}/{st}:{kv_bytes / ms / 1e6:.0f}{'' if err < 1e-2 else '!'}")
        print(
            f"sweep decode B={B} ctx={ctx} quant={quant} GB/s by block_n/warps/stages: {' '.join(line)}",
            flush=True,
        )


def section_sweep_prefill(rows: list, lim: dict) -> None:
    """Prefill block/warp/stage grid at 4k tokens (bf16 and INT8 KV): TFLOP/s of each config."""
    L = 4096
    for quant in (False, True):
        k, v, ks, vs, tables, seq = paged_cache(1, L, quant)
        q = torch.randn(L, NH, HD, dtype=BF16, device=DEV)
        cu = torch.tensor([0, L], dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, L, HD**-0.5, ks, vs)
        ref = flash_prefill_triton(*args)
        flops = 4 * NH * HD * L * L / 2
        line = []
        for bm, bn, w, st in (
            (128, 64, 8, 2), (128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 32, 4, 3),
            (64, 64, 4, 3), (64, 64, 4, 4), (64, 128, 4, 2), (64, 32, 4, 3), (128, 64, 4, 3),
        ):  # fmt: skip
            cfg = {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": st}
            try:
                err = rel(flash_prefill_triton(*args, config=cfg), ref)
                ms = bench(lambda cfg=cfg, a=args: flash_prefill_triton(*a, config=cfg))
            except Exception as e:  # noqa: BLE001  (out of resources: report and go on)
                line.append(f"{bm}/{bn}/{w}/{st}: {type(e).__name__}")
                continue
            rows.append({"quant": quant, **cfg, "ms": ms, "TFLOPs": flops / ms / 1e9, "err": err})
            line.append(f"{bm}/{bn}/{w}/{st}:{flops / ms / 1e9:.0f}{'' if err < 1e-2 else '!'}")
        print(
            f"sweep prefill L={L} quant={quant} TFLOP/s by BM/BN/warps/stages: {' '.join(line)}", flush=True
        )


def section_sweep_int8(rows: list, lim: dict) -> None:
    """Every int8 config (both orientations) at a few shapes: error and GPU time."""
    from kernels.int8_matmul import _few_rows_configs, _many_rows_configs

    many = [dict(c.all_kwargs()) for c in _many_rows_configs()]
    many += [{**c, "SWAP": True} for c in many]
    few = [dict(c.all_kwargs()) for c in _few_rows_configs()]
    for name, M, configs in (
        ("o_proj", 4096, many),
        ("gate_up", 256, many),
        ("qkv", 1, few),
        ("down", 32, few),
    ):
        N, K = GLM_LINEARS[name]
        w = torch.randn(N, K, dtype=BF16, device=DEV) * 0.02
        iw = Int8Weight.quantize(w)
        x = torch.randn(M, K, dtype=BF16, device=DEV)
        exact = x.float() @ iw.dequantize().T
        bf16_ms = graph_ms([lambda x=x, w=w: torch.matmul(x, w.T)])
        line = []
        for c in configs:
            keys = ("BLOCK_M", "BLOCK_N", "BLOCK_K") + (
                ("SPLIT_K", "DOT") if "SPLIT_K" in c else ("GROUP_N", "SWAP")
            )
            cfg = {k: c[k] for k in keys}
            launch = {"num_warps": c["num_warps"], "num_stages": c["num_stages"]}
            try:
                err = rel(int8_linear_triton(x, iw.qweight, iw.scale, config={**cfg, **launch}), exact)
                ms = graph_ms(
                    [
                        lambda cfg=cfg, launch=launch, x=x, iw=iw: int8_linear_triton(
                            x, iw.qweight, iw.scale, config={**cfg, **launch}
                        )
                    ]
                )
            except Exception as e:  # noqa: BLE001  (out of resources: report and go on)
                line.append(f"{cfg}: {type(e).__name__}")
                continue
            rows.append({"layer": name, "M": M, **cfg, **launch, "ms": ms, "err": err, "bf16_ms": bf16_ms})
            line.append(
                f"{cfg['BLOCK_M']}x{cfg['BLOCK_N']}x{cfg['BLOCK_K']}/{launch['num_warps']}w{launch['num_stages']}s"
                f"{'/T' if cfg.get('SWAP') else ''}{'/S' + str(cfg['SPLIT_K']) if 'SPLIT_K' in cfg else ''}"
                f"{'/dot' if cfg.get('DOT') else ''}: {ms * 1e3:.0f}us err {err:.0e}"
            )
        print(f"sweep int8 {name} M={M} (bf16 {bf16_ms * 1e3:.0f}us): " + "; ".join(line), flush=True)


def section_fused(rows: list, lim: dict) -> None:
    T, H, inter = 16384, 4096, 13696
    x = torch.randn(T, H, dtype=BF16, device=DEV)
    r = torch.randn_like(x)
    w = torch.randn(H, dtype=BF16, device=DEV)
    cases = {
        "add+rmsnorm": (
            lambda: rms_norm_triton(x, w, 1e-5, r),
            lambda: rms_norm_ref(x, w, 1e-5, r),
            4 * T * H * 2,
        ),
        "rmsnorm": (lambda: rms_norm_triton(x, w, 1e-5), lambda: rms_norm_ref(x, w, 1e-5), 2 * T * H * 2),
    }
    g = torch.randn(4096, 2 * inter, dtype=BF16, device=DEV)
    cases["silu_and_mul"] = (
        lambda: silu_and_mul_triton(g),
        lambda: silu_and_mul_ref(g),
        3 * 4096 * inter * 2,
    )
    Tr = 16384
    qkv = torch.randn(Tr, (NH + 2 * NKV) * HD, dtype=BF16, device=DEV)
    q, k, v = qkv.split([NH * HD, NKV * HD, NKV * HD], dim=-1)
    q, k, v = q.view(Tr, NH, HD), k.view(Tr, NKV, HD), v.view(Tr, NKV, HD)
    ang = torch.arange(Tr, device=DEV).float()[:, None] * torch.rand(HD // 4, device=DEV)[None]
    cos, sin = ang.cos(), ang.sin()
    kc = torch.empty(Tr // BS + 1, BS, NKV, HD, dtype=BF16, device=DEV)
    vc = torch.empty_like(kc)
    slots = torch.randperm(Tr, device=DEV)
    rot_bytes = 2 * Tr * NH * HD * 2 + 2 * 2 * Tr * NKV * HD * 2 + 2 * Tr * (HD // 4) * 4 + Tr * 8
    cases["rotary+cache"] = (
        lambda: rotary_and_cache_triton(q, k, v, cos, sin, kc, vc, slots),
        lambda: rotary_and_cache_ref(q, k, v, cos, sin, kc, vc, slots),
        rot_bytes,
    )
    for name, (ours, ref, nbytes) in cases.items():
        ours()
        ms, ref_ms = bench(ours), bench(ref)
        gbps = nbytes / ms / 1e6
        row = {"op": name, "ms": ms, "torch_ms": ref_ms, "GBps": gbps, "frac_copy": gbps / lim["copy_GBps"]}
        rows.append(row)
        print(f"fused {name:<13} ours {ms * 1e3:8.1f} us  torch {ref_ms * 1e3:8.1f} us  {gbps:6.0f} GB/s  "
              f"{row['frac_copy']:.0%} of copy", flush=True)  # fmt: skip


def _decode_versions() -> dict:
    """Other versions of kernels/flash_decode.py to time beside the committed one: $DECODE_COMPARE lists
    label=path pairs, comma-separated (e.g. a `git show <rev>:kernels/flash_decode.py` copy labelled before),
    each loaded as kernels._flash_decode_<label>."""
    import importlib.util

    mods = {}
    for item in filter(None, os.environ.get("DECODE_COMPARE", "").split(",")):
        label, path = item.split("=", 1)
        spec = importlib.util.spec_from_file_location(f"kernels._flash_decode_{label}", path)
        mods[label] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[label])
    return mods


def wide_cache(batch: int, ctx: int, width: int, quant: bool = False):
    """``paged_cache`` with block tables ``width`` blocks wide, as the engine's decode graphs pass them
    (max_model_len / block size columns; the unused ones point at block 0)."""
    k, v, ks, vs, tables, seq = paged_cache(batch, ctx, quant)
    wide = torch.zeros(batch, max(width, tables.shape[1]), dtype=torch.int32, device=DEV)
    wide[:, : tables.shape[1]] = tables
    return k, v, ks, vs, wide, seq


# (batch, context, table width in blocks): the engine's decode graphs (max_model_len 32k), then issue 5's
# set with tables exactly as wide as the context
DECODE_WIDE_CASES = [(1, 640, 2048), (8, 640, 2048), (64, 1100, 2048), (64, 4000, 2048)] + [
    (B, ctx, ctx // BS) for B in (1, 32, 128) for ctx in (1024, 8192, 32768)
]
# other launch settings also timed with the committed kernel, per case (its own plan is always timed, and
# beside it the tile loop at 3 stages with the split plan of before decode_config: 2 / 3 programs per SM for
# bf16 / INT8); "kv" limits one to bf16 or int8 KV
DECODE_VARIANTS = {
    (64, 1100, 2048): [{"kv": "bf16", "num_splits": 2}] + [{"kv": "int8", "num_splits": s} for s in (1, 3)],
    (1, 32768, 2048): [{"kv": "bf16", "num_splits": s} for s in (32, 128)]
    + [{"kv": "int8", "num_splits": 64}],
    (32, 32768, 2048): [{"kv": "int8", "num_splits": s} for s in (3, 6)],
    (128, 32768, 2048): [{"kv": "int8", "num_splits": 2}],
}


def _variants(key: tuple, kv: str) -> dict:
    """The DECODE_VARIANTS of one case and KV type, labelled by their settings."""
    out = {}
    for kw in DECODE_VARIANTS.get(key, ()):
        if kw.get("kv", kv) != kv:
            continue
        kw = {k: v for k, v in kw.items() if k != "kv"}
        out["new/" + ",".join(f"{k.replace('num_', '')}={v}" for k, v in kw.items())] = kw
    return out


def section_decode_wide(rows: list, lim: dict) -> None:
    """Decode in CUDA graphs, the committed kernel ("new") and the $DECODE_COMPARE versions, bf16 and INT8
    KV, at the engine's table width and at tables as wide as the context ($DECODE_CASES: BxCTXxWIDTH items,
    comma-separated, picks some): GPU us, KV GB/s (the bytes of the real context), share of copy bandwidth;
    first a full-size parity check of each against the reference."""
    fns = {"new": flash_decode_triton}
    fns.update({label: mod.flash_decode_triton for label, mod in _decode_versions().items()})
    ok = True
    for quant in (False, True):
        # lengths 1, 17, a block edge, uneven, long, in one batch, in a 2048-block-wide table
        lens = [1, 17, 640, 1100, 4000, 32768]
        k, v, ks, vs, tables, seq = wide_cache(len(lens), max(lens), 2048, quant)
        seq = torch.tensor(lens, dtype=torch.int32, device=DEV)
        B = len(lens)
        q = torch.randn(B, NH, HD, dtype=BF16, device=DEV)
        cu = torch.arange(B + 1, dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
        ref = paged_attention_ref(*args)
        kv = "int8" if quant else "bf16"
        runs = [(label, fn, {"num_splits": s}) for label, fn in fns.items() for s in (None, 1, 2, 3, 4, 128)]
        seen = set()
        for key in DECODE_VARIANTS:
            for label, kw in _variants(key, kv).items():
                if label not in seen:
                    seen.add(label)
                    runs.append((label, flash_decode_triton, kw))
        for label, fn, kw in runs:
            splits = kw.get("num_splits")
            out = torch.full_like(q, float("nan"))
            try:
                fn(*args, **kw, out=out)
            except Exception as e:  # noqa: BLE001  (e.g. out of shared memory: report and go on)
                ok = False
                print(f"parity decode {label} kv={kv}: {type(e).__name__}: {e}"[:300], flush=True)
                continue
            err = rel(out, ref)
            good = not out.isnan().any().item() and err <= 1e-2
            ok &= good
            rows.append({"op": "parity", "version": label, "kv": kv, "splits": splits, "rel_err": err})
            print(f"parity decode {label} width 2048 kv={kv} lens {lens} splits {splits}: "
                  f"rel_err {err:.1e} {'ok' if good else 'FAIL'}", flush=True)  # fmt: skip
        del k, v, ks, vs
    print(f"parity: {'all ok' if ok else 'FAILURES'}", flush=True)
    cases = DECODE_WIDE_CASES
    if os.environ.get("DECODE_CASES"):
        cases = [tuple(int(x) for x in c.split("x")) for c in os.environ["DECODE_CASES"].split(",")]
    for B, ctx, width in cases:
        for quant in (False, True):
            kv_bytes = B * ctx * NKV * (HD * 2 * (1 if quant else 2) + (2 * 4 if quant else 0))
            sets = []
            for _ in range(copies_for(kv_bytes)):
                k, v, ks, vs, tables, seq = wide_cache(B, ctx, width, quant)
                q = torch.randn(B, NH, HD, dtype=BF16, device=DEV)
                cu = torch.arange(B + 1, dtype=torch.int32, device=DEV)
                sets.append((q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs))
            kv = "int8" if quant else "bf16"
            variants = {"new": (flash_decode_triton, {})}
            waves = 3 if quant else 2
            head = {"loop_stages": 3, "num_splits": plan_splits(B, NKV, width * BS, 128, lim["sms"], waves)}
            variants["new/stages=3,old plan"] = (flash_decode_triton, head)
            variants.update(
                {label: (flash_decode_triton, kw) for label, kw in _variants((B, ctx, width), kv).items()}
            )
            variants.update({label: (fn, {}) for label, fn in fns.items() if label != "new"})
            line = []
            for name, (fn, kw) in variants.items():
                try:
                    ms = graph_ms([lambda a=a, kw=kw, fn=fn: fn(*a, **kw) for a in sets])
                except Exception as e:  # noqa: BLE001  (report and go on with the other versions)
                    line.append(f"{name} {type(e).__name__}: {e}"[:200])
                    continue
                gbps = kv_bytes / ms / 1e6
                rows.append({"B": B, "ctx": ctx, "width": width, "kv": kv, "variant": name, "graph_ms": ms,
                             "KV_GBps": gbps, "frac_copy": gbps / lim["copy_GBps"]})  # fmt: skip
                line.append(f"{name} {ms * 1e3:6.1f} us {gbps:5.0f} GB/s {gbps / lim['copy_GBps']:4.0%}")
            print(f"decode B={B:>3} ctx={ctx:>5} width={width:>4} kv={kv}: " + " | ".join(line), flush=True)
            del sets
            torch.cuda.empty_cache()


SECTIONS = {
    "prefill": section_prefill,
    "decode": section_decode,
    "int8": section_int8,
    "int8-preload": section_int8_preload,
    "fused": section_fused,
    "sweep-decode": section_sweep_decode,
    "sweep-int8": section_sweep_int8,
    "sweep-prefill": section_sweep_prefill,
    "parity": section_parity,
    "sweep-decode-b1": section_sweep_decode_b1,
    "decode-wide": section_decode_wide,
}
DEFAULT = "prefill,decode,int8,fused"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=DEFAULT)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/kernels.py needs a CUDA GPU")
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    import triton

    result = {
        "device": props.name,
        "sms": props.multi_processor_count,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    lim = limits()
    lim["sms"] = props.multi_processor_count
    result["limits"] = lim
    print(
        f"{props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}, triton {triton.__version__}"
    )
    print(
        f"copy bandwidth {lim['copy_GBps']:.0f} GB/s (read + write), bf16 matmul {lim['bf16_mm_TFLOPs']:.0f} TFLOP/s"
    )
    for name in args.sections.split(","):
        rows: list = []
        try:
            SECTIONS[name](rows, lim)
        except Exception as e:  # noqa: BLE001  (report and go on with the other sections)
            import traceback

            traceback.print_exc()
            rows.append({"error": f"{type(e).__name__}: {e}"})
        result[name] = rows
        torch.cuda.empty_cache()
    out = args.json or (Path(os.environ["OUT"]) / "kernels.json" if os.environ.get("OUT") else None)
    out = Path(out) if out else Path(__file__).parent / "out" / "kernels.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
