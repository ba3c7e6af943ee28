"""W8A16 at prefill rows: can the weights' dequantization hide behind the GEMMs? (issue 5: no slower than bf16 at
4,096 rows)

    python benchmarks/w8_overlap.py [--rows 4096] [--layers 4] [--reps 10]

The product multiplies prefill-sized rows by dequantizing each int8 weight to a transient bf16 copy and calling
cuBLAS (``int8_linear_triton`` from DEQUANT_ROWS rows): the GEMM is compute bound, the dequantization memory
bound (N*K bytes read, 2*N*K written), and the two run one after the other, 0.80-1.03x of bf16. Here a chain
of GLM-4-9B layers (q/k/v, o_proj, gate/up, down, ``--layers`` times, each with its own weights) runs three
ways on the same rows, GPU ms from CUDA events:
- bf16: cuBLAS on bf16 weights (the peer);
- dequantize + cuBLAS, in order (the product's path);
- overlapped: the next product's weight dequantized on a second stream into the other of two buffers while
  this product's GEMM runs (events order the buffers' reuse), so only the first dequantization is exposed.
Each chain's last output is checked against bf16 on the dequantized weights. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import GLM_LINEARS, rel  # noqa: E402
from kernels.int8_matmul import dequantize_triton  # noqa: E402
from kernels.quant import Int8Weight  # noqa: E402

BF16 = torch.bfloat16


def _events_ms(fn, reps: int) -> float:
    """Median GPU ms of fn() over reps runs (one warm-up), timed by events on the current stream."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument(
        "--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "w8_overlap.json")
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    shapes = [GLM_LINEARS[n] for n in ("qkv", "o_proj", "gate_up", "down")] * args.layers
    ws = [Int8Weight.quantize(torch.randn(n, k, device=dev) * 0.02) for n, k in shapes]
    bf = [w.dequantize(BF16) for w in ws]  # the peer's weights: the same values
    xs = {k: torch.randn(args.rows, k, dtype=BF16, device=dev) for _, k in shapes}
    ys = [torch.empty(args.rows, n, dtype=BF16, device=dev) for n, _ in shapes]
    biggest = max(n * k for n, k in shapes)
    bufs = [torch.empty(biggest, dtype=BF16, device=dev) for _ in range(2)]
    side = torch.cuda.Stream()
    main_s = torch.cuda.current_stream()

    def peer():
        for (_n, k), w, y in zip(shapes, bf, ys, strict=True):
            torch.matmul(xs[k], w.T, out=y)

    def in_order():
        for (n, k), w, y in zip(shapes, ws, ys, strict=True):
            torch.matmul(
                xs[k], dequantize_triton(w.qweight, w.scale, BF16, out=bufs[0][: n * k].view(n, k)).T, out=y
            )

    def overlapped():
        ready = [torch.cuda.Event() for _ in shapes]
        used = [torch.cuda.Event() for _ in shapes]
        side.wait_stream(main_s)

        def deq(i):  # weight i into buffer i % 2 on the side stream, once product i - 2 is done with it
            n, k = shapes[i]
            with torch.cuda.stream(side):
                if i >= 2:
                    side.wait_event(used[i - 2])
                dequantize_triton(ws[i].qweight, ws[i].scale, BF16, out=bufs[i % 2][: n * k].view(n, k))
                ready[i].record(side)

        deq(0)
        for i, ((n, k), y) in enumerate(zip(shapes, ys, strict=True)):
            if i + 1 < len(shapes):
                deq(i + 1)
            main_s.wait_event(ready[i])
            torch.matmul(xs[k], bufs[i % 2][: n * k].view(n, k).T, out=y)
            used[i].record(main_s)
        main_s.wait_stream(side)

    rows = []
    ref = None
    for name, fn in (
        ("bf16 (cuBLAS)", peer),
        ("dequantize + cuBLAS, in order", in_order),
        ("overlapped", overlapped),
    ):
        ms = _events_ms(fn, args.reps)
        out = ys[-1].clone()
        ref = out if ref is None else ref
        rows.append({"path": name, "ms": ms, "x": None, "rel_err": rel(out, ref)})
    for r in rows:
        r["x"] = rows[0]["ms"] / r["ms"]
    flops = sum(2 * args.rows * n * k for n, k in shapes)
    print(f"{torch.cuda.get_device_name()}, {args.rows} rows, {len(shapes)} products ({args.layers} layers)")
    print("| path | GPU ms | TFLOP/s | x (bf16 / path) | rel err vs bf16 |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['path']} | {r['ms']:.3f} | {flops / r['ms'] / 1e9:.0f} | {r['x']:.3f} | {r['rel_err']:.1e} |"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps({"device": torch.cuda.get_device_name(), "rows": args.rows, "results": rows})
    )


if __name__ == "__main__":
    main()
