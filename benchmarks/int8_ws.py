"""W8A16 at 2-32 rows: the warp-specialized int8 x int8 GEMM (``kernels.int8_ws``) beside cuBLAS bf16 and the
path the product took before it (issue 5's target: >= 1.7x faster than bf16 at <= 32 rows).

    python benchmarks/int8_ws.py [--rows 2,8,16,32] [--layers qkv,o_proj,gate_up,down] [--skip-before]
        [--formats row,tiled]

GPU us per call as CUDA-graph replays over weight copies (>= 256 MB a replay: weights come from memory, as in
a decode step), all in one process on the same inputs: cuBLAS bf16 (``torch.matmul``), the product's path
without this one (AUTOGLM_W8_WS=off: the autotuned few-rows kernel, converting or on int8 planes, as
measured), this path forced (AUTOGLM_W8_WS=on: the planes kernel, then the GEMM, chained by programmatic
dependent launch), and its two launches alone (the planes kernel eight times a graph, on rows in L2); the
GEMM alone chained under PDL on planes already made (what the product costs when the kernel before writes its
planes); and the pair "kernel before + product" chained, as a decode step runs them, with cuBLAS bf16, with
this path and its planes kernel, and with the planes written by the kernel before (x = bf16 pair / it): for
q/k/v and gate/up the RMSNorm (``rms_norm``'s planes, AUTOGLM_NORM_PLANES in the engine), for o_proj the decode
attention over 1,024 cached tokens a row (``flash_decode_triton``'s planes, AUTOGLM_ATTN_PLANES), for down
SiLU-and-multiply (``silu_and_mul_triton``'s planes, AUTOGLM_SILU_PLANES). ``--skip-before``: without the path before.
``--formats``: the planes' scales, one a row ("row", AUTOGLM_PLANES_TILED=0: only the RMSNorm writes planes,
o_proj's and down's come from their planes kernels) and/or one a row and 2,048-column group ("tiled", the
default: the decode attention's KV groups and SiLU's chunks make theirs alone), each a row of the table (the
path before is timed once). Each result checked against the exact product. Needs an H100/H200
(sm_90). Writes benchmarks/out/int8_ws.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import GLM_LINEARS, copies_for, environ, graph_ms, rel, report_table  # noqa: E402
from kernels import int8_ws  # noqa: E402
from kernels.flash_decode import flash_decode_triton  # noqa: E402
from kernels.fused_norm import rms_norm_triton  # noqa: E402
from kernels.int8_matmul import int8_linear_triton  # noqa: E402
from kernels.quant import Int8Weight  # noqa: E402
from kernels.swiglu import silu_and_mul_triton  # noqa: E402
from kernels.triton_common import pdl_enabled  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="2,8,16,32")
    ap.add_argument("--layers", default=",".join(GLM_LINEARS))
    ap.add_argument("--skip-before", action="store_true")
    ap.add_argument("--formats", default="row")
    ap.add_argument("--out", default="benchmarks/out/int8_ws.json")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), flush=True)
    table = []
    for name in args.layers.split(","):
        N, K = GLM_LINEARS[name]
        copies = copies_for(N * K)
        ws = [torch.randn(N, K, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(copies)]
        iws = [Int8Weight.quantize(w) for w in ws]
        for M in (int(r) for r in args.rows.split(",")):
            for i, fmt in enumerate(args.formats.split(",")):
                with environ(AUTOGLM_PLANES_TILED="1" if fmt == "tiled" else "0"):
                    row = measure(name, N, K, M, ws, iws, args.skip_before or i > 0)
                table.append((name, M, fmt, *row[2:]))
                print(
                    "  ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in table[-1]), flush=True
                )
    report_table(
        args.out,
        (
            "layer",
            "rows",
            "planes",
            "bf16 us",
            "before us",
            "x",
            "ws us",
            "x",
            "planes us",
            "GEMM alone us",
            "x",
            "rel err",
            "GEMM chained, planes made us",
            "x",
            "before + bf16 us",
            "before + ws us",
            "x",
            "before (planes) + ws us",
            "x",
        ),
        (
            "",
            "d",
            "",
            ".1f",
            ".1f",
            ".2f",
            ".1f",
            ".2f",
            ".1f",
            ".1f",
            ".2f",
            ".1e",
            ".1f",
            ".2f",
            ".1f",
            ".1f",
            ".2f",
            ".1f",
            ".2f",
        ),  # fmt: skip
        table,
    )


# the products whose input rows an RMSNorm writes in a decode step (it can write their planes), and the one
# whose input the decode attention writes (it can too)
NORMED = ("qkv", "gate_up")
ATTENDED = ("o_proj",)
ACTIVATED = ("down",)
ATTN_CONTEXT = 1024


def measure(name: str, N: int, K: int, M: int, ws: list, iws: list, skip_before: bool) -> tuple:
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    exact = x.float() @ iws[0].dequantize(torch.float32).T
    bf16 = graph_ms([lambda w=w: torch.matmul(x, w.T) for w in ws])
    t, err = {"before": float("nan")}, {}
    for label, mode in (("before", "off"), ("ws", "on")):
        if label == "before" and skip_before:
            continue
        with environ(AUTOGLM_W8_WS=mode):
            err[label] = rel(int8_linear_triton(x, iws[0].qweight, iws[0].scale), exact)
            t[label] = graph_ms([lambda iw=iw: int8_linear_triton(x, iw.qweight, iw.scale) for iw in iws])
    # the two launches apart (no PDL between them: each alone)
    mp = int8_ws.row_bucket(M)
    planes = torch.empty((2, mp, K), dtype=torch.int8, device="cuda")
    sx_shape = (int8_ws.scale_groups(K), int8_ws.WS_ROWS) if int8_ws.planes_tiled() else (mp,)
    sx = torch.empty(sx_shape, dtype=torch.float32, device="cuda")
    y = torch.empty(M, N, dtype=x.dtype, device="cuda")
    # eight calls a graph (one would time the graph's own launch); the rows stay in L2, as after the kernel
    # that wrote them
    t["planes"] = graph_ms([lambda: int8_ws.split_planes(x, planes, sx)] * 8)
    t["gemm"] = graph_ms(
        [lambda iw=iw: int8_ws.planes_gemm(planes, sx, M, iw.qweight, iw.scale, None, y) for iw in iws]
    )
    t["chained"] = graph_ms(
        [lambda iw=iw: int8_ws.planes_gemm(planes, sx, M, iw.qweight, iw.scale, None, y, pdl_enabled(x)) for iw in iws]
    )  # fmt: skip
    # (the graphs leave y of the last weight copy: the first one's product, once more, for the check)
    err["gemm"] = rel(int8_ws.planes_gemm(planes, sx, M, iws[0].qweight, iws[0].scale, None, y), exact)
    pairs = [float("nan")] * 5
    if name in NORMED or name in ATTENDED or name in ACTIVATED:
        # (kernel before + product) pairs over the weight copies, as a decode step chains them
        if name in NORMED:
            nw = (1 + 0.1 * torch.randn(K, device="cuda")).to(x.dtype)

            def before(planes_made):
                return rms_norm_triton(x, nw, 1e-5, planes=planes_made)
        elif name in ATTENDED:
            dec = _decode_inputs(M, K // 128)

            def before(planes_made):
                return flash_decode_triton(*dec, planes=planes_made).view(M, K)
        else:
            gu = torch.randn(M, 2 * K, dtype=x.dtype, device="cuda") * 2

            def before(planes_made):
                return silu_and_mul_triton(gu, planes=planes_made)

        exact_b = before(False).float() @ iws[0].dequantize(torch.float32).T

        def pair(matmul, planes_made=False):
            return lambda: matmul(before(planes_made))

        mm_bf16 = [lambda v, w=w: torch.matmul(v, w.T) for w in ws]
        mm_ws = [lambda v, iw=iw: int8_linear_triton(v, iw.qweight, iw.scale, ws=True) for iw in iws]
        err["made planes"] = rel(pair(mm_ws[0], True)(), exact_b)
        tb = graph_ms([pair(f) for f in mm_bf16])
        tw = graph_ms([pair(f) for f in mm_ws])
        tp = graph_ms([pair(f, True) for f in mm_ws])
        pairs = [tb * 1e3, tw * 1e3, tb / tw, tp * 1e3, tb / tp]
    return (name, M, bf16 * 1e3, t["before"] * 1e3, bf16 / t["before"], t["ws"] * 1e3, bf16 / t["ws"],
            t["planes"] * 1e3, t["gemm"] * 1e3, bf16 / t["gemm"], max(err.values()), t["chained"] * 1e3,
            bf16 / t["chained"], *pairs)  # fmt: skip


def _decode_inputs(rows: int, heads: int) -> tuple:
    """A decode step's attention inputs: ``rows`` sequences of ATTN_CONTEXT cached tokens, ``heads`` query
    heads over 2 KV heads of 128, a bf16 cache of shuffled 16-token blocks."""
    nblk = rows * ATTN_CONTEXT // 16
    k = torch.randn(nblk, 16, 2, 128, dtype=torch.bfloat16, device="cuda")
    tables = torch.randperm(nblk, device="cuda").int().view(rows, -1)
    seq = torch.full((rows,), ATTN_CONTEXT, dtype=torch.int32, device="cuda")
    cu = torch.arange(rows + 1, dtype=torch.int32, device="cuda")
    q = torch.randn(rows, heads, 128, dtype=torch.bfloat16, device="cuda")
    return q, k, torch.randn_like(k), tables, seq, cu, 1, 128**-0.5


if __name__ == "__main__":
    main()
