"""16-bit linear layers at decode row counts: cuBLAS against our split-K few-rows kernel (issue 6).

    python3 benchmarks/skinny.py [--rows 1,2,4,8,16,32,64] [--layers qkv,o_proj,gate_up,down,lm_head]
                                 [--sweep 64] [--json PATH]

For each GLM-4-9B layer shape and row count: a parity check of the few-rows kernel (float64 reference),
then GPU time per call from CUDA-graph replays over >= 256 MB of weight copies (as the engine's decode
graphs run them, L2 cold) for cuBLAS (`F.linear`) and the few-rows kernel at the config its autotuner
picked; the weight bytes per second against the measured copy bandwidth; and what `kernels.skinny` decided
(its own eager timings). --sweep ROWS also times every config the autotuner considered at those rows under
graph replay (is the autotuner's eager pick the best one there?).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import BF16, DEV, GLM_LINEARS, copies_for, graph_ms, limits, rel  # noqa: E402
from kernels import int8_matmul as im  # noqa: E402
from kernels import skinny  # noqa: E402

LAYERS = {**GLM_LINEARS, "lm_head": (151552, 4096)}
BIAS = {"qkv"}  # GLM-4's fused q/k/v projection has a bias


def config_of(M: int, N: int, K: int, w: torch.Tensor) -> dict | None:
    """The few-rows autotuner's cached pick for this shape (None before its first call)."""
    for key, cfg in im._few_rows.cache.items():
        if key[:3] == (im.next_pow2(M), N, K) and str(w.dtype) in key:
            return {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    return None


def cfg_label(c: dict | None) -> str:
    if c is None:
        return "-"
    kind = "dot" if c["DOT"] else "fma"
    return f"{kind} {c['BLOCK_N']}x{c['BLOCK_K']} m{c['BLOCK_M']} s{c['SPLIT_K']} st{c['STAGES']} w{c['num_warps']}"


# (BLOCK_N, BLOCK_K, STAGES, num_warps, SPLIT_K): the one-row FMA tiles to time. Programs per multiprocessor
# matter for the narrow layers: qkv's 4608 rows in 16-row tiles are 288 programs on 132 SMs (2.2 each)
ONE_ROW_TILES = [(16, 512, 4, 4, 1), (8, 512, 4, 4, 1), (8, 256, 6, 2, 1), (4, 512, 6, 2, 1), (32, 256, 4, 4, 1),
                 (16, 256, 6, 4, 1), (8, 512, 4, 4, 2), (16, 512, 4, 4, 2), (32, 512, 3, 8, 1)]  # fmt: skip


def one_row_tiles(layers: list[str]) -> list[dict]:
    """One row, every ONE_ROW_TILES tile forced, 16-bit and int8 weights: GPU us in graphs (L2 cold)."""
    from kernels.quant import Int8Weight

    out = []
    for name in layers:
        if name == "lm_head":
            continue
        N, K = LAYERS[name]
        for wdt in ("bf16", "int8"):
            nbytes = N * K * (2 if wdt == "bf16" else 1)
            ws = [torch.randn(N, K, dtype=BF16, device=DEV) * 0.02 for _ in range(copies_for(nbytes))]
            if wdt == "int8":
                ws = [Int8Weight.quantize(w) for w in ws]
            x = torch.randn(1, K, dtype=BF16, device=DEV)
            line = []
            for bn, bk, st, nw, sk in ONE_ROW_TILES:
                cfg = {"BLOCK_M": 16, "BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": sk, "DOT": False, "STAGES": st,
                       "CVT": 0, "num_warps": nw, "num_stages": st}  # fmt: skip
                if wdt == "int8":
                    fns = [
                        lambda w=w, x=x, cfg=cfg: im.int8_linear_triton(x, w.qweight, w.scale, config=cfg)
                        for w in ws
                    ]
                else:
                    fns = [lambda w=w, x=x, cfg=cfg: im.few_rows_linear_triton(x, w, config=cfg) for w in ws]
                try:
                    ms = graph_ms(fns)
                except Exception as exc:  # noqa: BLE001 - reported, the others go on
                    line.append(f"{bn}x{bk}/{st}/{nw}/s{sk} {type(exc).__name__}")
                    continue
                gbps = nbytes / (ms * 1e-3) / 1e9
                out.append({"layer": name, "weights": wdt, "rows": 1, "tile": (bn, bk, st, nw, sk), "us": ms * 1e3,
                            "GBps": gbps})  # fmt: skip
                line.append(f"{bn}x{bk}/{st}/{nw}/s{sk} {ms * 1e3:.1f}")
            print(f"one row {name:>7} {wdt}: " + " | ".join(line), flush=True)
            del ws
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,2,4,8,16,32,64")
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--sweep", default="", help="row counts whose pruned configs are all timed in graphs")
    ap.add_argument("--one-row", action="store_true",
                    help="time one-row FMA tiles (ONE_ROW_TILES) for 16-bit and int8 weights in graphs")  # fmt: skip
    ap.add_argument("--tiles", default="", help="one-row tiles to time instead of ONE_ROW_TILES: "
                    "comma-separated BLOCK_NxBLOCK_KxSTAGESxWARPSxSPLIT_K")  # fmt: skip
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "skinny.json"))
    args = ap.parse_args()
    os.environ["AUTOGLM_SKINNY"] = "auto"
    lim = limits()
    print(f"{torch.cuda.get_device_name()}: copy {lim['copy_GBps']:.0f} GB/s", flush=True)
    rows_out = []
    sweep_rows = {int(r) for r in args.sweep.split(",") if r}
    for name in args.layers.split(","):
        N, K = LAYERS[name]
        nbytes = N * K * 2
        n_copies = copies_for(nbytes)
        ws = [torch.randn(N, K, dtype=BF16, device=DEV) * 0.02 for _ in range(n_copies)]
        bias = torch.randn(N, dtype=BF16, device=DEV) if name in BIAS else None
        for M in (int(r) for r in args.rows.split(",")):
            x = torch.randn(M, K, dtype=BF16, device=DEV)
            ref = x.double() @ ws[0].double().T + (bias.double() if bias is not None else 0)
            out = torch.full((M, N), float("nan"), dtype=BF16, device=DEV)
            im.few_rows_linear_triton(x, ws[0], bias, out=out)
            err = rel(out, ref)
            ok = not out.isnan().any().item() and err <= 1e-2
            chose_few = skinny.use_few_rows(x, ws[0], bias)
            lib_ms = graph_ms([lambda w=w, x=x, bias=bias: F.linear(x, w, bias) for w in ws])
            few_ms = graph_ms([lambda w=w, x=x, bias=bias: im.few_rows_linear_triton(x, w, bias) for w in ws])
            cfg = config_of(M, N, K, ws[0])
            row = {"layer": name, "rows": M, "N": N, "K": K, "rel_err": err, "ok": ok, "cublas_us": lib_ms * 1e3,
                   "few_us": few_ms * 1e3, "config": cfg, "skinny_picks_few_rows": chose_few,
                   "cublas_frac_copy": nbytes / (lib_ms * 1e-3) / 1e9 / lim["copy_GBps"],
                   "few_frac_copy": nbytes / (few_ms * 1e-3) / 1e9 / lim["copy_GBps"]}  # fmt: skip
            rows_out.append(row)
            print(f"{name:>8} {M:>3} rows: cuBLAS {row['cublas_us']:7.1f} us ({row['cublas_frac_copy']:4.0%}) | "
                  f"few-rows {row['few_us']:7.1f} us ({row['few_frac_copy']:4.0%}) {cfg_label(cfg):<32} | "
                  f"cuBLAS/few {lib_ms / few_ms:4.2f} | skinny -> {'few-rows' if chose_few else 'cuBLAS':8} | "
                  f"err {err:.1e} {'ok' if ok else 'FAIL'}", flush=True)  # fmt: skip
            if M in sweep_rows and name != "lm_head":
                named = {"X_ptr": x, "W_ptr": ws[0], "M": M, "N": N, "K": K, "M_BUCKET": im.next_pow2(M)}
                for c in im._prune_few_rows(im._few_rows.configs, named):
                    forced = {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}
                    try:
                        ms = graph_ms(
                            [
                                lambda w=w, x=x, bias=bias, forced=forced: im.few_rows_linear_triton(
                                    x, w, bias, config=forced
                                )
                                for w in ws
                            ]
                        )
                    except Exception as exc:  # noqa: BLE001 - a config that does not compile/fit is reported
                        print(f"    sweep {cfg_label(forced)}: {type(exc).__name__}", flush=True)
                        continue
                    rows_out.append({"layer": name, "rows": M, "sweep_config": forced, "us": ms * 1e3})
                    print(f"    sweep {cfg_label(forced):<32} {ms * 1e3:7.1f} us", flush=True)
        del ws
        torch.cuda.empty_cache()
    if args.tiles:
        ONE_ROW_TILES[:] = [tuple(int(v) for v in t.split("x")) for t in args.tiles.split(",")]
    if args.one_row:
        rows_out += one_row_tiles(args.layers.split(","))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"limits": lim, "rows": rows_out}, indent=1, default=str))
    fails = [r for r in rows_out if r.get("ok") is False]
    print(f"parity: {'all ok' if not fails else f'{len(fails)} FAILURES'}", flush=True)


if __name__ == "__main__":
    main()
