"""Batch-1 decode at 32k, per program (issue 5): a %globaltimer timeline of one cold call of the stripped split
loop (benchmarks/decode_b1.py's ablation kernel with its stamps on) beside a plain read of the same bytes:
when each program starts, has its first tile, half of them, ends its loop and has stored (us after the first
program's start, median / max over programs). To see where the decode kernel's ~4.6 us over a plain read go
(launch skew, first-tile latency, the loop's rate, the tail): RESULTS "Batch-1 decode at 32k and W8A16 at
4,096 rows". As in benchmarks/int8_ws_parts.py, whose timeline found the W8A16 GEMM's stream rate.

    python3 benchmarks/decode_b1_timeline.py

Written 2026-12-07 and compiled for sm_90 with Triton 3.6 on the CPU box; NOT yet run on a GPU (the session's
device calls found no machine). Needs a CUDA GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.decode_b1 import _ablate_kernel, _now
from benchmarks.kernels import HD, NH, paged_cache, program_timeline


@triton.jit
def _read_tl(X, OUT, T, n_per, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    pid = tl.program_id(0)
    tl.store(T + pid * 5, _now())
    base = X + pid.to(tl.int64) * n_per
    acc = tl.zeros((BLOCK,), tl.float32)
    for i in tl.range(0, n_per, BLOCK, num_stages=STAGES):
        acc += tl.load(base + i + tl.arange(0, BLOCK)).to(tl.float32)
        if i == 0:
            tl.store(T + pid * 5 + 1, _now() + tl.sum(acc).to(tl.int64) * 0)
        if i == n_per // BLOCK // 2 * BLOCK:
            tl.store(T + pid * 5 + 2, _now() + tl.sum(acc).to(tl.int64) * 0)
    tl.store(T + pid * 5 + 3, _now() + tl.sum(acc).to(tl.int64) * 0)
    tl.store(OUT + pid, tl.sum(acc))
    tl.store(T + pid * 5 + 4, _now())


def main() -> None:
    torch.manual_seed(0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(torch.cuda.get_device_name(), sms, "SMs", flush=True)
    ctx = 32768
    k, v, _, _, tables, seq = paged_cache(1, ctx)
    q = torch.randn(1, NH, HD, dtype=torch.bfloat16, device="cuda")
    print("| kernel | start | first tile done | half | loop done | stored |", flush=True)
    for splits, block, stages, warps, compute in ((sms // 2, 128, 5, 4, 1), (sms // 2, 128, 5, 4, 0),
                                                  (sms, 64, 4, 4, 1), (sms // 2, 64, 6, 4, 1)):  # fmt: skip
        op = torch.empty(NH, splits, HD, device="cuda")
        lse = torch.empty(NH, splits, device="cuda")

        def launch(t, rep, splits=splits, block=block, stages=stages, warps=warps, compute=compute, op=op,
                   lse=lse):  # fmt: skip
            _ablate_kernel[(1, 2, splits)](q, k, v, tables, seq, op, lse, ctx, k.stride(0), k.stride(1),
                                           k.stride(2), HD**-0.5, GROUP=NH // 2, D=HD, BLOCK_N=block,
                                           PAGE=k.shape[1], STAGES=stages, COMPUTE=compute, PAGED=1, DYN=1, T=t,
                                           TIMES=True, num_warps=warps)  # fmt: skip

        try:
            print(f"| stripped {'full' if compute else 'loads'} {2 * splits} progs {block}x{stages}st | "
                  f"{program_timeline(launch, 2 * splits)} |", flush=True)  # fmt: skip
        except Exception as e:  # noqa: BLE001
            print("FAILED", splits, block, stages, type(e).__name__, str(e)[:200], flush=True)
    flat = torch.cat([k.flatten(), v.flatten()])
    for progs, block, stages in ((132, 8192, 4), (528, 4096, 4)):
        n = flat.numel() // progs // block * block
        outs = torch.empty(progs, device="cuda")

        def launch(t, rep, progs=progs, block=block, stages=stages, n=n, outs=outs):
            _read_tl[(progs,)](flat, outs, t, n, BLOCK=block, STAGES=stages)

        print(
            f"| plain read {progs} progs {block}x{stages}st | {program_timeline(launch, progs)} |", flush=True
        )


if __name__ == "__main__":
    main()
