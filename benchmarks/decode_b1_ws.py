"""Batch-1 split-KV decode as a warp-specialized Gluon kernel (TMA page loads, wgmma): a diagnostic, not kept.

    python3 benchmarks/decode_b1_ws.py [--ctx 32768,8192] [--variants 128:66:3,128:66:3:p,...]

One program per (split, KV head): a producer warp brings each 16-token page's K and V rows of its head
(two 64-wide halves each, 128-byte swizzle) by TMA into a ring of STAGES tiles of BLOCK_N tokens, in order;
one consumer warpgroup computes S = q K^T (the group's 16 heads padded to wgmma's 64 rows), the online
softmax and O += P V, and writes the split's partial output and lse in flash_decode's layout, so the
product's merge kernel finishes it. Compared with the product's plan and a plain read of the same bytes
(RESULTS.md "Batch-1 decode as a warp-specialized Gluon kernel": no faster than the Triton kernel, not kept).
Batch 1, bf16 cache of 2 KV heads x 128, 16-token pages; needs an H100/H200.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.gluon_common import (  # noqa: E402
    TensorDescriptor,
    fence_async_shared,
    gl,
    gluon,
    mbarrier,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from kernels.gluon_common import barrier as _barrier  # noqa: E402
from kernels.gluon_common import tma_load as _tma_load  # noqa: E402

PAGE = 16
HD = 128


@gluon.jit
def _loader(k_desc, v_desc, k_bufs, v_bufs, ready, empty, BT_ptr, kvh, first_page, n_pages, n_tiles,
            PAGES: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    """Producer warp: tile i's pages (block ids from the block table) into ring slot i % STAGES."""
    lay: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    offs = gl.arange(0, PAGES, layout=lay)
    nbytes: gl.constexpr = 4 * PAGES * k_desc.block_type.nbytes
    col = kvh * 128
    for i in range(n_tiles):
        s = i % STAGES
        page = i * PAGES + offs
        blks = gl.load(BT_ptr + first_page + page, mask=page < n_pages, other=0)
        mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(ready.index(s), nbytes)
        for j in gl.static_range(PAGES):
            row = gl.sum(gl.where(offs == j, blks, 0), axis=0) * 16
            _tma_load(k_desc, [row, col], ready.index(s), k_bufs.index(2 * s).slice(16 * j, 16))
            _tma_load(k_desc, [row, col + 64], ready.index(s), k_bufs.index(2 * s + 1).slice(16 * j, 16))
            _tma_load(v_desc, [row, col], ready.index(s), v_bufs.index(2 * s).slice(16 * j, 16))
            _tma_load(v_desc, [row, col + 64], ready.index(s), v_bufs.index(2 * s + 1).slice(16 * j, 16))


@gluon.jit
def _q_halves(Q_ptr, kvh, stride_qh, GROUP: gl.constexpr, layout: gl.constexpr):
    """The KV head's GROUP query heads (rows past them 0, up to wgmma's 64) as two 64-wide halves of d."""
    rows = gl.arange(0, 64, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, 64, layout=gl.SliceLayout(0, layout))
    qmask = (rows < GROUP)[:, None] & (cols < 64)[None, :]
    qp = Q_ptr + (kvh * GROUP + rows)[:, None] * stride_qh + cols[None, :]
    return gl.load(qp, mask=qmask, other=0.0), gl.load(qp + 64, mask=qmask, other=0.0)


@gluon.jit
def _consumer(k_bufs, v_bufs, ready, empty, Q_ptr, OP_ptr, LSE_ptr, kvh, split, lo, hi, n_tiles, stride_qh,
              stride_oh, stride_os, stride_lh, qk_scale, GROUP: gl.constexpr, BLOCK_N: gl.constexpr,
              STAGES: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, 64, 16]
    )
    qa_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    pa_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    q_lo, q_hi = _q_halves(Q_ptr, kvh, stride_qh, GROUP, qa_layout)
    m_i = gl.full([64], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([64], gl.float32, gl.SliceLayout(1, s_layout))
    acc_lo = gl.zeros([64, 64], gl.float32, o_layout)
    acc_hi = gl.zeros([64, 64], gl.float32, o_layout)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    scale = qk_scale * 1.4426950408889634
    for i in range(n_tiles):
        st = i % STAGES
        mbarrier.wait(ready.index(st), (i // STAGES) & 1)
        s = gl.zeros([64, BLOCK_N], gl.float32, s_layout)
        s = warpgroup_mma(q_lo, k_bufs.index(2 * st).permute((1, 0)), s, is_async=True)
        s = warpgroup_mma(q_hi, k_bufs.index(2 * st + 1).permute((1, 0)), s, is_async=True)
        s = warpgroup_mma_wait(num_outstanding=0, deps=(s,))
        s = gl.where(((lo + i * BLOCK_N + offs_n) < hi)[None, :], s * scale, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, axis=1))
        alpha = gl.exp2(m_i - m_new)
        p = gl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + gl.sum(p, axis=1)
        m_i = m_new
        a_o = gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))
        acc_lo = acc_lo * a_o[:, None]
        acc_hi = acc_hi * a_o[:, None]
        p16 = gl.convert_layout(p.to(gl.bfloat16), pa_layout)
        acc_lo = warpgroup_mma(p16, v_bufs.index(2 * st), acc_lo, is_async=True)
        acc_hi = warpgroup_mma(p16, v_bufs.index(2 * st + 1), acc_hi, is_async=True)
        acc_lo, acc_hi = warpgroup_mma_wait(num_outstanding=0, deps=(acc_lo, acc_hi))
        _barrier()
        fence_async_shared()
        mbarrier.arrive(empty.index(st))
    _store(acc_lo, acc_hi, m_i, l_i, OP_ptr, LSE_ptr, kvh, split, stride_oh, stride_os, stride_lh, GROUP, s_layout,
           o_layout)  # fmt: skip


@gluon.jit
def _store(acc_lo, acc_hi, m_i, l_i, OP_ptr, LSE_ptr, kvh, split, stride_oh, stride_os, stride_lh,
           GROUP: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr):  # fmt: skip
    l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
    inv = 1.0 / gl.where(l_o == 0.0, 1.0, l_o)
    orow = gl.arange(0, 64, layout=gl.SliceLayout(1, o_layout))
    ocol = gl.arange(0, 64, layout=gl.SliceLayout(0, o_layout))
    omask = (orow < GROUP)[:, None] & (ocol < 64)[None, :]
    op = OP_ptr + (kvh * GROUP + orow)[:, None] * stride_oh + split * stride_os + ocol[None, :]
    gl.store(op, acc_lo * inv[:, None], mask=omask)
    gl.store(op + 64, acc_hi * inv[:, None], mask=omask)
    lrow = gl.arange(0, 64, layout=gl.SliceLayout(1, s_layout))
    lse = gl.where(l_i == 0.0, float("-inf"), m_i + gl.log2(gl.where(l_i == 0.0, 1.0, l_i)))
    gl.store(LSE_ptr + (kvh * GROUP + lrow) * stride_lh + split, lse, mask=lrow < GROUP)


@gluon.jit
def _qk(q_lo, q_hi, k_bufs, ready, i, lo, hi, offs_n, scale, s_layout: gl.constexpr, BLOCK_N: gl.constexpr,
        STAGES: gl.constexpr):  # fmt: skip
    st = i % STAGES
    mbarrier.wait(ready.index(st), (i // STAGES) & 1)
    s = gl.zeros([64, BLOCK_N], gl.float32, s_layout)
    s = warpgroup_mma(q_lo, k_bufs.index(2 * st).permute((1, 0)), s, is_async=True)
    s = warpgroup_mma(q_hi, k_bufs.index(2 * st + 1).permute((1, 0)), s, is_async=True)
    return s


@gluon.jit
def _consumer_pipe(k_bufs, v_bufs, ready, empty, Q_ptr, OP_ptr, LSE_ptr, kvh, split, lo, hi, n_tiles, stride_qh,
                   stride_oh, stride_os, stride_lh, qk_scale, GROUP: gl.constexpr, BLOCK_N: gl.constexpr,
                   STAGES: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
    """As _consumer, but tile i + 1's q K^T is issued before tile i's P V, so the softmax of one tile runs
    while the tensor cores do the other's product (FA3's intra-warpgroup overlap)."""
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, 64, 16]
    )
    qa_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    pa_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    q_lo, q_hi = _q_halves(Q_ptr, kvh, stride_qh, GROUP, qa_layout)
    l_i = gl.zeros([64], gl.float32, gl.SliceLayout(1, s_layout))
    acc_lo = gl.zeros([64, 64], gl.float32, o_layout)
    acc_hi = gl.zeros([64, 64], gl.float32, o_layout)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    scale = qk_scale * 1.4426950408889634
    s = _qk(q_lo, q_hi, k_bufs, ready, 0, lo, hi, offs_n, scale, s_layout, BLOCK_N, STAGES)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s,))
    s = gl.where(((lo + offs_n) < hi)[None, :], s * scale, float("-inf"))
    m_i = gl.max(s, axis=1)
    p = gl.exp2(s - m_i[:, None])
    l_i = gl.sum(p, axis=1)
    for i in range(1, n_tiles):
        p16 = gl.convert_layout(p.to(gl.bfloat16), pa_layout)
        s = _qk(q_lo, q_hi, k_bufs, ready, i, lo, hi, offs_n, scale, s_layout, BLOCK_N, STAGES)
        pst = (i - 1) % STAGES
        acc_lo = warpgroup_mma(p16, v_bufs.index(2 * pst), acc_lo, is_async=True)
        acc_hi = warpgroup_mma(p16, v_bufs.index(2 * pst + 1), acc_hi, is_async=True)
        s = warpgroup_mma_wait(num_outstanding=2, deps=(s,))
        s = gl.where(((lo + i * BLOCK_N + offs_n) < hi)[None, :], s * scale, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, axis=1))
        alpha = gl.exp2(m_i - m_new)
        p = gl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + gl.sum(p, axis=1)
        m_i = m_new
        acc_lo, acc_hi, p16 = warpgroup_mma_wait(num_outstanding=0, deps=(acc_lo, acc_hi, p16))
        _barrier()
        fence_async_shared()
        mbarrier.arrive(empty.index(pst))
        a_o = gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))
        acc_lo = acc_lo * a_o[:, None]
        acc_hi = acc_hi * a_o[:, None]
    p16 = gl.convert_layout(p.to(gl.bfloat16), pa_layout)
    pst = (n_tiles - 1) % STAGES
    acc_lo = warpgroup_mma(p16, v_bufs.index(2 * pst), acc_lo, is_async=True)
    acc_hi = warpgroup_mma(p16, v_bufs.index(2 * pst + 1), acc_hi, is_async=True)
    acc_lo, acc_hi, p16 = warpgroup_mma_wait(num_outstanding=0, deps=(acc_lo, acc_hi, p16))
    _store(acc_lo, acc_hi, m_i, l_i, OP_ptr, LSE_ptr, kvh, split, stride_oh, stride_os, stride_lh, GROUP, s_layout,
           o_layout)  # fmt: skip


@gluon.jit
def _consumer_of(k_bufs, v_bufs, ready, empty, Q_ptr, OP_ptr, LSE_ptr, kvh, split, lo, hi, n_tiles, stride_qh,
                 stride_oh, stride_os, stride_lh, qk_scale, GROUP: gl.constexpr, BLOCK_N: gl.constexpr,
                 STAGES: gl.constexpr, PIPE: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
    """The consumer partition: ``_consumer_pipe`` if PIPE, else ``_consumer``."""
    if PIPE:
        _consumer_pipe(k_bufs, v_bufs, ready, empty, Q_ptr, OP_ptr, LSE_ptr, kvh, split, lo, hi, n_tiles, stride_qh,
                       stride_oh, stride_os, stride_lh, qk_scale, GROUP, BLOCK_N, STAGES, num_warps)  # fmt: skip
    else:
        _consumer(k_bufs, v_bufs, ready, empty, Q_ptr, OP_ptr, LSE_ptr, kvh, split, lo, hi, n_tiles, stride_qh,
                  stride_oh, stride_os, stride_lh, qk_scale, GROUP, BLOCK_N, STAGES, num_warps)  # fmt: skip


@gluon.jit
def _decode_ws_kernel(k_desc, v_desc, Q_ptr, BT_ptr, SEQ_ptr, OP_ptr, LSE_ptr, stride_qh, stride_oh, stride_os,
                      stride_lh, qk_scale, GROUP: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
                      LOADER_REGS: gl.constexpr, PIPE: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
    split = gl.program_id(0)
    kvh = gl.program_id(1)
    seq_len = gl.load(SEQ_ptr)
    per = gl.maximum(gl.cdiv(gl.cdiv(seq_len, BLOCK_N), gl.num_programs(0)), 1)
    lo = split * per * BLOCK_N
    hi = gl.minimum(lo + per * BLOCK_N, seq_len)
    n_tiles = gl.cdiv(gl.maximum(hi - lo, 0), BLOCK_N)
    if n_tiles > 0:
        PAGES: gl.constexpr = BLOCK_N // 16
        smem_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, 64], gl.bfloat16)
        k_bufs = gl.allocate_shared_memory(gl.bfloat16, [2 * STAGES, BLOCK_N, 64], smem_layout)
        v_bufs = gl.allocate_shared_memory(gl.bfloat16, [2 * STAGES, BLOCK_N, 64], smem_layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(ready.index(s), count=1)
            mbarrier.init(empty.index(s), count=1)
        gl.warp_specialize(
            [
                (_consumer_of, (k_bufs, v_bufs, ready, empty, Q_ptr, OP_ptr, LSE_ptr, kvh, split, lo, hi, n_tiles,
                                stride_qh, stride_oh, stride_os, stride_lh, qk_scale, GROUP, BLOCK_N, STAGES, PIPE,
                                num_warps)),
                (_loader, (k_desc, v_desc, k_bufs, v_bufs, ready, empty, BT_ptr, kvh, lo // 16,
                           gl.cdiv(seq_len, 16), n_tiles, PAGES, STAGES)),
            ],
            [1],
            [LOADER_REGS],
        )  # fmt: skip


def _desc(cache: torch.Tensor):
    flat = cache.view(-1, cache.shape[2] * cache.shape[3])  # (blocks * 16, KV heads * 128)
    layout = gl.NVMMASharedLayout.get_default_for([16, 64], gl.bfloat16)
    return TensorDescriptor.from_tensor(flat, [16, 64], layout)


def decode_ws(q, k, v, tables, seq, cu, max_q, scale, ks=None, vs=None, *, splits=66, block_n=128, stages=3,
              merge=True, loader_regs=40, bufs=None, pipe=False):  # fmt: skip
    """Batch 1 only: q (1, 32, 128) bf16, k/v (blocks, 16, 2, 128) bf16."""
    from kernels import flash_decode as fd

    nh, hd = q.shape[1], q.shape[2]
    nkv = k.shape[2]
    if bufs is None:
        bufs = (torch.empty((1, nh, splits, hd), dtype=torch.float32, device=q.device),
                torch.empty((1, nh, splits), dtype=torch.float32, device=q.device),
                torch.empty_like(q), _desc(k), _desc(v))  # fmt: skip
    op, lse, out, kd, vd = bufs
    _decode_ws_kernel[(splits, nkv)](
        kd, vd, q, tables, seq, op, lse, q.stride(1), op.stride(1), op.stride(2), lse.stride(1), float(scale),
        GROUP=nh // nkv, BLOCK_N=block_n, STAGES=stages, LOADER_REGS=loader_regs, PIPE=pipe, num_warps=4,
    )  # fmt: skip
    if merge:
        fd._merge_kernel[(1, nh, 4)](
            op, lse, cu, seq, out, op.stride(0), op.stride(1), op.stride(2), lse.stride(0), lse.stride(1),
            out.stride(0), out.stride(1), splits, HEAD_DIM=hd, BLOCK_D=32, BLOCK_S=triton.next_power_of_2(splits),
            BLOCK_N=block_n, PDL=False, num_warps=4,
        )  # fmt: skip
    return out


def parse(var: str) -> tuple[int, int, int, bool]:
    """A variant "tile:splits:stages[:p]" (p: the pipelined consumer)."""
    f = var.split(":")
    return int(f[0]), int(f[1]), int(f[2]), len(f) > 3 and f[3] == "p"


def timed(table: list, tag: str, label: str, fns: list, nbytes: int, copy_gbps: float) -> None:
    """Time the calls (one per cache copy) as graph replays, add a row; a variant that fails is reported."""
    from benchmarks.kernels import graph_ms

    try:
        us = graph_ms(fns, reps=50) * 1e3
    except Exception as e:  # noqa: BLE001  (say which variant failed, time the others)
        print(f"{tag} {label}: FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
        return
    table.append((tag, label, us, nbytes / us / 1e3 / copy_gbps))
    print(f"{tag} {label:40s} {us:7.2f} us {table[-1][3]:6.1%} of copy", flush=True)


def main() -> None:
    from benchmarks.decode_b1 import _read_kernel
    from benchmarks.kernels import limits, paged_cache, rel, report_table
    from kernels import flash_decode as fd

    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", default="32768,8192")
    ap.add_argument("--variants", default="128:66:3,128:66:3:p,64:132:3,64:132:3:p,64:66:6:p,128:132:3")
    ap.add_argument(
        "--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "decode_b1_ws.json")
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    lim = limits()
    print(f"{torch.cuda.get_device_name()} copy {lim['copy_GBps']:.0f} GB/s")
    table: list = []
    checks: list = []
    for ctx in [int(c) for c in args.ctx.split(",")]:
        # correctness first, against the product's call: the length on the tiles, and one off them and the pages
        for n in (ctx, ctx - 37):
            k, v, _, _, tables, seq = paged_cache(1, ctx)
            seq.fill_(n)
            q = torch.randn(1, 32, HD, dtype=torch.bfloat16, device="cuda")
            cu = torch.arange(2, dtype=torch.int32, device="cuda")
            a = (q, k, v, tables, seq, cu, 1, HD**-0.5)
            ref = fd.flash_decode_triton(*a)
            for var in args.variants.split(","):
                bn, sp, st, pipe = parse(var)
                got = decode_ws(*a, splits=sp, block_n=bn, stages=st, pipe=pipe)
                checks.append((n, var, rel(got, ref)))
                print(f"check length {n} {var}: rel err {checks[-1][2]:.2e}", flush=True)
        copies = []
        for _ in range(8):
            k, v, _, _, tables, seq = paged_cache(1, ctx)
            q = torch.randn(1, 32, HD, dtype=torch.bfloat16, device="cuda")
            cu = torch.arange(2, dtype=torch.int32, device="cuda")
            copies.append((q, k, v, tables, seq, cu, 1, HD**-0.5))
        nbytes = 2 * copies[0][1].numel() * 2
        tag = f"{ctx // 1024}k"
        timed(table, tag, "product plan", [partial(fd.flash_decode_triton, *a) for a in copies], nbytes,
              lim["copy_GBps"])  # fmt: skip
        for var in args.variants.split(","):
            bn, sp, st, pipe = parse(var)
            for merge in (True, False):
                fns = []
                for a in copies:
                    bufs = (torch.empty((1, 32, sp, HD), dtype=torch.float32, device="cuda"),
                            torch.empty((1, 32, sp), dtype=torch.float32, device="cuda"),
                            torch.empty_like(a[0]), _desc(a[1]), _desc(a[2]))  # fmt: skip
                    fns.append(partial(decode_ws, *a, splits=sp, block_n=bn, stages=st, merge=merge, bufs=bufs,
                                       pipe=pipe))  # fmt: skip
                timed(table, tag, f"gluon {var}{'' if merge else ' no merge'}", fns, nbytes, lim["copy_GBps"])
        flat = [torch.cat([a[1].flatten(), a[2].flatten()]) for a in copies]
        outs = torch.empty(528, device="cuda")
        for progs, block, stages in ((132, 8192, 4), (528, 4096, 4)):
            n = flat[0].numel() // progs // block * block
            fns = [partial(_read_kernel[(progs,)], x, outs, n, BLOCK=block, STAGES=stages) for x in flat]
            timed(table, tag, f"plain read {progs}x{block}x{stages}", fns, nbytes, lim["copy_GBps"])
    print(
        "\nchecks (rel err against the product's call):", ", ".join(f"{n} {v} {e:.1e}" for n, v, e in checks)
    )
    report_table(args.json, ("context", "kernel", "GPU us", "of copy"), ("", "", ".2f", ".1%"), table)


if __name__ == "__main__":
    main()
