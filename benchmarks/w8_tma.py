"""W8A16 at prefill rows on a persistent TMA GEMM, with and without Triton's Hopper warp specialization
(issue 5: >= 1.0x of bf16 cuBLAS at 4,096 rows; dequantize + cuBLAS reaches 0.91-0.97x).

    python benchmarks/w8_tma.py [--rows 4096,1024] [--layers qkv,gate_up]

Each program walks output tiles (grouped so that concurrent tiles share operands in L2); per K step, TMA
brings an int8 weight tile and a 16-bit row tile into shared memory; the weight tile is converted in
registers and multiplied on wgmma. SWAP: acc (weight rows x rows) = W @ X.T, the converted weights stay in
registers as wgmma's A operand (no second trip through shared memory). WS: `tl.range(...,
warp_specialize=True)` (producer warps issue the TMA loads, consumer warp groups convert and multiply).
Every config is checked against the exact product before it is timed; configs that fail to compile are
reported and skipped. GPU us = do_bench medians (L2 flushed). Needs an sm_90 GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import GLM_LINEARS, report_table  # noqa: E402
from kernels.int8_matmul import dequantize_triton  # noqa: E402


@triton.jit
def _tile(tile, tiles_m, tiles_n, GROUP: tl.constexpr):
    """(pid_m, pid_n) of a tile id: GROUP row tiles walk all column tiles together (operands stay in L2)."""
    in_group = GROUP * tiles_n
    first_m = (tile // in_group) * GROUP
    size_m = tl.minimum(tiles_m - first_m, GROUP)
    return first_m + (tile % in_group) % size_m, (tile % in_group) // size_m


@triton.jit
def _w8_persistent(w_desc, x_desc, y_desc, S_ptr, M, N, K,
                   BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr,
                   NUM_SMS: tl.constexpr, WS: tl.constexpr, SWAP: tl.constexpr, STAGES: tl.constexpr):  # fmt: skip
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, NUM_SMS, flatten=True, warp_specialize=WS):
        pid_m, pid_n = _tile(tile, tiles_m, tiles_n, GROUP)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        if SWAP:
            acc = tl.zeros((BLOCK_N, BLOCK_M), tl.float32)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        for ki in range(k_tiles):
            w = w_desc.load([off_n, ki * BLOCK_K]).to(tl.bfloat16)
            x = x_desc.load([off_m, ki * BLOCK_K])
            if SWAP:
                acc = tl.dot(w, x.T, acc)
            else:
                acc = tl.dot(x, w.T, acc)
        offs_n = off_n + tl.arange(0, BLOCK_N)
        s = tl.load(S_ptr + offs_n, mask=offs_n < N, other=0.0)
        if SWAP:
            y_desc.store([off_m, off_n], tl.trans(acc * s[:, None]).to(y_desc.dtype))
        else:
            y_desc.store([off_m, off_n], (acc * s[None, :]).to(y_desc.dtype))


# (BLOCK_N, BLOCK_M, BLOCK_K, warps, stages, GROUP, WS, SWAP)
CONFIGS = [
    (bn, bm, bk, w, st, 8, ws, swap)
    for bn, bm, bk, w, st, swap in (
        (128, 128, 64, 4, 4, True),
        (128, 256, 64, 8, 3, True),
        (256, 128, 64, 8, 3, True),
        (128, 128, 128, 8, 3, True),
        (128, 256, 64, 8, 4, False),
        (128, 128, 64, 8, 4, False),
    )
    for ws in (False, True)
]


def run(x, q, s, cfg, sms):
    bn, bm, bk, w, st, group, ws, swap = cfg
    M, K = x.shape
    N = q.shape[0]
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    from triton.tools.tensor_descriptor import TensorDescriptor

    wd = TensorDescriptor.from_tensor(q, [bn, bk])
    xd = TensorDescriptor.from_tensor(x, [bm, bk])
    yd = TensorDescriptor.from_tensor(y, [bm, bn])
    grid = (min(sms, triton.cdiv(M, bm) * triton.cdiv(N, bn)),)

    def go():
        _w8_persistent[grid](wd, xd, yd, s, M, N, K, BLOCK_N=bn, BLOCK_M=bm, BLOCK_K=bk, GROUP=group,
                             NUM_SMS=sms, WS=ws, SWAP=swap, STAGES=st, num_warps=w, num_stages=st)  # fmt: skip
        return y

    return go, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="4096")
    ap.add_argument("--layers", default=",".join(GLM_LINEARS))
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "w8_tma.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"{torch.cuda.get_device_name()}, triton {triton.__version__}")
    table = []
    for M in [int(r) for r in args.rows.split(",")]:
        for layer in args.layers.split(","):
            N, K = GLM_LINEARS[layer]
            x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
            q = torch.randint(-127, 128, (N, K), dtype=torch.int8, device="cuda")
            s = torch.rand(N, device="cuda") * 0.01 + 1e-3
            wb = (q.float() * s[:, None]).to(torch.bfloat16)
            ref = x.float() @ (q.float() * s[:, None]).T
            bf16 = do_bench(lambda x=x, wb=wb: x @ wb.T, warmup=25, rep=200, return_mode="median")
            deq = do_bench(
                lambda x=x, q=q, s=s: x @ dequantize_triton(q, s, torch.bfloat16).T,
                warmup=25,
                rep=200,
                return_mode="median",
            )
            flops = 2 * M * N * K
            line = f"{layer} {M} rows: bf16 {bf16 * 1e3:.1f} us ({flops / bf16 / 1e9:.0f} TFLOP/s), dequant+cuBLAS {deq * 1e3:.1f}"
            print(line, flush=True)
            table.append((layer, M, "cuBLAS bf16", bf16, 1.0))
            table.append((layer, M, "dequantize + cuBLAS", deq, bf16 / deq))
            for cfg in CONFIGS:
                name = "{}x{}x{} {}w {}st{}{}".format(
                    *cfg[:5], " WS" if cfg[6] else "", " swap" if cfg[7] else ""
                )
                try:
                    go, y = run(x, q, s, cfg, sms)
                    y.fill_(float("nan"))
                    go()
                    err = ((y.float() - ref).norm() / ref.norm()).item()
                    if not err < 1e-2:
                        print(f"  {name}: WRONG rel err {err:.2e}", flush=True)
                        continue
                    ms = do_bench(go, warmup=25, rep=200, return_mode="median")
                except Exception as e:  # noqa: BLE001  (a config that does not compile: say so, go on)
                    print(f"  {name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:150]}", flush=True)
                    continue
                table.append((layer, M, name, ms, bf16 / ms))
                print(f"  {name}: {ms * 1e3:.1f} us, {flops / ms / 1e9:.0f} TFLOP/s, {bf16 / ms:.2f}x bf16, err {err:.1e}",
                      flush=True)  # fmt: skip
    report_table(
        args.json,
        ("layer", "rows", "path", "GPU us", "x bf16"),
        ("", "", "", ".1f", ".2f"),
        [(layer, m, name, ms * 1e3, ratio) for layer, m, name, ms, ratio in table],
    )


if __name__ == "__main__":
    main()
