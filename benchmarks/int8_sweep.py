"""INT8 config sweep (issue 5, third pass): W8A16 few-rows configs, mid-row paths, INT8-KV decode/prefill
variants; each case checked against the exact result at full size, then timed (CUDA-graph replays).

    python3 benchmarks/int8_sweep.py [--parts gemv1,dot,mid,decode,prefill] [--jobs 12]   # first run
    python3 benchmarks/int8_sweep.py --parts gemv1b,mid2,decode2                          # second run
    python3 benchmarks/int8_sweep.py --parts warm,final   # split-K and decode splits; then kernels.py
    python3 benchmarks/int8_sweep.py --parts occ          # 8 / 32 rows: narrow tiles, few warps, more splits
    python3 benchmarks/int8_sweep.py --parts swap         # 128..4096 rows: the transposed GEMM vs cuBLAS
    python3 benchmarks/int8_sweep.py --parts wide         # 8 / 32 rows: wide column tiles, more K splits
    python3 benchmarks/int8_sweep.py --parts imma         # 2..4,096 rows: the rows as int8 planes, int8 x int8 dots
    python3 benchmarks/int8_sweep.py --parts swap,wide --rows 32,4096 --layers qkv,gate_up   # a subset, in order

Compilation dominates a cold run, so every case is first run once in --jobs parallel processes that share
Triton's cache; the timed pass then only loads compiled kernels. Prints one line per case. The "warm" part
only compiles what benchmarks/kernels.py's autotuners will try (run it first, same machine, to shorten
that script's first calls). Sweep results: benchmarks/RESULTS.md, "INT8, third pass".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import BF16, GLM_LINEARS, HD, NH, copies_for, graph_ms, paged_cache, rel  # noqa: E402
from kernels import flash_decode as fd  # noqa: E402
from kernels import flash_prefill as fp  # noqa: E402
from kernels import int8_matmul as im  # noqa: E402
from kernels.quant import Int8Weight  # noqa: E402

DEV = "cuda"


def few(bn, bk, st, sk, w, dot=False, cvt=0, bm=16):
    return {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": sk, "DOT": dot, "STAGES": st, "CVT": cvt,
            "num_warps": w, "num_stages": st}  # fmt: skip


GEMV1 = [few(16, 512, 1, 1, 4), few(16, 512, 3, 1, 4), few(16, 512, 4, 1, 4), few(8, 512, 4, 1, 4),
         few(8, 1024, 4, 1, 4), few(32, 512, 3, 1, 8), few(16, 1024, 3, 1, 8), few(16, 512, 4, 2, 4),
         few(8, 512, 4, 2, 4), few(32, 256, 4, 1, 4), few(8, 256, 6, 1, 2), few(4, 1024, 4, 1, 2)]  # fmt: skip


def dot_cfgs(bm):
    return [few(64, 256, 4, 1, 4, True, 0, bm), few(64, 256, 4, 1, 4, True, 1, bm), few(64, 256, 4, 1, 4, True, 2, bm),
            few(64, 256, 3, 1, 4, True, 2, bm), few(128, 128, 4, 1, 4, True, 2, bm), few(128, 256, 3, 1, 8, True, 2, bm),
            few(32, 256, 4, 1, 4, True, 2, bm), few(64, 256, 4, 2, 4, True, 2, bm), few(128, 128, 4, 1, 4, True, 1, bm),
            few(64, 128, 6, 1, 4, True, 2, bm)]  # fmt: skip


def many(bm, bn, bk, w, s, cvt, sw=False):
    return {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_N": 8, "SWAP": sw, "CVT": cvt,
            "num_warps": w, "num_stages": s}  # fmt: skip


# the GEMM kernel transposed (acc = W_tile @ X_tile.T): Triton 3.6 keeps the converted weights in registers as
# wgmma's A operand (no shared-memory round trip); (x rows, weight rows, K, warps, stages)
SWAP_TILES = [(128, 128, 64, 4, 4), (128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (64, 256, 64, 8, 4)]


# the int8 x int8 path (IMMA: ``int8_matmul.split_rows`` + the few-rows kernel on int8 wgmma, no weight
# conversion): (weight rows, K, stages, warps); a 64-row weight tile is one warpgroup's wgmma M
IMMA_TILES = [
    (64, 256, 4, 4),
    (64, 512, 3, 4),
    (128, 256, 3, 4),
    (128, 128, 4, 4),
    (32, 256, 4, 2),
    (256, 128, 3, 8),
]


def layer_cases(m: int, cfgs: list) -> list:
    """Each GLM-4 layer at m rows: cuBLAS bf16, then each int8 config."""
    return [
        case
        for name in GLM_LINEARS
        for case in [("bf16", name, m, None)] + [("int8", name, m, c) for c in cfgs]
    ]


def cases(parts):
    out = []
    if "gemv1" in parts:
        for name in GLM_LINEARS:
            out.append(("bf16", name, 1, None))
            for c in GEMV1:
                out.append(("int8", name, 1, c))
    if "gemv1b" in parts:
        for name in GLM_LINEARS:
            out.append(("bf16", name, 1, None))
            for c in (few(16, 512, 4, 1, 4), few(16, 512, 6, 1, 4), few(8, 512, 6, 1, 4), few(16, 256, 8, 1, 4),
                      few(8, 512, 8, 1, 4), few(8, 256, 6, 1, 2), few(8, 256, 8, 1, 2), few(16, 512, 6, 2, 4)):  # fmt: skip
                out.append(("int8", name, 1, c))
    if "mid2" in parts:
        for m in (64, 128):
            for name in ("qkv", "o_proj", "gate_up", "down"):
                out.append(("bf16", name, m, None))
                out.append(("dequant", name, m, None))
                for bn, bk, st, cvt in ((32, 256, 3, 0), (64, 256, 3, 1), (64, 128, 4, 0), (128, 128, 3, 1)):
                    for sk in (1, 2, 4):
                        out.append(("int8", name, m, few(bn, bk, st, sk, 4, True, cvt, m)))
    if "decode2" in parts:
        for B in (1, 32, 128):
            for bn, w, st in ((128, 4, 3), (128, 4, 2), (128, 8, 3), (256, 8, 2), (64, 4, 4)):
                out.append(
                    ("decode", "int8", B, {"qk8": True, "block_n": bn, "num_warps": w, "num_stages": st})
                )
            out.append(("decode", "bf16", B, {"qk8": False}))
    if "final" in parts:
        # serial split-K (no second launch): split configs at 1/8/32 rows, and INT8 decode split counts
        for m, cfgs in (
            (1, [few(16, 512, 4, 1, 4), few(16, 512, 4, 2, 4), few(8, 512, 4, 2, 4)]),
            (
                8,
                [few(32, 256, 3, sk, 4, True, 0, 16) for sk in (1, 2, 4, 8)]
                + [few(64, 256, 3, 4, 4, True, 1, 16)],
            ),
            (
                32,
                [few(32, 256, 3, sk, 4, True, 0, 32) for sk in (1, 2, 4, 8)]
                + [few(64, 256, 3, 4, 4, True, 1, 32)],
            ),
        ):
            for name in GLM_LINEARS:
                out.append(("bf16", name, m, None))
                for c in cfgs:
                    out.append(("int8", name, m, c))
        for B, splits in ((32, 4), (32, 6), (128, 1), (128, 2)):
            out.append(("decode", "int8", B, {"qk8": True, "num_splits": splits}))
    if "occ" in parts:
        # 8 / 32 rows with more programs per SM (ncu, H200: the autotuned 8-row qkv config ran 288 programs,
        # 2 warps per scheduler, 13% achieved occupancy): narrow tiles, fewer warps, more K splits
        for m in (8, 32):
            bm = 16 if m <= 16 else 32
            cfgs = [few(16, 256, 3, sk, w, True, 0, bm) for sk in (2, 4, 8) for w in (1, 2)]
            cfgs += [few(32, 256, 3, sk, w, True, 0, bm) for sk in (2, 4, 8) for w in (2, 4)]
            cfgs += [few(32, 128, 4, sk, 2, True, 0, bm) for sk in (2, 4)]
            cfgs += [few(64, 128, 4, sk, 4, True, 0, bm) for sk in (2, 4)]
            out += layer_cases(m, cfgs)
    if "wide" in parts:
        # 8 / 32 rows: a 32-wide column tile re-reads the x rows once per 32 weight rows (at 32 rows as many L2
        # bytes as the int8 weights themselves twice over); wider tiles with more K splits re-read less
        for m in (8, 32):
            bm = 16 if m <= 16 else 32
            cfgs = [few(128, 128, 4, 4, 4, True, 0, bm), few(128, 256, 3, 8, 4, True, 0, bm),
                    few(64, 256, 3, 4, 4, True, 0, bm)]  # fmt: skip
            out += layer_cases(m, cfgs)
    if "imma" in parts:
        # 2..64 rows: cuBLAS bf16, the autotuned converting path, the autotuned int8 x int8 path
        # (AUTOGLM_W8_IMMA=1); at 8 and 32 rows also every IMMA tile at 1/2/4/8 K splits
        for m in (2, 8, 16, 32, 64):
            bm = max(16, 1 << (m - 1).bit_length())
            cfgs = [None]
            if m in (8, 32):
                cfgs += [{**few(bn, bk, st, sk, w, True, 0, bm), "IMMA": True} for bn, bk, st, w in IMMA_TILES
                         for sk in (1, 2, 4, 8)]  # fmt: skip
            out += layer_cases(m, cfgs) + [("imma", name, m, None) for name in GLM_LINEARS]
            # what the two autotuners will try, compiled by the parallel workers (they skip autotuned cases)
            # (the many-rows IMMA tiles: below)
            for name, (N, K) in GLM_LINEARS.items():
                named = {"X_ptr": torch.empty(1), "W_ptr": torch.empty(1, dtype=torch.int8), "M": m, "N": N, "K": K,
                         "M_BUCKET": bm}  # fmt: skip
                for imma in (False, True):
                    for c in im._prune_few_rows(im._few_rows_configs(), named, IMMA=imma):
                        cfg = {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages, "IMMA": imma}
                        out.append(("warm", name, m, {"cfg": cfg, "bias": False}))
    if "imma" in parts:
        # 128..4096 rows: the int8 x int8 GEMM against cuBLAS bf16 and what runs now (the converting GEMM,
        # "int8", for wide layers below 256 rows, else dequantize + cuBLAS): autotuned, and each IMMA tile forced
        for m in (128, 256, 512, 1024, 2048, 4096):
            for name in GLM_LINEARS:
                out += [("bf16", name, m, None), ("dequant", name, m, None), ("int8", name, m, None),
                        ("imma", name, m, None)]  # fmt: skip
                for bm, bn, bk, w, st in im.IMMA_MANY_TILES:
                    out.append(("int8", name, m, {**many(bm, bn, bk, w, st, 0), "IMMA": True}))
                    out.append(
                        (
                            "warm",
                            name,
                            m,
                            {"cfg": {**many(bm, bn, bk, w, st, 0), "IMMA": True}, "bias": False},
                        )
                    )
    if "swap" in parts:
        # many rows: the transposed GEMM against cuBLAS bf16 and dequantize + cuBLAS (what runs from 256 rows)
        for m in (1024, 4096):
            for name in GLM_LINEARS:
                out.append(("bf16", name, m, None))
                out.append(("dequant", name, m, None))
                out.append(("int8", name, m, many(128, 128, 64, 4, 4, 0)))
                for bm, bn, bk, w, st in SWAP_TILES:
                    out.append(("int8", name, m, many(bm, bn, bk, w, st, 0, True)))
    if "warm" in parts:
        # compile (in the parallel workers) what benchmarks/kernels.py's autotuners will try
        for m, bias in (
            (1, False),
            (1, True),
            (8, False),
            (17, True),
            (32, False),
            (64, False),
            (100, False),
            (100, True),
        ):
            for name, (N, K) in GLM_LINEARS.items():
                if m <= im.FEW_ROWS:
                    named = {
                        "X_ptr": torch.empty(1),
                        "W_ptr": torch.empty(1, dtype=torch.int8),
                        "M": m,
                        "N": N,
                        "K": K,
                        "M_BUCKET": 1 << (m - 1).bit_length(),
                    }
                    # the int8 x int8 path too where the engine measures it (AUTOGLM_W8_IMMA=auto)
                    for imma in (False, True) if m >= im.IMMA_MIN_ROWS else (False,):
                        for c in im._prune_few_rows(im._few_rows_configs(), named, IMMA=imma):
                            cfg = {
                                **c.kwargs,
                                "num_warps": c.num_warps,
                                "num_stages": c.num_stages,
                                "IMMA": imma,
                            }
                            out.append(("warm", name, m, {"cfg": cfg, "bias": bias}))
                    continue
                if -(-N // 128) >= 132:
                    for c in im._many_rows_configs():
                        cfg = {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}
                        out.append(("warm", name, m, {"cfg": cfg, "bias": bias}))
                for c in im._many_rows_imma_configs():
                    cfg = {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages, "IMMA": True}
                    out.append(("warm", name, m, {"cfg": cfg, "bias": bias}))
        for quant in (False, True):
            for c in fp._prune(fp._configs(), {"MAX_SEQLEN_Q_BUCKET": 4096}):
                cfg = {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}
                out.append(("warm-prefill", "int8" if quant else "bf16", 4096, {"cfg": cfg}))
    if "dot" in parts:
        for m in (8, 32):
            for name in GLM_LINEARS:
                out.append(("bf16", name, m, None))
                for c in dot_cfgs(16 if m <= 16 else 32):
                    out.append(("int8", name, m, c))
    if "mid" in parts:
        for m in (64, 128, 256):
            for name in ("o_proj", "gate_up", "down"):
                out.append(("bf16", name, m, None))
                out.append(("dequant", name, m, None))
                for c in (few(64, 256, 4, 1, 4, True, 2, m), few(128, 128, 4, 1, 8, True, 2, m),
                          few(128, 128, 3, 1, 4, True, 1, m)):  # fmt: skip
                    if m <= 128:
                        out.append(("int8", name, m, c))
                for c in (many(128, 128, 64, 4, 4, 0), many(128, 128, 64, 4, 4, 2), many(64, 128, 64, 4, 4, 2),
                          many(128, 256, 64, 8, 3, 2)):  # fmt: skip
                    out.append(("int8", name, m, c))
    if "decode" in parts:
        for B in (1, 32, 128):
            out.append(("decode", "bf16", B, {"qk8": False}))
            for qk8 in (False, True):
                out.append(("decode", "int8", B, {"qk8": qk8}))
    if "prefill" in parts:
        for quant, qk8 in ((False, False), (True, False), (True, True)):
            for bm, bn, w, s in ((128, 64, 4, 3), (64, 128, 4, 2), (64, 64, 4, 3), (128, 128, 8, 3)):
                out.append(("prefill", "int8" if quant else "bf16", 4096,
                            {"qk8": qk8, "cfg": {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s}}))  # fmt: skip
    return out


_W: dict = {}


def weights(name, copies):
    key = (name, copies)
    if key not in _W:
        _W.clear()
        torch.cuda.empty_cache()
        N, K = GLM_LINEARS[name]
        ws = [torch.randn(N, K, dtype=BF16, device=DEV) * 0.02 for _ in range(copies)]
        _W[key] = (ws, [Int8Weight.quantize(w) for w in ws])
    return _W[key]


def run_case(case, timed: bool) -> dict:
    kind, name, m, c = case
    row = {"kind": kind, "name": name, "M": m, "cfg": c}
    if kind == "warm":
        N, K = GLM_LINEARS[name]
        ws, iws = weights(name, 1)
        x = torch.randn(m, K, dtype=BF16, device=DEV)
        b = torch.randn(N, dtype=BF16, device=DEV) if c["bias"] else None
        im.int8_linear_triton(x, iws[0].qweight, iws[0].scale, b, config=c["cfg"])
        return row
    if kind == "warm-prefill":
        k, v, ks, vs, tables, seq = paged_cache(1, m, name == "int8")
        q = torch.randn(m, NH, HD, dtype=BF16, device=DEV)
        cu = torch.tensor([0, m], dtype=torch.int32, device=DEV)
        fp.flash_prefill_triton(q, k, v, tables, seq, cu, m, HD**-0.5, ks, vs, config=c["cfg"])
        return row
    if kind in ("bf16", "int8", "dequant", "imma"):
        N, K = GLM_LINEARS[name]
        copies = copies_for(N * K) if (timed and m <= 128) else 1
        ws, iws = weights(name, copies)
        x = torch.randn(m, K, dtype=BF16, device=DEV)
        if kind == "bf16":
            fns = [lambda x=x, w=w: torch.matmul(x, w.T) for w in ws]
        else:
            os.environ["AUTOGLM_W8_IMMA"] = "1" if kind == "imma" else "0"
            if kind == "dequant":
                im.DEQUANT_ROWS, cfg = 1, None
            else:
                im.DEQUANT_ROWS, cfg = 1 << 30, c
            if cfg is not None and "SPLIT_K" in cfg:  # forced few-rows configs, also past FEW_ROWS rows
                im.FEW_ROWS = max(64, m)
            fns = [
                lambda x=x, iw=iw, cfg=cfg: im.int8_linear_triton(x, iw.qweight, iw.scale, config=cfg)
                for iw in iws
            ]
            out = fns[0]()
            row["err"] = rel(out, x.float() @ iws[0].dequantize().T)
        if timed:
            row["us"] = graph_ms(fns) * 1e3
            row["GBps"] = N * K * (2 if kind == "bf16" else 1) / row["us"] / 1e3
            if m >= 128:
                row["TFLOPs"] = 2 * m * N * K / row["us"] / 1e6
        else:
            fns[0]()
        im.DEQUANT_ROWS, im.FEW_ROWS = 256, 64
        os.environ["AUTOGLM_W8_IMMA"] = "0"
    elif kind == "decode":
        quant = name == "int8"
        fd.INT8_QK = c["qk8"]
        ctx = 32768
        kv_bytes = m * ctx * 2 * HD * 2 * (1 if quant else 2) + (m * ctx * 2 * 4 * 2 if quant else 0)
        fns, ref = [], None
        for i in range(copies_for(kv_bytes) if timed else 1):
            k, v, ks, vs, tables, seq = paged_cache(m, ctx, quant)
            q = torch.randn(m, NH, HD, dtype=BF16, device=DEV)
            cu = torch.arange(m + 1, dtype=torch.int32, device=DEV)
            args = (q, k, v, tables, seq, cu, 1, HD**-0.5, ks, vs)
            if i == 0 and m == 1:
                from kernels.attention import paged_attention_ref

                ref = paged_attention_ref(*args)
            kw = {k: c[k] for k in ("block_n", "num_warps", "num_stages", "num_splits") if k in c}
            fns.append(lambda args=args, kw=kw: fd.flash_decode_triton(*args, **kw))
        out = fns[0]()
        if ref is not None:
            row["err"] = rel(out, ref)
        if timed:
            row["us"] = graph_ms(fns) * 1e3
            row["GBps"] = kv_bytes / row["us"] / 1e3
        fd.INT8_QK = True
    elif kind == "prefill":
        quant = name == "int8"
        fp.INT8_QK = c["qk8"]
        L = m
        k, v, ks, vs, tables, seq = paged_cache(1, L, quant)
        q = torch.randn(L, NH, HD, dtype=BF16, device=DEV)
        cu = torch.tensor([0, L], dtype=torch.int32, device=DEV)
        args = (q, k, v, tables, seq, cu, L, HD**-0.5, ks, vs)
        out = fp.flash_prefill_triton(*args, config=c["cfg"])
        if timed:
            fp.INT8_QK = False
            ref = fp.flash_prefill_triton(
                *args, config={"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}
            )
            row["err"] = rel(out, ref)
            fp.INT8_QK = c["qk8"]
            from triton.testing import do_bench

            ms = do_bench(lambda: fp.flash_prefill_triton(*args, config=c["cfg"]), warmup=25, rep=100,
                          return_mode="median")  # fmt: skip
            row["us"] = ms * 1e3
            row["TFLOPs"] = 4 * NH * HD * L * L / 2 / ms / 1e9
        fp.INT8_QK = True
    return row


def fmt(row) -> str:
    c = row["cfg"] or {}
    if "SPLIT_K" in c:
        cs = (f"{'dot' if c['DOT'] else 'fma'} m{c['BLOCK_M']} {c['BLOCK_N']}x{c['BLOCK_K']} s{c['STAGES']} "
              f"split{c['SPLIT_K']} w{c['num_warps']} {'imma' if c.get('IMMA') else 'cvt' + str(c['CVT'])}")  # fmt: skip
    elif "GROUP_N" in c:
        cs = (f"gemm{' swap' if c['SWAP'] else ''}{' imma' if c.get('IMMA') else ''} {c['BLOCK_M']}x{c['BLOCK_N']}x"
              f"{c['BLOCK_K']} w{c['num_warps']} s{c['num_stages']} cvt{c['CVT']}")  # fmt: skip
    else:
        cs = json.dumps(c) if c else ""
    extra = " ".join(f"{k} {row[k]:.4g}" for k in ("us", "GBps", "TFLOPs", "err") if k in row)
    return f"{row['kind']:<8} {row['name']:<8} M={row['M']:<5} {cs:<48} {extra}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="gemv1,dot,mid,decode,prefill")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--warm", default=None, help="i/n: compile every n-th case from i (worker)")
    ap.add_argument("--layers", default="", help="only these layers (e.g. qkv,gate_up), in this order")
    ap.add_argument("--rows", default="", help="only these row counts (e.g. 32,4096)")
    args = ap.parse_args()
    torch.manual_seed(0)
    todo = cases(args.parts.split(","))
    if args.rows:
        todo = [c for c in todo if str(c[2]) in args.rows.split(",")]
    if args.layers:  # the most wanted first: a short device call still reports them
        order = args.layers.split(",")
        todo = sorted((c for c in todo if c[1] in order), key=lambda c: order.index(c[1]))
    if args.warm:
        i, n = map(int, args.warm.split("/"))
        for case in todo[i::n]:
            if case[0] in ("int8", "imma") and case[3] is None:
                continue  # autotuned: timed alone in the timed pass (concurrent timings would pick badly)
            try:
                run_case(case, timed=False)
            except Exception as e:  # noqa: BLE001  (the timed pass reports it)
                print(f"warm {case[:3]}: {type(e).__name__}: {str(e)[:200]}", flush=True)
        return
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, __file__, "--parts", args.parts, "--layers", args.layers, "--rows",
                               args.rows, "--warm", f"{i}/{args.jobs}"])
             for i in range(args.jobs)]  # fmt: skip
    for p in procs:
        p.wait()
    print(f"compiled {len(todo)} cases in {time.time() - t0:.0f}s", flush=True)
    rows = []
    for case in todo:
        if case[0].startswith("warm"):
            continue
        try:
            row = run_case(case, timed=True)
        except Exception as e:  # noqa: BLE001  (report and go on)
            row = {
                "kind": case[0],
                "name": case[1],
                "M": case[2],
                "cfg": case[3],
                "error": f"{type(e).__name__}: {e}",
            }
            print(f"{case[:3]} {case[3]} ERROR {row['error'][:300]}", flush=True)
            rows.append(row)
            continue
        rows.append(row)
        print(fmt(row), flush=True)
    out = Path(os.environ.get("OUT", "benchmarks/out")) / "int8_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
