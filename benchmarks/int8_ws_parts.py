"""Where the W8A16 Gluon GEMM's time goes at 8-32 rows (issue 5): its consumer loop, how many programs stream
(N / 64 of 132 SMs), or the TMA weight stream itself?

    python3 benchmarks/int8_ws_parts.py [ROWS, e.g. 8 or 8,32]

Chains (CUDA graph of calls over 8 weight copies, benchmarks.kernels.graph_ms), GPU us per call:
bf16 cuBLAS; the product's path (planes + GEMM, PDL); its GEMM alone; a Triton plain read of the weight
bytes; and a generalized copy of the GEMM: SPLIT (K halves, partial outputs), KSUB (128-byte k tiles a ring
stage), KEEP (stages whose wgmmas stay in flight), MMA off (the ring only: TMA loads, nothing computed),
REDUCE (the last split of a channel tile adds the partials); at 8 rows a %globaltimer timeline per program of
one cold call (``timeline``). The generalized kernel repeats kernels/int8_ws.py's loader and consumer on
purpose: the switches would only slow the product's. Results: benchmarks/RESULTS.md, "W8A16 at 8-32 rows:
where the Gluon GEMM's time goes". Needs an H100/H200.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.decode_b1 import _read_kernel
from benchmarks.kernels import GLM_LINEARS, graph_ms, program_timeline
from kernels import int8_ws
from kernels.gluon_common import gl, gluon, mbarrier, warpgroup_mma, warpgroup_mma_wait
from kernels.gluon_common import tma_load as _tma_load
from kernels.int8_ws import _descriptor, _griddepcontrol
from kernels.quant import Int8Weight

BN, BK = 64, 128


@gluon.jit
def _now():
    return gl.inline_asm_elementwise(
        "mov.u64 $0, %globaltimer;", "=l", [], dtype=gl.int64, is_pure=False, pack=1
    )


@gluon.jit
def _ld(w_desc, p_desc, w_bufs, p_bufs, ready, empty, off_n, t0, n_st, STAGES: gl.constexpr, KSUB: gl.constexpr,
        PDL: gl.constexpr):  # fmt: skip
    BKc: gl.constexpr = w_desc.block_type.shape[1]
    nbytes: gl.constexpr = KSUB * (w_desc.block_type.nbytes + p_desc.block_type.nbytes)
    n_pre = gl.minimum(n_st, STAGES)
    for i in range(n_pre):
        mbarrier.expect(ready.index(i), nbytes)
        for j in gl.static_range(KSUB):
            _tma_load(w_desc, [off_n, (t0 + i * KSUB + j) * BKc], ready.index(i), w_bufs.index(i * KSUB + j))
    if PDL:
        _griddepcontrol("wait")
    for i in range(n_pre):
        for j in gl.static_range(KSUB):
            _tma_load(p_desc, [0, (t0 + i * KSUB + j) * BKc], ready.index(i), p_bufs.index(i * KSUB + j))
    for i in range(n_pre, n_st):
        s = i % STAGES
        mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(ready.index(s), nbytes)
        for j in gl.static_range(KSUB):
            _tma_load(w_desc, [off_n, (t0 + i * KSUB + j) * BKc], ready.index(s), w_bufs.index(s * KSUB + j))
            _tma_load(p_desc, [0, (t0 + i * KSUB + j) * BKc], ready.index(s), p_bufs.index(s * KSUB + j))


@gluon.jit
def _cs(w_bufs, p_bufs, ready, empty, n_st, T_ptr, BNc: gl.constexpr, MP: gl.constexpr, STAGES: gl.constexpr,
        KSUB: gl.constexpr, KEEP: gl.constexpr, MMA: gl.constexpr, TIMES: gl.constexpr,
        num_warps: gl.constexpr):  # fmt: skip
    layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, MP, 32]
    )
    acc_hi = gl.zeros([BNc, MP], gl.int32, layout)
    acc_lo = gl.zeros([BNc, MP], gl.int32, layout)
    for i in range(n_st):
        s = i % STAGES
        mbarrier.wait(ready.index(s), (i // STAGES) & 1)
        if TIMES:
            if i == 0:
                gl.store(T_ptr + 1, _now())
            if i == n_st // 2:
                gl.store(T_ptr + 2, _now())
        if MMA:
            for j in gl.static_range(KSUB):
                w = w_bufs.index(s * KSUB + j)
                p = p_bufs.index(s * KSUB + j)
                acc_hi = warpgroup_mma(w, p.slice(0, MP).permute((1, 0)), acc_hi, is_async=True)
                acc_lo = warpgroup_mma(w, p.slice(MP, MP).permute((1, 0)), acc_lo, is_async=True)
            acc_hi, acc_lo = warpgroup_mma_wait(num_outstanding=2 * KSUB * KEEP, deps=(acc_hi, acc_lo))
            if KEEP > 0:
                mbarrier.arrive(empty.index((i + STAGES - KEEP) % STAGES), pred=i >= KEEP)
            else:
                mbarrier.arrive(empty.index(s))
        else:
            mbarrier.arrive(empty.index(s))
    if MMA:
        acc_hi, acc_lo = warpgroup_mma_wait(num_outstanding=0, deps=(acc_hi, acc_lo))
    return acc_hi, acc_lo


@gluon.jit
def _diag_kernel(w_desc, p_desc, S_ptr, SX_ptr, Y_ptr, CNT_ptr, YB_ptr, M, N, K_TILES, MP: gl.constexpr,
                 STAGES: gl.constexpr, SPLIT: gl.constexpr, KSUB: gl.constexpr, KEEP: gl.constexpr,
                 MMA: gl.constexpr, PDL: gl.constexpr, REDUCE: gl.constexpr, T_ptr, TIMES: gl.constexpr,
                 num_warps: gl.constexpr):  # fmt: skip
    BNc: gl.constexpr = w_desc.block_type.shape[0]
    BKc: gl.constexpr = w_desc.block_type.shape[1]
    if PDL:
        _griddepcontrol("launch_dependents")
    Tp = T_ptr + (gl.program_id(1) * gl.num_programs(0) + gl.program_id(0)) * 5
    if TIMES:
        gl.store(Tp, _now())
    off_n = gl.program_id(0) * BNc
    pk = gl.program_id(1)
    per = (K_TILES + SPLIT - 1) // SPLIT
    t0 = pk * per
    n_st = gl.minimum(per, K_TILES - t0) // KSUB
    w_bufs = gl.allocate_shared_memory(gl.int8, [STAGES * KSUB, BNc, BKc], w_desc.layout)
    p_bufs = gl.allocate_shared_memory(gl.int8, [STAGES * KSUB, 2 * MP, BKc], p_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1)
    acc_hi, acc_lo = gl.warp_specialize(
        [
            (
                _cs,
                (w_bufs, p_bufs, ready, empty, n_st, Tp, BNc, MP, STAGES, KSUB, KEEP, MMA, TIMES, num_warps),
            ),
            (_ld, (w_desc, p_desc, w_bufs, p_bufs, ready, empty, off_n, t0, n_st, STAGES, KSUB, PDL)),
        ],
        [1],
        [24],
    )
    if TIMES:
        gl.store(Tp + 3, _now())
    layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, MP, 32]
    )
    offs_n = off_n + gl.arange(0, BNc, layout=gl.SliceLayout(1, layout))
    offs_m = gl.arange(0, MP, layout=gl.SliceLayout(0, layout))
    sw = gl.load(S_ptr + offs_n, mask=offs_n < N, other=0.0)
    sx = gl.load(SX_ptr + offs_m, mask=offs_m < M, other=0.0)
    out = (acc_hi.to(gl.float32) + acc_lo.to(gl.float32) * (1.0 / 254.0)) * sw[:, None] * sx[None, :]
    mask = (offs_m[None, :] < M) & (offs_n[:, None] < N)
    if REDUCE:
        # serial split-K fixup: every split stores its float32 partial, the last to arrive (a counter per
        # channel tile, reset by it) adds the others' and stores the 16-bit output
        part = Y_ptr + offs_m[None, :] * N + offs_n[:, None]
        gl.store(part + pk * M * N, out, mask=mask)
        gl.thread_barrier()
        prev = gl.atomic_add(CNT_ptr + gl.program_id(0), 1, sem="acq_rel")
        if prev == SPLIT - 1:
            gl.thread_barrier()
            for k in gl.static_range(SPLIT):
                if k != pk:
                    out += gl.load(part + k * M * N, mask=mask, other=0.0)
            gl.store(YB_ptr + offs_m[None, :] * N + offs_n[:, None], out.to(gl.bfloat16), mask=mask)
            gl.store(CNT_ptr + gl.program_id(0), 0)
    else:
        gl.store(Y_ptr + pk * M * N + offs_m[None, :] * N + offs_n[:, None], out, mask=mask)
    if TIMES:
        gl.store(Tp + 4, _now())


def diag(planes, sx, M, iw, y, stages, split=1, ksub=1, keep=1, mma=True, pdl=False, reduce=False, cnt=None,
         yb=None, times=None):  # fmt: skip
    MP, K = planes.shape[1:]
    N = iw.qweight.shape[0]
    _diag_kernel[(N // BN, split)](
        _descriptor(iw.qweight, [BN, BK]), _descriptor(planes.view(2 * MP, K), [2 * MP, BK]), iw.scale, sx, y,
        cnt if reduce else y, yb if reduce else y, M, N, K // BK, MP=MP, STAGES=stages, SPLIT=split, KSUB=ksub,
        KEEP=keep, MMA=mma, PDL=pdl, REDUCE=reduce, T_ptr=times if times is not None else y,
        TIMES=times is not None, num_warps=4, launch_pdl=pdl,
    )  # fmt: skip


VARIANTS = [  # label, stages, split, ksub, keep, mma, pdl, reduce
    ("copy of GEMM", 16, 1, 1, 1, True, False, False),
    ("copy of GEMM, PDL chain", 16, 1, 1, 1, True, True, False),
    ("ring only (no MMA)", 16, 1, 1, 1, False, False, False),
    ("ring only, PDL chain", 16, 1, 1, 1, False, True, False),
    ("ring only, split 2, 8 st (2/SM)", 8, 2, 1, 1, False, False, False),
    ("ring only, split 2, 16 st", 16, 2, 1, 1, False, False, False),
    ("keep 2", 16, 1, 1, 2, True, False, False),
    ("keep 0", 16, 1, 1, 0, True, False, False),
    ("ksub 2, 8 st", 8, 1, 2, 1, True, False, False),
    ("split 2, 8 st", 8, 2, 1, 1, True, False, False),
    ("split 2, 8 st, PDL chain", 8, 2, 1, 1, True, True, False),
    ("split 2, 8 st, keep 2", 8, 2, 1, 2, True, False, False),
    ("split 2, 4 st, ksub 2", 4, 2, 2, 1, True, False, False),
    ("split 4, 4 st (qkv: 288 progs)", 4, 4, 1, 1, True, False, False),
    ("split 2, 8 st, REDUCED", 8, 2, 1, 1, True, False, True),
    ("split 2, 8 st, REDUCED, PDL chain", 8, 2, 1, 1, True, True, True),
    ("split 3, 5 st, REDUCED, PDL chain", 5, 3, 1, 1, True, True, True),
]


def timeline(name, planes, sx, M, iws, cnt):
    """%globaltimer stamps per program of one cold call: start, first tile ready, half of its tiles, mainloop
    done, stored; us after the first program's start (median / max; ``program_timeline``)."""
    N = iws[0].qweight.shape[0]
    for label, stages, split, ksub, keep, mma, reduce in (
        ("copy of GEMM", 16, 1, 1, 1, True, False),
        ("ring only", 16, 1, 1, 1, False, False),
        ("split 2, 8 st", 8, 2, 1, 1, True, False),
        ("split 2, 8 st, REDUCED", 8, 2, 1, 1, True, True),
    ):
        y = torch.empty((split, M, N), device="cuda")
        yr = torch.empty((M, N), dtype=torch.bfloat16, device="cuda")
        a = (stages, split, ksub, keep, mma, False, reduce, cnt, yr)

        def launch(t, rep, a=a, y=y):
            diag(planes, sx, M, iws[rep % len(iws)], y, *a, t)

        cells = program_timeline(launch, split * (N // BN))
        print(f"TIMELINE | {name} | {M} | {label} | {cells} |", flush=True)


def main() -> None:
    print(torch.cuda.get_device_name(), flush=True)
    for M in (int(r) for r in (sys.argv[1] if len(sys.argv) > 1 else "8").split(",")):
        for name in ("qkv", "o_proj", "down"):
            one(M, name)


def one(M: int, name: str) -> None:
    """Every variant of one layer at M rows, as chains of calls over 8 weight copies; prints table rows."""
    N, K = GLM_LINEARS[name]
    ws = [torch.randn(N, K, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(8)]
    iws = [Int8Weight.quantize(w) for w in ws]
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    mp = int8_ws.row_bucket(M)
    planes = torch.empty((2, mp, K), dtype=torch.int8, device="cuda")
    sx = torch.empty(mp, dtype=torch.float32, device="cuda")
    int8_ws.split_planes(x, planes, sx)
    yb = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")

    def ref8(iw):
        return int8_ws.planes_gemm(planes, sx, M, iw.qweight, iw.scale, None, yb.clone()).float()

    ref = ref8(iws[0])
    res = {}
    res["bf16 cuBLAS"] = graph_ms([lambda w=w: torch.matmul(x, w.T) for w in ws])
    res["product (planes+GEMM, PDL)"] = graph_ms(
        [lambda iw=iw: int8_ws.ws_linear(x, iw.qweight, iw.scale, None, yb) for iw in iws]
    )
    res["product GEMM alone"] = graph_ms(
        [lambda iw=iw: int8_ws.planes_gemm(planes, sx, M, iw.qweight, iw.scale, None, yb) for iw in iws]
    )
    flat = [iw.qweight.view(torch.bfloat16).view(-1) for iw in iws]
    n = flat[0].numel()
    out = torch.empty(1024, device="cuda")
    for progs in (N // 64, N // 32, N // 16):
        res[f"Triton plain read, {progs} progs"] = graph_ms(
            [lambda f=f, p=progs: _read_kernel[(p,)](f, out, n // p, BLOCK=4096, STAGES=4) for f in flat]
        )
    cnt = torch.zeros(N // BN, dtype=torch.int32, device="cuda")
    for label, stages, split, ksub, keep, mma, pdl, reduce in VARIANTS:
        stages = stages if mp < 32 else max(2, stages * 12 // 16)
        if (K // BK) % (split * ksub) and ksub > 1:
            continue
        y = torch.full((split, M, N), float("nan"), device="cuda")
        yr = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
        a = (stages, split, ksub, keep, mma, False, reduce, cnt, yr)
        try:
            diag(planes, sx, M, iws[0], y, *a)
            if mma:
                got = yr.float() if reduce else y.sum(0)
                err = ((got - ref).norm() / ref.norm()).item()
                if not err < 1e-2:
                    print(name, label, "WRONG", err, flush=True)
                    continue
            a = (stages, split, ksub, keep, mma, pdl, reduce, cnt, yr)
            fns = [lambda iw=iw, a=a, y=y: diag(planes, sx, M, iw, y, *a) for iw in iws]
            res[label] = graph_ms(fns)
            if reduce:  # the counters were reset and the output is still right after the chain
                err = ((yr.float() - ref8(iws[-1])).norm() / ref.norm()).item()
                if not (err < 1e-2 and int(cnt.sum()) == 0):
                    print(name, label, "WRONG after chain", err, int(cnt.sum()), flush=True)
        except Exception as e:  # noqa: BLE001
            print(name, label, "FAILED", type(e).__name__, str(e)[:300], flush=True)
    if M == 8 and name in ("qkv", "o_proj"):
        timeline(name, planes, sx, M, iws, cnt)
    bf = res["bf16 cuBLAS"]
    for label, ms in res.items():
        gbs = N * K / (ms * 1e-3) / 1e9 * (2 if label.startswith("bf16") else 1)
        print(f"| {name} | {M} | {label} | {ms * 1e3:.2f} | {bf / ms:.2f} | {gbs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
