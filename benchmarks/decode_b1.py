"""Where a batch-1 long-context decode call's time goes (issue 5: >= 75% of copy at 32k).

    python benchmarks/decode_b1.py [--ctx 32768,8192] [--int8] [--quick | --pages | --page-loop | --variants 128:66:2:4,...]

GPU us per call from CUDA-graph replays (8 cache copies a graph, as benchmarks/kernels.py's decode section):
the planned call, its decode kernel alone, its merge alone, split / tile / stage / warp variants, PDL off, and
a plain read of the same bytes by one Triton kernel (the floor a one-launch streaming kernel reaches), and
reads of a cache's bytes in three layouts (``layout_reads``: do the interleaved KV heads cost bandwidth?) and as
contiguous pages in order and in random order (``page_reads``: do the page order and size, or the 2-D tile
loads, keep the loop below a plain read?), and the decode loop itself in small page-sized steps with many stages
(``page_decodes``, ``--page-loop``: full math and adds only). Each variant's output is checked against the planned call's. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from functools import partial
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import HD, NH, environ, graph_ms, limits, paged_cache, rel, report_table  # noqa: E402
from kernels import flash_decode as fd  # noqa: E402
from kernels.triton_common import device_sms  # noqa: E402


class _Skip:
    """Stands in for a kernel: its launches do nothing (to time the other kernel of a call alone)."""

    def __getitem__(self, grid):
        return lambda *a, **k: None


@contextlib.contextmanager
def patched(name: str):
    keep = getattr(fd, name)
    setattr(fd, name, _Skip())
    try:
        yield
    finally:
        setattr(fd, name, keep)


@triton.jit
def _read_kernel(X, OUT, n_per, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    pid = tl.program_id(0)
    base = X + pid.to(tl.int64) * n_per
    acc = tl.zeros((BLOCK,), tl.float32)
    for i in tl.range(0, n_per, BLOCK, num_stages=STAGES):
        acc += tl.load(base + i + tl.arange(0, BLOCK)).to(tl.float32)
    tl.store(OUT + pid, tl.sum(acc))


@triton.jit
def _layout_read_kernel(K, V, OUT, tok_per, HSTRIDE: tl.constexpr, TSTRIDE: tl.constexpr, HEADS: tl.constexpr,
                        D: tl.constexpr, BT: tl.constexpr, STAGES: tl.constexpr):  # fmt: skip
    """K and V tiles of BT tokens x HEADS * D, tokens TSTRIDE elements apart, head h at h * HSTRIDE: program
    (split, head) reads its split's tok_per tokens of its head (HEADS = 1) or of both (HEADS = 2)."""
    pid = tl.program_id(0)
    splits = tl.num_programs(0) // (2 // HEADS)
    t0 = (pid % splits) * tok_per
    h = pid // splits
    acc = tl.zeros((BT, HEADS * D), tl.float32)
    offs_t = tl.arange(0, BT)
    offs_d = tl.arange(0, HEADS * D)
    for t in tl.range(t0, t0 + tok_per, BT, num_stages=STAGES):
        p = (t + offs_t)[:, None].to(tl.int64) * TSTRIDE + h * HSTRIDE + offs_d[None, :]
        acc += tl.load(K + p).to(tl.float32) + tl.load(V + p).to(tl.float32)
    tl.store(OUT + pid, tl.sum(acc))


@triton.jit
def _page_read_kernel(X, PAGES, OUT, pages_per, PAGE_ELEMS: tl.constexpr, STAGES: tl.constexpr):
    """Program p reads pages PAGES[p * pages_per ...] of X, each PAGE_ELEMS contiguous elements, as 1-D loads."""
    pid = tl.program_id(0)
    acc = tl.zeros((PAGE_ELEMS,), tl.float32)
    offs = tl.arange(0, PAGE_ELEMS)
    for i in tl.range(0, pages_per, num_stages=STAGES):
        pg = tl.load(PAGES + pid * pages_per + i).to(tl.int64)
        acc += tl.load(X + pg * PAGE_ELEMS + offs).to(tl.float32)
    tl.store(OUT + pid, tl.sum(acc))


def page_reads(case, ctx: int) -> None:
    """The same bytes as a 2-KV-head bf16 cache read as contiguous pages by 1-D loads, in order and in random
    order, at page sizes of one head's 16 tokens (4 KB, a head-major page), both heads' 16 tokens (8 KB, the
    cache's block) and 64 tokens (16 KB, both heads): is it the random order and page size that keep the
    decode loop below a plain read, or its 2-D tile loads?"""
    total = 2 * ctx * 2 * HD  # K and V elements
    flat = [torch.randn(total, dtype=torch.bfloat16, device="cuda") for _ in range(8)]
    for elems, progs, stages in ((2048, 132, 8), (2048, 264, 6), (4096, 132, 6), (8192, 132, 4)):
        pages = total // elems
        per = pages // progs
        outs = torch.empty(progs, device="cuda")
        for order in ("in order", "random"):
            ids = (
                torch.arange(pages, device="cuda")
                if order == "in order"
                else torch.randperm(pages, device="cuda")
            )
            ids = ids.int()

            def make(elems=elems, progs=progs, stages=stages, per=per, outs=outs, ids=ids):
                fns = [partial(_page_read_kernel[(progs,)], x, ids, outs, per, PAGE_ELEMS=elems, STAGES=stages)
                       for x in flat]  # fmt: skip
                fns[0]()
                return fns, 0.0

            case.record(f"pages of {elems * 2 // 1024} KB {order}, {progs}p {stages}st", make,
                        nbytes=progs * per * elems * 2)  # fmt: skip


@triton.jit
def _page_rows(BT, start_n, offs_t, kvh, stride_cb, stride_co, stride_ch, BLOCK_N: tl.constexpr,
               PAGE: tl.constexpr):  # fmt: skip
    """Cache-row offsets of tokens start_n .. start_n + BLOCK_N of KV head kvh through the block table."""
    if BLOCK_N == PAGE:
        row = tl.load(BT + start_n // PAGE).to(tl.int64) * stride_cb + offs_t.to(tl.int64) * stride_co
    else:
        offs_n = start_n + offs_t
        row = tl.load(BT + offs_n // PAGE).to(tl.int64) * stride_cb + (offs_n % PAGE).to(tl.int64) * stride_co
    return row + kvh * stride_ch


@triton.jit
def _page_load(KC, VC, row, offs_d, KT: tl.constexpr):
    """A step's K as (D, tokens) for the dot, loaded so (KT) or as rows and transposed, and its V rows."""
    if KT:
        kt = tl.load(KC + row[None, :] + offs_d[:, None])
    else:
        kt = tl.trans(tl.load(KC + row[:, None] + offs_d[None, :]))
    return kt, tl.load(VC + row[:, None] + offs_d[None, :])


@triton.jit
def _page_math(q, kt, v, m_i, l_i, acc, sink, qk_scale, COMPUTE: tl.constexpr, UPCAST: tl.constexpr):
    """One step's online softmax (COMPUTE) or element-wise adds of its K and V into sink."""
    if COMPUTE:
        if UPCAST:  # the CPU interpreter's bf16 dot (kernels/triton_common.py UPCAST_DOT)
            sc = tl.dot(q.to(tl.float32), kt.to(tl.float32))
        else:
            sc = tl.dot(q, kt)
        sc *= qk_scale * 1.4426950408889634
        m_new = tl.maximum(m_i, tl.max(sc, axis=1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(sc - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if UPCAST:
            acc = tl.dot(p.to(v.dtype).to(tl.float32), v.to(tl.float32), acc * alpha[:, None])
        else:
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    else:
        sink += tl.trans(kt).to(tl.float32) + v.to(tl.float32)
    return m_i, l_i, acc, sink


@triton.jit
def _page_decode_kernel(Q, KC, VC, BT, OP, LSE, ctx, stride_cb, stride_co, stride_ch, qk_scale,
                        GROUP: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, PAGE: tl.constexpr,
                        STAGES: tl.constexpr, KT: tl.constexpr, COMPUTE: tl.constexpr,
                        PREFETCH: tl.constexpr = False, UPCAST: tl.constexpr = False, STREAMS: tl.constexpr = 1,
                        OUT=None, CNT=None, FUSE: tl.constexpr = False, MERGERS: tl.constexpr = 16,
                        DC: tl.constexpr = 32, SP: tl.constexpr = 128):  # fmt: skip
    """Batch-1 decode of one (KV head, split) a program, BLOCK_N tokens (one or more 16-token pages) a step:
    K loaded as (D, tokens) for the dot (KT, as the product's kernel) or as (tokens, D) rows and transposed
    in registers; COMPUTE=0 only adds the K and V tiles element-wise (no reductions in the loop: the page
    reads' work) to tell the loads from the math. PREFETCH: no software pipeline (Triton's keeps 1-3 buffers
    and issues the next copies after the math): each step loads the next step's K and V into registers, and
    the block-table entries of the one after, before its math, so they are in flight while it runs.
    STREAMS=2: the split's tokens as two halves walked side by side (two independent online softmaxes a step,
    merged at the end), so one program has two dependency chains to overlap. FUSE: no merge kernel; each
    program takes a ticket for its KV head after storing its partial (CNT), and the last MERGERS programs of
    the head wait for the rest, then merge GROUP x D / DC pieces of the head group's output (DC dims of one
    query head each) from the partials into OUT; the last merger resets the counters."""
    kvh = tl.program_id(0)
    split = tl.program_id(1)
    split_len = tl.cdiv(tl.cdiv(ctx, BLOCK_N), tl.num_programs(1)) * BLOCK_N
    lo = split * split_len
    hi = tl.minimum(lo + split_len, ctx)
    offs_g = tl.arange(0, GROUP)
    offs_d = tl.arange(0, D)
    offs_t = tl.arange(0, BLOCK_N)
    q = tl.load(Q + (kvh * GROUP + offs_g)[:, None] * D + offs_d[None, :])
    m_i = tl.full((GROUP,), float("-inf"), tl.float32)
    l_i = tl.zeros((GROUP,), tl.float32)
    acc = tl.zeros((GROUP, D), tl.float32)
    sink = tl.zeros((BLOCK_N, D), tl.float32)
    if PREFETCH:
        last = ctx - BLOCK_N  # steps past the split's end (or the cache's) load the last step, unused
        row = _page_rows(
            BT, tl.minimum(lo, last), offs_t, kvh, stride_cb, stride_co, stride_ch, BLOCK_N, PAGE
        )
        kt_next, v_next = _page_load(KC, VC, row, offs_d, KT)
        row = _page_rows(BT, tl.minimum(lo + BLOCK_N, last), offs_t, kvh, stride_cb, stride_co, stride_ch,
                         BLOCK_N, PAGE)  # fmt: skip
        for start_n in tl.range(lo, hi, BLOCK_N, num_stages=1):
            kt = kt_next
            v = v_next
            # the next step's K and V (its rows read from the block table a step ago), and the block-table
            # entries of the step after it: all in flight during this step's math
            kt_next, v_next = _page_load(KC, VC, row, offs_d, KT)
            row = _page_rows(BT, tl.minimum(start_n + 2 * BLOCK_N, last), offs_t, kvh, stride_cb, stride_co,
                             stride_ch, BLOCK_N, PAGE)  # fmt: skip
            m_i, l_i, acc, sink = _page_math(q, kt, v, m_i, l_i, acc, sink, qk_scale, COMPUTE, UPCAST)
    elif STREAMS == 2:  # two halves side by side (the benchmark's shapes divide evenly: no masks)
        half = split_len // 2
        m_b = tl.full((GROUP,), float("-inf"), tl.float32)
        l_b = tl.zeros((GROUP,), tl.float32)
        acc_b = tl.zeros((GROUP, D), tl.float32)
        for start_n in tl.range(lo, tl.minimum(lo + half, hi), BLOCK_N, num_stages=STAGES):
            row = _page_rows(BT, start_n, offs_t, kvh, stride_cb, stride_co, stride_ch, BLOCK_N, PAGE)
            row_b = _page_rows(
                BT, start_n + half, offs_t, kvh, stride_cb, stride_co, stride_ch, BLOCK_N, PAGE
            )
            kt, v = _page_load(KC, VC, row, offs_d, KT)
            kt_b, v_b = _page_load(KC, VC, row_b, offs_d, KT)
            m_i, l_i, acc, sink = _page_math(q, kt, v, m_i, l_i, acc, sink, qk_scale, COMPUTE, UPCAST)
            m_b, l_b, acc_b, sink = _page_math(q, kt_b, v_b, m_b, l_b, acc_b, sink, qk_scale, COMPUTE, UPCAST)
        if COMPUTE:
            m_new = tl.maximum(m_i, m_b)
            a_a = tl.math.exp2(m_i - m_new)
            a_b = tl.math.exp2(m_b - m_new)
            l_i = l_i * a_a + l_b * a_b
            acc = acc * a_a[:, None] + acc_b * a_b[:, None]
            m_i = m_new
    else:
        for start_n in tl.range(lo, hi, BLOCK_N, num_stages=STAGES):
            row = _page_rows(BT, start_n, offs_t, kvh, stride_cb, stride_co, stride_ch, BLOCK_N, PAGE)
            kt, v = _page_load(KC, VC, row, offs_d, KT)
            m_i, l_i, acc, sink = _page_math(q, kt, v, m_i, l_i, acc, sink, qk_scale, COMPUTE, UPCAST)
    if not COMPUTE:
        acc += tl.sum(sink, axis=0)[None, :]
        l_i += 1.0
        m_i = tl.zeros((GROUP,), tl.float32)
    l_i = tl.where(l_i > 0, l_i, 1.0)  # a split past the end: no tiles, weight 0 in the merge
    heads = kvh * GROUP + offs_g
    tl.store(OP + (heads[:, None] * tl.num_programs(1) + split) * D + offs_d[None, :], acc / l_i[:, None])
    tl.store(LSE + heads * tl.num_programs(1) + split, m_i + tl.log2(l_i))
    if FUSE:
        _fused_merge(OP, LSE, OUT, CNT, kvh, GROUP, D, MERGERS, DC, SP)


@triton.jit
def _fence(x):
    """fence.acq_rel.gpu in every thread (x: any tensor the thread holds elements of; returned unchanged)."""
    return tl.inline_asm_elementwise(
        "fence.acq_rel.gpu;\n\tmov.b32 $0, $1;", "=r,r", [x], dtype=tl.int32, is_pure=False, pack=1
    )


@triton.jit
def _fused_merge(OP, LSE, OUT, CNT, kvh, GROUP: tl.constexpr, D: tl.constexpr, MERGERS: tl.constexpr,
                 DC: tl.constexpr, SP: tl.constexpr):  # fmt: skip
    """The split merge inside the decode kernel: a ticket per program after its partial is stored; the last
    MERGERS tickets of a KV head wait until every split of the head has stored, then each merges DC dims of
    query heads (pieces ticket, ticket + MERGERS, ...) from the partials (read through L2: .cg)."""
    nsplit = tl.num_programs(1)
    offs_dc = tl.arange(0, DC)
    tl.debug_barrier()
    _fence(offs_dc)
    tl.debug_barrier()
    ticket = tl.atomic_add(CNT + kvh, 1, sem="acq_rel", scope="gpu")
    first = nsplit - MERGERS
    if ticket >= first:
        cnt = tl.atomic_add(CNT + kvh, 0, sem="acquire", scope="gpu")
        while cnt < nsplit:
            cnt = tl.atomic_add(CNT + kvh, 0, sem="acquire", scope="gpu")
        _fence(offs_dc)
        tl.debug_barrier()
        offs_s = tl.arange(0, SP)
        for t in range(ticket - first, GROUP * (D // DC), MERGERS):
            head = kvh * GROUP + t // (D // DC)
            d0 = (t % (D // DC)) * DC
            lse = tl.load(LSE + head * nsplit + offs_s, mask=offs_s < nsplit, other=float("-inf"),
                          cache_modifier=".cg")  # fmt: skip
            m = tl.max(lse, axis=0)
            den = tl.sum(tl.math.exp2(lse - m), axis=0)
            out = tl.zeros((DC,), tl.float32)
            offs_c = tl.arange(0, 64)
            for c in range(0, nsplit, 64):  # 64 splits' pieces at a time (registers)
                s_c = c + offs_c
                w = tl.math.exp2(
                    tl.load(
                        LSE + head * nsplit + s_c,
                        mask=s_c < nsplit,
                        other=float("-inf"),
                        cache_modifier=".cg",
                    )
                    - m
                )
                part = tl.load(OP + (head * nsplit + s_c[:, None]) * D + d0 + offs_dc[None, :],
                               mask=(s_c < nsplit)[:, None], other=0.0, cache_modifier=".cg")  # fmt: skip
                out += tl.sum(w[:, None] * part, axis=0)
            tl.store(OUT + head * D + d0 + offs_dc, (out / den).to(OUT.dtype.element_ty))
        tl.debug_barrier()
        done = tl.atomic_add(CNT + 2 + kvh, 1, sem="acq_rel", scope="gpu")
        if done == MERGERS - 1:
            tl.atomic_xchg(CNT + kvh, 0, sem="relaxed", scope="gpu")
            tl.atomic_xchg(CNT + 2 + kvh, 0, sem="relaxed", scope="gpu")


def page_decodes(case, copies, ctx: int, variants=None) -> None:
    """The decode loop as the page reads do it: many stages of small steps (one 16-token page or a few), K
    loaded transposed (as the product) or as rows; full math (checked against the plan's output after a
    torch merge of the partials) and adds only; Triton's software pipeline or the next step prefetched into
    registers. Does the loop reach the page reads' 78-82% of copy?"""
    ref = case.ref.float()
    cnt = torch.zeros(4, dtype=torch.int32, device="cuda")
    o = torch.empty(NH, HD, dtype=torch.bfloat16, device="cuda")
    for bn, splits, stages, kt, compute, warps, *more in variants or (
        (16, 66, 8, 0, 1, 4), (16, 66, 8, 1, 1, 4), (16, 66, 8, 0, 0, 4), (16, 132, 6, 0, 1, 4),
        (16, 132, 8, 0, 1, 4), (16, 66, 12, 0, 1, 4), (16, 66, 8, 0, 1, 2), (32, 66, 6, 0, 1, 4),
        (32, 66, 6, 1, 1, 4), (32, 66, 6, 0, 0, 4), (32, 132, 4, 0, 1, 4), (64, 66, 4, 0, 1, 4),
        (64, 66, 4, 0, 0, 4), (128, 66, 3, 1, 1, 4), (128, 66, 3, 0, 0, 4),
        # stages 0: the next step's K and V loaded into registers before this step's math (PREFETCH)
        (16, 66, 0, 0, 1, 4), (32, 66, 0, 0, 1, 4), (32, 132, 0, 0, 1, 4), (64, 66, 0, 0, 1, 4),
        (64, 66, 0, 1, 1, 4), (64, 66, 0, 0, 1, 8), (64, 66, 0, 0, 0, 4), (128, 66, 0, 1, 1, 8),
    ):  # fmt: skip
        op = torch.empty(NH, splits, HD, device="cuda")
        lse = torch.empty(NH, splits, device="cuda")

        streams, fuse, mergers = list(more) + [1, 0, 16][len(more) :]
        # the pieces a merger takes: DC dims of one query head, GROUP x D / DC pieces a KV head
        dc = min(HD, max(16, (NH // 2) * HD // mergers))
        fused = (
            dict(OUT=o, CNT=cnt, FUSE=True, MERGERS=mergers, DC=dc, SP=triton.next_power_of_2(splits))
            if fuse
            else {}
        )

        def make(bn=bn, splits=splits, stages=stages, kt=kt, compute=compute, warps=warps, op=op, lse=lse,
                 streams=streams, fused=fused):  # fmt: skip
            fns = [
                partial(_page_decode_kernel[(2, splits)], a[0], a[1], a[2], a[3], op, lse, ctx, a[1].stride(0),
                        a[1].stride(1), a[1].stride(2), HD**-0.5, GROUP=NH // 2, D=HD, BLOCK_N=bn,
                        PAGE=a[1].shape[1], STAGES=max(stages, 1), KT=kt, COMPUTE=compute, PREFETCH=stages == 0,
                        STREAMS=streams, num_warps=warps, **fused)
                for a in copies
            ]  # fmt: skip
            o.fill_(float("nan"))
            fns[0]()
            fns[0]()  # twice: the counters were reset by the first call
            err = float("nan")
            if fused:
                err = rel(o.float().view_as(ref), ref)
                if int(cnt.abs().sum()) != 0:
                    raise RuntimeError(f"counters not reset: {cnt.tolist()}")
            elif compute:
                w = torch.exp2(lse - lse.amax(1, keepdim=True))
                out = (op * w[..., None]).sum(1) / w.sum(1)[:, None]
                err = rel(out.view_as(ref), ref)
            return fns, err

        case.record(f"page loop {bn}t {splits}s {f'{stages}st' if stages else 'prefetch'} {'KT' if kt else 'rows'} "
                    f"{'math' if compute else 'adds'} {warps}w" + (" 2 streams" if streams == 2 else "")
                    + (f" fused merge ({mergers} mergers)" if fuse else ""), make)  # fmt: skip


def layout_reads(case, ctx: int, splits: int = 66) -> None:
    """The same bytes as a 2-KV-head bf16 cache, read in three layouts: one head's half of each token's
    512-byte row (the cache's (blocks, 16, KV heads, D): what a decode program per KV head reads), one head's
    rows contiguous (head-major), and both heads' whole rows by one program. Blocks in order, no block table:
    whether the interleaved heads alone cost bandwidth."""
    kv = [torch.randn(2, ctx, 2, HD, dtype=torch.bfloat16, device="cuda") for _ in range(8)]
    hm = [torch.randn(2, 2, ctx, HD, dtype=torch.bfloat16, device="cuda") for _ in range(8)]
    outs = torch.empty(2 * splits, device="cuda")
    for bt, stages in ((64, 4), (128, 3)):
        per = ctx // splits // bt * bt
        for name, cache, heads, hstride, tstride in (
            ("one head, half rows (cache layout)", kv, 1, HD, 2 * HD),
            ("one head, head-major", hm, 1, ctx * HD, HD),
            ("both heads, whole rows", kv, 2, 0, 2 * HD),
        ):

            def make(
                cache=cache, heads=heads, hstride=hstride, tstride=tstride, bt=bt, stages=stages, per=per
            ):
                grid = (splits * (2 // heads),)
                fns = [
                    partial(_layout_read_kernel[grid], c[0], c[1], outs, per, HSTRIDE=hstride, TSTRIDE=tstride,
                            HEADS=heads, D=HD, BT=bt, STAGES=stages)
                    for c in cache
                ]  # fmt: skip
                fns[0]()
                return fns, 0.0

            case.record(f"read {name} {bt}x{stages}st", make, nbytes=2 * splits * per * 2 * HD * 2)


class Case:
    """One cache shape: its 8 copies, the planned call's output, and the rows timed on it."""

    def __init__(self, tag, copies, ref, kv_bytes, copy_gbps, table):
        self.tag, self.copies, self.ref, self.kv_bytes, self.copy, self.table = (
            tag, copies, ref, kv_bytes, copy_gbps, table
        )  # fmt: skip

    def timed(self, label, kw=None, check=True, ctxmgr=None):
        """The decode call with these arguments (and environment), checked against the plan's output."""
        kw = kw or {}

        def run():
            err = rel(fd.flash_decode_triton(*self.copies[0], **kw), self.ref) if check else float("nan")
            return [partial(fd.flash_decode_triton, *a, **kw) for a in self.copies], err

        self.record(label, run, ctxmgr=ctxmgr)

    def record(self, label, make, nbytes=None, ctxmgr=None):
        """Time ``make()``'s calls (one per cache copy; it returns them and an error figure) as graph replays and
        add a row; a variant that does not compile or fit is reported and skipped."""
        try:
            with ctxmgr or contextlib.nullcontext():
                fns, err = make()
                ms = graph_ms(fns, reps=50)
        except Exception as e:  # noqa: BLE001  (a variant that does not fit: say so, time the others)
            print(f"{self.tag:10s} {label:34s} FAILED {type(e).__name__}: {str(e)[:120]}", flush=True)
            return
        frac = (nbytes or self.kv_bytes) / ms / 1e6 / self.copy
        self.table.append((self.tag, label, ms * 1e3, frac, err))
        print(
            f"{self.tag:10s} {label:34s} {ms * 1e3:7.2f} us  {frac:5.1%} of copy  err {err:.1e}", flush=True
        )


@triton.jit
def _now():
    """%globaltimer (ns), for per-program timelines."""
    return tl.inline_asm_elementwise(
        "mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1
    )


@triton.jit
def _ablate_kernel(Q, KC, VC, BT, SEQ, OP, LSE, ctx, stride_cb, stride_co, stride_ch, qk_scale,
                   GROUP: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, PAGE: tl.constexpr,
                   STAGES: tl.constexpr, COMPUTE: tl.constexpr, PAGED: tl.constexpr, DYN: tl.constexpr,
                   T=None, TIMES: tl.constexpr = False):  # fmt: skip
    """A stripped copy of the decode kernel's split loop (batch 1, bf16, whole tiles) with parts switchable:
    COMPUTE (the q.K dot, softmax and P.V dot; else the tiles are only summed), PAGED (block-table
    gather; else block i of the sequence is cache block i), DYN (the length read from memory; else ctx).
    TIMES: %globaltimer stamps into T (int64, 5 a program: start, first tile done, half, loop done, stored;
    benchmarks/decode_b1_timeline.py)."""
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    if TIMES:
        stamp = T + (split * 2 + kvh) * 5
        tl.store(stamp, _now())
    seq_len = tl.load(SEQ) if DYN else ctx
    split_len = tl.cdiv(tl.cdiv(seq_len, BLOCK_N), tl.num_programs(2)) * BLOCK_N
    lo = split * split_len
    hi = tl.minimum(lo + split_len, seq_len)
    offs_g = tl.arange(0, GROUP)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + (kvh * GROUP + offs_g)[:, None] * D + offs_d[None, :])
    m_i = tl.full((GROUP,), float("-inf"), tl.float32)
    l_i = tl.zeros((GROUP,), tl.float32)
    acc = tl.zeros((GROUP, D), tl.float32)
    for start_n in tl.range(lo, hi, BLOCK_N, num_stages=STAGES):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        if PAGED:
            blk = tl.load(BT + offs_n // PAGE).to(tl.int64)
        else:
            blk = (offs_n // PAGE).to(tl.int64)
        row = blk * stride_cb + (offs_n % PAGE).to(tl.int64) * stride_co + kvh * stride_ch
        k = tl.load(KC + row[None, :] + offs_d[:, None])
        if COMPUTE:
            sc = tl.dot(q, k) * (qk_scale * 1.4426950408889634)
            m_new = tl.maximum(m_i, tl.max(sc, axis=1))
            alpha = tl.math.exp2(m_i - m_new)
            p = tl.math.exp2(sc - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(VC + row[:, None] + offs_d[None, :])
            acc = tl.dot(p.to(VC.dtype.element_ty), v, acc * alpha[:, None])
            m_i = m_new
        else:
            v = tl.load(VC + row[:, None] + offs_d[None, :])
            acc += (tl.sum(k.to(tl.float32), axis=1) + tl.sum(v.to(tl.float32), axis=0))[None, :]
            l_i += 1.0
        if TIMES:  # after the tile's math (the stamp depends on acc)
            if start_n == lo:
                tl.store(stamp + 1, _now() + tl.sum(acc).to(tl.int64) * 0)
            if start_n == lo + (hi - lo) // BLOCK_N // 2 * BLOCK_N:
                tl.store(stamp + 2, _now() + tl.sum(acc).to(tl.int64) * 0)
    if TIMES:
        tl.store(stamp + 3, _now() + tl.sum(acc).to(tl.int64) * 0)
    heads = kvh * GROUP + offs_g
    tl.store(OP + (heads[:, None] * tl.num_programs(2) + split) * D + offs_d[None, :], acc / l_i[:, None])
    tl.store(LSE + heads * tl.num_programs(2) + split, m_i + tl.log2(l_i))
    if TIMES:
        tl.store(stamp + 4, _now())


def ablations(case, copies, ctx, sms):
    """The stripped kernel at the plan's grid (one program per SM): full / loads only, paged / in order,
    length from memory / constant; 5 stages (two tiles in flight), as the plan runs bf16 at batch 1."""
    splits = sms // 2
    op = torch.empty(NH, splits, HD, device="cuda")
    lse = torch.empty(NH, splits, device="cuda")
    for compute, paged, dyn, stages, warps in ((1, 1, 1, 5, 4), (0, 1, 1, 5, 4), (1, 0, 1, 5, 4), (1, 1, 0, 5, 4),
                                               (0, 0, 0, 5, 4), (1, 0, 0, 5, 4), (0, 1, 1, 3, 4), (1, 1, 1, 3, 4),
                                               (1, 1, 1, 5, 8), (0, 0, 0, 3, 4)):  # fmt: skip
        consts = dict(GROUP=NH // 2, D=HD, BLOCK_N=128, STAGES=stages, COMPUTE=compute, PAGED=paged, DYN=dyn,
                      num_warps=warps)  # fmt: skip

        def make(consts=consts):
            fns = [
                partial(_ablate_kernel[(1, 2, splits)], a[0], a[1], a[2], a[3], a[4], op, lse, ctx,
                        a[1].stride(0), a[1].stride(1), a[1].stride(2), HD**-0.5, PAGE=a[1].shape[1], **consts)
                for a in copies
            ]  # fmt: skip
            fns[0]()
            return fns, float("nan")

        case.record(f"stripped {'full' if compute else 'loads'} {'paged' if paged else 'in order'} "
                    f"{'len' if dyn else 'const'} {stages}st {warps}w", make)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", default="32768,8192")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--quick", action="store_true", help="the plan, its parts and the stripped kernel only")
    ap.add_argument("--pages", action="store_true", help="the plan and the page reads (page_reads) only")
    ap.add_argument("--page-loop", action="store_true", help="the plan and the page-step decode loops only")
    ap.add_argument(
        "--page-variants",
        default="",
        help="with --page-loop: only these tile:splits:stages:KT:math:warps[:streams:fuse:mergers] loops",
    )
    ap.add_argument(
        "--variants",
        default="",
        help="only the plan and these tile:splits:stages:warps variants",
    )
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "decode_b1.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    lim = limits()
    sms = device_sms(torch.empty(1, device="cuda"))
    print(f"{torch.cuda.get_device_name()} copy {lim['copy_GBps']:.0f} GB/s, {sms} SMs")
    table = []
    for ctx in [int(c) for c in args.ctx.split(",")]:
        for quant in (False, True) if args.int8 else (False,):
            copies = []
            for _ in range(8):
                k, v, ks, vs, tables, seq = paged_cache(1, ctx, quant)
                q = torch.randn(1, NH, HD, dtype=torch.bfloat16, device="cuda")
                cu = torch.arange(2, dtype=torch.int32, device="cuda")
                copies.append((q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs))
            kv_bytes = copies[0][1].numel() * copies[0][1].element_size() * 2 + (
                copies[0][8].numel() * 8 if quant else 0
            )
            ref = fd.flash_decode_triton(*copies[0])
            tag = f"{ctx // 1024}k {'int8' if quant else 'bf16'}"

            case = Case(tag, copies, ref, kv_bytes, lim["copy_GBps"], table)
            timed = case.timed
            plan = fd.plan_splits(1, 2, ctx, 128, sms, fd.decode_config(2 - quant, 2, sms)[1])
            timed(f"plan ({plan} splits)")
            if args.pages:
                page_reads(case, ctx)
                continue
            if args.page_loop:
                pv = [tuple(int(p) for p in v.split(":")) for v in args.page_variants.split(",") if v]
                page_decodes(case, copies, ctx, pv or None)
                continue
            if args.variants:
                for v in args.variants.split(","):
                    bn, splits, st, w = (int(p) for p in v.split(":"))
                    kw = dict(block_n=bn, num_splits=splits, num_warps=w, loop_stages=st)
                    timed(f"tile {bn} splits {splits} stages {st} {w}w", kw)
                continue
            timed("decode kernel only", check=False, ctxmgr=patched("_merge_kernel"))
            if not quant:
                ablations(case, copies, ctx, sms)
                layout_reads(case, ctx)
                page_reads(case, ctx)
            if args.quick:
                continue
            timed("merge kernel only", check=False, ctxmgr=patched("_flash_decode_kernel"))
            timed("PDL off", ctxmgr=environ(AUTOGLM_PDL=0))
            timed("early launch off", ctxmgr=environ(AUTOGLM_ATTN_EARLY=0))
            for bn, splits, st, w in ((128, 33, None, 4), (128, 44, None, 4), (128, 96, None, 4), (128, 128, None, 4),
                                      (128, 66, 3, 4), (128, 66, 4, 4), (128, 66, None, 8),
                                      (64, 66, 5, 4), (64, 66, 7, 4), (64, 132, 5, 4), (64, 132, 3, 4),
                                      (64, 128, 4, 4), (64, 66, 9, 4)):  # fmt: skip
                kw = dict(block_n=bn, num_splits=splits, num_warps=w)
                if st:
                    kw["loop_stages"] = st
                timed(f"tile {bn} splits {splits} stages {st or 'plan'} {w}w", kw)
            # the floor: the same bytes read by one streaming kernel, programs x stages
            flat = [torch.cat([a[1].flatten(), a[2].flatten()]) for a in copies]
            for progs, block, stages in ((132, 8192, 4), (264, 8192, 3), (132, 16384, 3), (528, 4096, 4)):
                n = flat[0].numel() // progs // block * block
                outs = torch.empty(progs, device="cuda")

                def make(progs=progs, block=block, stages=stages, n=n, outs=outs, flat=flat):
                    fns = [
                        partial(_read_kernel[(progs,)], x, outs, n, BLOCK=block, STAGES=stages) for x in flat
                    ]
                    fns[0]()
                    return fns, 0.0

                case.record(
                    f"read {progs}x{block} {stages}st", make, nbytes=progs * n * flat[0].element_size()
                )
    report_table(
        args.json, ("case", "variant", "GPU us", "of copy", "rel err"), ("", "", ".2f", ".1%", ".1e"), table
    )


if __name__ == "__main__":
    main()
