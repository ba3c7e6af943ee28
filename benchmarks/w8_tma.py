"""W8A16 with TMA loads (issue 5): at prefill rows a persistent TMA GEMM, with and without Triton's Hopper
warp specialization (target >= 1.0x of bf16 cuBLAS at 4,096 rows; dequantize + cuBLAS reaches 0.91-0.97x);
at 2-64 rows the few-rows kernel's split-K scheme with its tiles brought by TMA (target >= 1.7x at <= 32 rows).

    python benchmarks/w8_tma.py [--rows 4096,1024] [--layers qkv,gate_up]
    python benchmarks/w8_tma.py --rows 8,32 --layers qkv,o_proj,down
    (for i in 0 1 2 3 4 5 6 7; do python benchmarks/w8_tma.py --rows 8,32 --warm $i/8 & done; wait)  # compile first

Each program walks output tiles (grouped so that concurrent tiles share operands in L2); per K step, TMA
brings an int8 weight tile and a 16-bit row tile into shared memory; the weight tile is converted in
registers and multiplied on wgmma. SWAP: acc (weight rows x rows) = W @ X.T, the converted weights stay in
registers as wgmma's A operand (no second trip through shared memory). WS: `tl.range(...,
warp_specialize=True)` (producer warps issue the TMA loads, consumer warp groups convert and multiply).
Every config is checked against the exact product before it is timed; configs that fail to compile are
reported and skipped. GPU us = do_bench medians (L2 flushed). Needs an sm_90 GPU.

Few rows (<= 64): grid (column tiles, K splits) as in ``kernels.int8_matmul``'s few-rows kernel, each program
streams its weight rows' share of K through TMA (a descriptor load per tile, Triton's mbarrier pipeline) and
multiplies either the converted tile (wgmma, weights as A from registers) or, IMMA, the int8 tile against the
rows' two int8 planes (``split_rows``, both operands in shared memory); partial sums as the few-rows kernel's
(the last split of a column tile to arrive adds them). Timed as CUDA-graph replays over weight copies beside
cuBLAS and our autotuned few-rows kernel (both of its paths); the best TMA configs are listed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import GLM_LINEARS, copies_for, environ, graph_ms, rel, report_table  # noqa: E402
from kernels import int8_matmul as im  # noqa: E402
from kernels.int8_matmul import LO_STEPS, dequantize_triton, int8_to_float  # noqa: E402
from kernels.quant import Int8Weight  # noqa: E402
from kernels.triton_common import pdl_trigger, pdl_wait  # noqa: E402


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


@triton.jit
def _w8_tma_few(w_desc, x_desc, S_ptr, Y_ptr, P_ptr, C_ptr, SX_ptr, M, N, K, lo_row,
                BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
                STAGES: tl.constexpr, IMMA: tl.constexpr):  # fmt: skip
    """acc (BLOCK_N weight rows, BLOCK_M rows) over this program's 1/SPLIT_K of K; TMA zero-fills past K and M."""
    pdl_trigger(True)
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    off_n = pid_n * BLOCK_N
    k_per = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    k_lo = split * k_per
    k_hi = tl.minimum(k_lo + k_per, K)
    pdl_wait(True)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.int32 if IMMA else tl.float32)
    acc_lo = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.int32)
    for k in tl.range(k_lo, k_hi, BLOCK_K, num_stages=STAGES):
        w = w_desc.load([off_n, k])
        if IMMA:
            acc = tl.dot(w, x_desc.load([0, k]).T, acc, out_dtype=tl.int32)
            acc_lo = tl.dot(w, x_desc.load([lo_row, k]).T, acc_lo, out_dtype=tl.int32)
        else:
            acc = tl.dot(int8_to_float(w, tl.bfloat16, True, True), x_desc.load([0, k]).T, acc)
    offs_n = off_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    if IMMA:
        sx = tl.load(SX_ptr + offs_m, mask=offs_m < M, other=0.0)
        out = (acc.to(tl.float32) + acc_lo.to(tl.float32) * (1.0 / LO_STEPS)) * sx[None, :]
    else:
        out = acc
    out = out * tl.load(S_ptr + offs_n, mask=offs_n < N, other=0.0)[:, None]
    col = offs_n[:, None]
    row = offs_m[None, :]
    mask = (col < N) & (row < M)
    if SPLIT_K == 1:
        tl.store(Y_ptr + row * N + col, out.to(Y_ptr.dtype.element_ty), mask=mask)
    else:
        p_ptrs = P_ptr + (split * M + row).to(tl.int64) * N + col
        tl.store(p_ptrs, out, mask=mask)
        tl.debug_barrier()
        if tl.atomic_add(C_ptr + pid_n, 1, sem="acq_rel", scope="gpu") == SPLIT_K - 1:
            total = tl.zeros(out.shape, dtype=tl.float32)
            for s in tl.static_range(SPLIT_K):
                total += tl.load(p_ptrs + (s - split) * M * N, mask=mask, other=0.0, cache_modifier=".cg")
            tl.store(Y_ptr + row * N + col, total.to(Y_ptr.dtype.element_ty), mask=mask)
            tl.store(C_ptr + pid_n, 0)


def few_configs(N: int, K: int, sms: int) -> list[tuple]:
    """(BLOCK_N, BLOCK_K, SPLIT_K, STAGES, IMMA): 1-8 programs per multiprocessor, >= 2 K tiles a split.
    NOTE: warp-specialized loops (``tl.range(..., warp_specialize=True)``) with 4-8 stages were tried too: on
    Triton 3.6 (H100) compiling and running them once did not finish in 470 s (10 processes, 48 configs a
    shape; the plain ones took 11 s), so they are not offered."""
    return [
        (bn, bk, sk, st, imma)
        for bn in (32, 64, 128)
        for bk, st in ((128, 4), (128, 6), (256, 3))
        for imma in (False, True)
        for sk in (1, 2, 4, 8)
        if sms <= triton.cdiv(N, bn) * sk <= 8 * sms
        and triton.cdiv(K, sk) >= 2 * bk
        and (sk == 1 or triton.cdiv(N, bn) < 4 * sms)
    ]


def run_few(x, iw, cfg):
    """A call of the TMA few-rows kernel (descriptors made per call: a captured graph keeps their addresses)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    bn, bk, sk, st, imma = cfg
    M, K = x.shape
    N = iw.qweight.shape[0]
    bm = max(16, triton.next_power_of_2(M))
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    part = torch.empty(sk, M, N, dtype=torch.float32, device=x.device)
    counters = torch.zeros(triton.cdiv(N, bn), dtype=torch.int32, device=x.device)
    wd = TensorDescriptor.from_tensor(iw.qweight, [bn, bk])

    def go():
        if imma:
            planes, sx = im.split_rows(x)
            xd = TensorDescriptor.from_tensor(planes.view(2 * M, K), [bm, bk])
        else:
            sx, xd = y, TensorDescriptor.from_tensor(x, [bm, bk])
        _w8_tma_few[(triton.cdiv(N, bn), sk)](wd, xd, iw.scale, y, part, counters, sx, M, N, K, M, BLOCK_N=bn,
                                             BLOCK_M=bm, BLOCK_K=bk, SPLIT_K=sk, STAGES=st, IMMA=imma,
                                             num_warps=4, num_stages=st, launch_pdl=True)  # fmt: skip
        return y

    return go


def few_rows(M: int, layer: str, sms: int, table: list, warm: str | None = None) -> None:
    """cuBLAS bf16, our few-rows kernel (converting / int8 planes, autotuned), every TMA config: graph replays.
    ``warm`` "i/n": only compile every n-th TMA config from the i-th (run n such processes first, in parallel)."""
    N, K = GLM_LINEARS[layer]
    if warm:
        i, n = map(int, warm.split("/"))
        x = torch.zeros(M, K, dtype=torch.bfloat16, device="cuda")
        iw = Int8Weight.quantize(torch.randn(N, K, dtype=torch.bfloat16, device="cuda"))
        for cfg in few_configs(N, K, sms)[i::n]:
            with contextlib.suppress(Exception):  # failures are reported by the timed run
                run_few(x, iw, cfg)()
        return
    ws = [torch.randn(N, K, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(copies_for(N * K))]
    iws = [Int8Weight.quantize(w) for w in ws]
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    ref = x.float() @ iws[0].dequantize().T
    bf16 = graph_ms([lambda w=w: torch.matmul(x, w.T) for w in ws])
    table.append((layer, M, "cuBLAS bf16", bf16, 1.0))
    for path, mode in (("few-rows kernel, converting", "0"), ("few-rows kernel, int8 planes", "1")):
        with environ(AUTOGLM_W8_IMMA=mode):
            ms = graph_ms([lambda iw=iw: im.int8_linear_triton(x, iw.qweight, iw.scale) for iw in iws])
        table.append((layer, M, path, ms, bf16 / ms))
    print(f"{layer} {M} rows: bf16 {bf16 * 1e3:.2f} us; few-rows kernel {table[-2][3] * 1e3:.2f} / "
          f"{table[-1][3] * 1e3:.2f} us", flush=True)  # fmt: skip
    found = []
    for cfg in few_configs(N, K, sms):
        bn, bk, sk, st, imma = cfg
        name = f"TMA {bn}x{bk} {st} stages split {sk} {'planes' if imma else 'converting'}"
        try:
            fns = [run_few(x, iw, cfg) for iw in iws]
            err = rel(fns[0](), ref)
            if not err < 1e-2:
                print(f"  {name}: WRONG rel err {err:.2e}", flush=True)
                continue
            ms = graph_ms(fns)
        except Exception as e:  # noqa: BLE001  (a config that does not compile: say so, go on)
            print(f"  {name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:150]}", flush=True)
            continue
        found.append((ms, name))
    for ms, name in sorted(found)[:4]:
        print(f"  {name}: {ms * 1e3:.2f} us, {bf16 / ms:.2f}x bf16", flush=True)
        table.append((layer, M, name, ms, bf16 / ms))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="4096")
    ap.add_argument("--layers", default=",".join(GLM_LINEARS))
    ap.add_argument(
        "--warm", default=None, help="few rows, i/n: compile every n-th config from i, time nothing"
    )
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "w8_tma.json"))
    args = ap.parse_args()
    if args.warm:
        M_few = [int(r) for r in args.rows.split(",") if int(r) <= im.FEW_ROWS]
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        for M in M_few:
            for layer in args.layers.split(","):
                few_rows(M, layer, sms, [], args.warm)
        return
    torch.manual_seed(0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"{torch.cuda.get_device_name()}, triton {triton.__version__}")
    table = []
    for M in [int(r) for r in args.rows.split(",")]:
        for layer in args.layers.split(","):
            if M <= im.FEW_ROWS:
                few_rows(M, layer, sms, table)
                continue
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
