"""W8A16 at prefill rows (issue 5): the Gluon GEMM that converts the int8 weights in registers beside the
wgmmas (kernels/int8_gemm_ws.py) against cuBLAS bf16 and dequantize + cuBLAS, target >= 1.0x of cuBLAS bf16
at 4,096 rows on an H100 (the plain-Triton GEMMs reached 0.59-0.75x: RESULTS.md "Batch-1 decode at 32k and
W8A16 at 4,096 rows: where the limits are").

    python benchmarks/w8_gluon.py [--rows 4096,2048,1024] [--layers qkv,down] [--variants 0,4]

First every variant runs once at an odd shape (N, K, rows not multiples of the tiles, bias) as a smoke test;
then per GLM-4-9B layer (N, K) and row count: cuBLAS bf16 ``x @ w.T`` (w the dequantized weight in bf16),
dequantize + cuBLAS (the product's 4,096-row path: ``int8_matmul.dequantize_triton`` then cuBLAS) and every
variant of ``int8_gemm_ws.VARIANTS``. Every path's output is checked against the exact product x.float() @
(qweight.float() * scale[:, None]).T (relative Frobenius error, printed); a variant above 1e-2 is marked FAIL
and not timed, one that fails to compile or run is reported and skipped. GPU us = do_bench medians (L2
flushed before each call); x = cuBLAS bf16 / that path. Prints a table and writes JSON (after every shape,
so a later hang leaves the earlier figures) to $OUT/w8_gluon.json or benchmarks/out/w8_gluon.json. A
watchdog ends the process if one shape makes no progress for --stall seconds (a deadlocked kernel).
Needs an sm_90 GPU and Triton with Gluon (3.6 in the GPU image).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import GLM_LINEARS  # noqa: E402
from kernels import int8_gemm_ws as g  # noqa: E402
from kernels.int8_matmul import dequantize_triton  # noqa: E402
from kernels.quant import Int8Weight  # noqa: E402

TOL = 1e-2


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float32 (NaN where an element was left unwritten)."""
    return ((out.float() - ref).norm() / ref.norm()).item()


def short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}" + (
        f" ... {text[-1][:200]}" if len(text) > 1 else ""
    )


def smoke(variants: list[int]) -> list[tuple]:
    """Each variant once at odd shapes (N 200 and 1,160, K 1,008 and 272: an odd number of 64-wide k-steps,
    rows 300 and 37, bias, bf16 and fp16): wrong edges show here before the timed shapes."""
    found = []
    for n, k, rows, dtype in ((200, 1008, 300, torch.bfloat16), (1160, 272, 37, torch.float16)):
        w = Int8Weight.quantize(torch.randn(n, k, device="cuda") * 0.05)
        x = torch.randn(rows, k, device="cuda").to(dtype)
        b = torch.randn(n, device="cuda").to(dtype)
        ref = x.float() @ w.dequantize().T + b.float()
        for i in variants:
            cfg = g.VARIANTS[i]
            try:
                y = torch.full((rows, n), float("nan"), dtype=dtype, device="cuda")
                g.gemm_w8(x, w.qweight, w.scale, b, config=cfg, out=y)
                torch.cuda.synchronize()
                err = rel(y, ref)
                status = "ok" if err <= TOL else "FAIL"
            except Exception as e:  # noqa: BLE001  (reported per variant)
                err, status = float("nan"), f"ERROR {short(e)}"
            print(
                f"  smoke [{i}] {cfg.name}, {n}x{k}, {rows} rows, {dtype}: rel err {err:.2e} {status}",
                flush=True,
            )
            found.append((f"{n}x{k}", rows, f"[{i}] {cfg.name}", err, status))
            faulthandler.dump_traceback_later(ARGS.stall, exit=True)  # progress: re-arm the watchdog
    return found


def timed(fn) -> float:
    return do_bench(fn, warmup=ARGS.warmup, rep=ARGS.rep, return_mode="median")


def shape(layer: str, M: int, variants: list[int], table: list) -> None:
    N, K = GLM_LINEARS[layer]
    flops = 2 * M * N * K
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    iw = Int8Weight.quantize(torch.randn(N, K, device="cuda") * 0.02)
    q, s = iw.qweight, iw.scale
    ref = x.float() @ (q.float() * s[:, None]).T
    wb = (q.float() * s[:, None]).to(torch.bfloat16)

    def row(path: str, ms: float | None, err: float, status: str) -> None:
        us = ms * 1e3 if ms else float("nan")
        tflops = flops / ms / 1e9 if ms else float("nan")
        ratio = bf16 / ms if ms and bf16 else float("nan")
        table.append(dict(layer=layer, rows=M, path=path, us=us, tflops=tflops, x_cublas=ratio, rel_err=err,
                          status=status))  # fmt: skip
        print(
            f"  {path:<44} {us:9.1f} us {tflops:6.0f} TFLOP/s {ratio:5.2f}x  err {err:.1e} {status}",
            flush=True,
        )

    print(f"{layer} (N {N}, K {K}), {M} rows:", flush=True)
    bf16 = None
    err = rel(x @ wb.T, ref)
    bf16 = timed(lambda: x @ wb.T)
    row("cuBLAS bf16", bf16, err, "ok")
    try:
        err = rel(x @ dequantize_triton(q, s, torch.bfloat16).T, ref)
        row("dequantize + cuBLAS", timed(lambda: x @ dequantize_triton(q, s, torch.bfloat16).T), err, "ok")
    except Exception as e:  # noqa: BLE001
        row("dequantize + cuBLAS", None, float("nan"), f"ERROR {short(e)}")
    wb = None  # noqa: F841  (free the 16-bit copy before ours run)
    y = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
    for i in variants:
        cfg = g.VARIANTS[i]
        path = f"[{i}] {cfg.name}"
        try:
            y.fill_(float("nan"))
            g.gemm_w8(x, q, s, config=cfg, out=y)
            torch.cuda.synchronize()
            err = rel(y, ref)
            if not err <= TOL:
                row(path, None, err, "FAIL")
                continue
            row(path, timed(lambda cfg=cfg: g.gemm_w8(x, q, s, config=cfg, out=y)), err, "ok")
        except Exception as e:  # noqa: BLE001  (a variant that does not compile or run: say so, go on)
            row(path, None, float("nan"), f"ERROR {short(e)}")
        faulthandler.dump_traceback_later(ARGS.stall, exit=True)  # progress: re-arm the watchdog


def write(path: str, smoke_rows: list, table: list, done: bool) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "device": torch.cuda.get_device_name(), "triton": triton.__version__, "torch": torch.__version__,
        "complete": done, "variants": [dict(index=i, name=c.name, **c.__dict__) for i, c in enumerate(g.VARIANTS)],
        "smoke": [dict(shape=a, rows=b, path=c, rel_err=d, status=e) for a, b, c, d, e in smoke_rows],
        "rows": table,
    }, indent=1))  # fmt: skip


def summary(table: list) -> None:
    print(
        "\n| layer | rows | path | GPU us | TFLOP/s | x cuBLAS | rel err | status |\n|---|---|---|---|---|---|---|---|"
    )
    for r in table:
        print(f"| {r['layer']} | {r['rows']} | {r['path']} | {r['us']:.1f} | {r['tflops']:.0f} | {r['x_cublas']:.2f} | "
              f"{r['rel_err']:.1e} | {r['status']} |")  # fmt: skip
    print("\nbest variant per shape (target: >= 1.00x cuBLAS bf16):")
    for key in dict.fromkeys((r["layer"], r["rows"]) for r in table):
        ours = [
            r
            for r in table
            if (r["layer"], r["rows"]) == key and r["path"].startswith("[") and r["status"] == "ok"
        ]
        if not ours:
            print(f"  {key[0]} {key[1]} rows: no variant ran")
            continue
        best = max(ours, key=lambda r: r["x_cublas"])
        met = "met" if best["x_cublas"] >= 1.0 else "NOT met"
        print(f"  {key[0]} {key[1]} rows: {best['path']} {best['us']:.1f} us, {best['tflops']:.0f} TFLOP/s, "
              f"{best['x_cublas']:.2f}x ({met})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="4096", help="row counts, e.g. 4096,2048,1024")
    ap.add_argument("--layers", default=",".join(GLM_LINEARS))
    ap.add_argument("--variants", default="all", help="indices into int8_gemm_ws.VARIANTS, or all")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=100, help="do_bench repetitions, ms")
    ap.add_argument(
        "--stall", type=int, default=120, help="seconds without progress before the watchdog exits"
    )
    ap.add_argument("--no-smoke", action="store_true")
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "w8_gluon.json"))
    global ARGS
    ARGS = ap.parse_args()
    variants = (
        list(range(len(g.VARIANTS))) if ARGS.variants == "all" else [int(v) for v in ARGS.variants.split(",")]
    )
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"Gluon {g.HAS_GLUON}, {torch.cuda.get_device_properties(0).multi_processor_count} SMs", flush=True)  # fmt: skip
    for i in variants:
        print(
            f"  variant [{i}] {g.VARIANTS[i].name}: {g.VARIANTS[i].smem_bytes()} B shared memory", flush=True
        )
    start = time.time()
    faulthandler.dump_traceback_later(ARGS.stall, exit=True)
    smoke_rows = [] if ARGS.no_smoke else smoke(variants)
    table: list = []
    for M in [int(r) for r in ARGS.rows.split(",")]:
        for layer in ARGS.layers.split(","):
            faulthandler.dump_traceback_later(ARGS.stall, exit=True)
            shape(layer, M, variants, table)
            write(ARGS.json, smoke_rows, table, False)
            torch.cuda.empty_cache()
    faulthandler.cancel_dump_traceback_later()
    write(ARGS.json, smoke_rows, table, True)
    summary(table)
    print(f"wrote {ARGS.json} ({time.time() - start:.0f} s)")


ARGS: argparse.Namespace


if __name__ == "__main__":
    main()
