"""W8A16 at 4,096 rows with the weights converted by a partition of their own into shared memory (issue 5).

    python3 benchmarks/w8_staged.py [--rows 4096] [--layers qkv,o_proj,gate_up,down] [--variants 0,1,...]

The converting GEMM of ``kernels/int8_gemm_ws.py`` converts each k-step's int8 weight fragment in the
registers of the warpgroups that issue the wgmmas (A from registers): 0.81-1.00x of cuBLAS bf16 at 4,096 rows
on an H100, its tensor pipe busy 80.7% of the cycles against cuBLAS's 95% (RESULTS.md "W8A16 at 4,096 rows
as a Gluon GEMM"). Here the conversion leaves the MMA warps altogether:

- a producer warp brings the int8 weight tile (BN, BK) and the x tile (BM, BK) by TMA into two rings;
- a converter partition (4 warps) reads each int8 tile from shared memory, converts it to 16 bits and
  writes it into a third ring in wgmma's swizzled layout (``fence_async_shared``, then its ``wb_ready``);
- the two consumer warpgroups run the wgmma pipeline of a plain 16-bit GEMM, both operands from shared
  memory (acc (BN weight rows, BM x rows) = W_tile @ X_tile.T; the per-channel scale on the accumulator's
  rows in the epilogue, as int8_gemm_ws).

``CONVERT=False`` is the same kernel fed 16-bit weights by TMA straight into the 16-bit ring (no converter
work): the ceiling of this GEMM's skeleton, so the run says whether a gap to cuBLAS is the conversion's or
the skeleton's. Every path is checked against the exact product first (relative Frobenius error <= 1e-2).
GPU us = do_bench medians (L2 flushed); x = cuBLAS bf16 / that path. JSON to $OUT/w8_staged.json (else
benchmarks/out/). Needs an sm_90 GPU and Triton with Gluon. A diagnostic until it wins: not on the product
path.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triton.testing import do_bench  # noqa: E402

from benchmarks.kernels import GLM_LINEARS  # noqa: E402
from kernels import int8_gemm_ws  # noqa: E402
from kernels.gluon_common import (  # noqa: E402
    HAS_GLUON,
    fence_async_shared,
    gl,
    gluon,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from kernels.gluon_common import barrier as _barrier  # noqa: E402
from kernels.gluon_common import tma_load as _tma_load  # noqa: E402
from kernels.int8_gemm_ws import _descriptor, _epilogue, _sms, _tile  # noqa: E402
from kernels.int8_matmul import dequantize_triton  # noqa: E402
from kernels.quant import Int8Weight  # noqa: E402

TOL = 1e-2
SMEM_LIMIT = 227 * 1024


@dataclass(frozen=True)
class Config:
    """xs / wqs / wbs: slots of the x ring, the int8 weight ring and the 16-bit weight ring; convert: int8
    weights through the converter (else 16-bit weights straight into the 16-bit ring); conv_regs: the
    converter's registers a thread; group: row tiles walked together."""

    block_m: int = 256
    xs: int = 3
    wqs: int = 4
    wbs: int = 2
    convert: bool = True
    group: int = 8
    conv_regs: int = 96
    loader_regs: int = 40
    conv_warps: int = 2

    block_n = 128
    block_k = 64

    @property
    def name(self) -> str:
        if not self.convert:
            return f"16-bit weights (skeleton), 128x{self.block_m}x64, x{self.xs}/wb{self.wbs} g{self.group}"
        return (f"int8 via converter, 128x{self.block_m}x64, x{self.xs}/wq{self.wqs}/wb{self.wbs} g{self.group} "
                f"r{self.conv_regs} w{self.conv_warps}")  # fmt: skip

    def smem_bytes(self) -> int:
        bk, bn, bm = self.block_k, self.block_n, self.block_m
        wq = self.wqs * bn * bk if self.convert else 0
        return self.xs * bm * bk * 2 + wq + self.wbs * bn * bk * 2 + bm * bn * 2 + 16 * 8 + 512


VARIANTS = (
    Config(),
    Config(convert=False, xs=3, wbs=3),
    Config(convert=False, xs=3, wbs=2),
    Config(xs=2, wqs=6, wbs=3),
    Config(xs=2, wqs=4, wbs=3),
    Config(group=16),
    Config(conv_regs=80),
    Config(xs=3, wqs=2, wbs=3),
)
# NOTE: 192-row tiles (qkv's 576 tiles of 256 rows fill 4.36 waves of 132 programs, 792 of 192 rows 6.0) do not
# build: Gluon's tensors take power-of-two shapes


if HAS_GLUON:

    @gluon.jit
    def _loader(w_desc, x_desc, wq_bufs, wb_bufs, x_bufs, wq_ready, wq_empty, wb_ready, wb_empty, x_ready,
                x_empty, tiles_m, tiles_n, n_k, GROUP: gl.constexpr, CONVERT: gl.constexpr):  # fmt: skip
        """Producer warp: k-step i's weight tile (int8 into the wq ring, or 16-bit straight into the wb
        ring) and x tile, each into its ring once the slot's last reader released it."""
        XS: gl.constexpr = x_bufs.shape[0]
        BN: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        BM: gl.constexpr = x_desc.block_type.shape[0]
        if CONVERT:
            WS: gl.constexpr = wq_bufs.shape[0]
        else:
            WS: gl.constexpr = wb_bufs.shape[0]
        i = 0
        for tile in range(gl.program_id(0), tiles_m * tiles_n, gl.num_programs(0)):
            pid_m, pid_n = _tile(tile, tiles_m, tiles_n, GROUP)
            for kk in range(n_k):
                s = i % WS
                if CONVERT:
                    mbarrier.wait(wq_empty.index(s), ((i // WS) & 1) ^ 1)
                    mbarrier.expect(wq_ready.index(s), w_desc.block_type.nbytes)
                    _tma_load(w_desc, [pid_n * BN, kk * BK], wq_ready.index(s), wq_bufs.index(s))
                else:
                    mbarrier.wait(wb_empty.index(s), ((i // WS) & 1) ^ 1)
                    mbarrier.expect(wb_ready.index(s), w_desc.block_type.nbytes)
                    _tma_load(w_desc, [pid_n * BN, kk * BK], wb_ready.index(s), wb_bufs.index(s))
                t = i % XS
                mbarrier.wait(x_empty.index(t), ((i // XS) & 1) ^ 1)
                mbarrier.expect(x_ready.index(t), x_desc.block_type.nbytes)
                _tma_load(x_desc, [pid_m * BM, kk * BK], x_ready.index(t), x_bufs.index(t))
                i += 1

    @gluon.jit
    def _converter(wq_bufs, wb_bufs, wq_ready, wq_empty, wb_ready, wb_empty, tiles_m, tiles_n, n_k,
                   CONVERT: gl.constexpr, CONV_WARPS: gl.constexpr):  # fmt: skip
        """Converter partition (4 warps): k-step i's int8 tile from the wq ring into registers (16 bytes a
        thread a row piece), released at once; then into the wb ring in 16 bits once that slot is free."""
        if CONVERT:
            WQS: gl.constexpr = wq_bufs.shape[0]
            WBS: gl.constexpr = wb_bufs.shape[0]
            lay: gl.constexpr = gl.BlockedLayout([1, 16], [8, 4], [CONV_WARPS, 1], [1, 0])
            n = tiles_m * tiles_n
            mine = (n - gl.program_id(0) + gl.num_programs(0) - 1) // gl.num_programs(0)
            for i in range(mine * n_k):
                s = i % WQS
                mbarrier.wait(wq_ready.index(s), (i // WQS) & 1)
                w = wq_bufs.index(s).load(lay)
                _barrier()
                mbarrier.arrive(wq_empty.index(s))
                wb = w.to(wb_bufs.dtype)
                t = i % WBS
                mbarrier.wait(wb_empty.index(t), ((i // WBS) & 1) ^ 1)
                wb_bufs.index(t).store(wb)
                fence_async_shared()
                _barrier()
                mbarrier.arrive(wb_ready.index(t))

    @gluon.jit
    def _consumer(wb_bufs, x_bufs, y_buf, wb_ready, wb_empty, x_ready, x_empty, y_desc, S_ptr, N, tiles_m,
                  tiles_n, n_k, GROUP: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
        """Two consumer warpgroups: per k-step one async wgmma (both operands in shared memory), then the
        wait for the step before and its slots released; the epilogue scales the channels and stores by TMA."""
        XS: gl.constexpr = x_bufs.shape[0]
        WBS: gl.constexpr = wb_bufs.shape[0]
        BN: gl.constexpr = wb_bufs.shape[1]
        BM: gl.constexpr = x_bufs.shape[1]
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BM, 16]
        )
        i = 0
        for tile in range(gl.program_id(0), tiles_m * tiles_n, gl.num_programs(0)):
            pid_m, pid_n = _tile(tile, tiles_m, tiles_n, GROUP)
            first = i
            acc = gl.zeros([BN, BM], gl.float32, acc_layout)
            for _ in range(n_k):
                s = i % WBS
                t = i % XS
                mbarrier.wait(wb_ready.index(s), (i // WBS) & 1)
                mbarrier.wait(x_ready.index(t), (i // XS) & 1)
                acc = warpgroup_mma(wb_bufs.index(s), x_bufs.index(t).permute((1, 0)), acc, is_async=True)
                acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
                _barrier()
                mbarrier.arrive(wb_empty.index((i + WBS - 1) % WBS), pred=i > first)
                mbarrier.arrive(x_empty.index((i + XS - 1) % XS), pred=i > first)
                i += 1
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
            _barrier()
            mbarrier.arrive(wb_empty.index((i + WBS - 1) % WBS))
            mbarrier.arrive(x_empty.index((i + XS - 1) % XS))

            _epilogue(acc, y_buf, y_desc, S_ptr, S_ptr, N, pid_m, pid_n, False, acc_layout)
        tma.store_wait(0)

    @gluon.jit
    def _staged_kernel(w_desc, x_desc, y_desc, S_ptr, M, N, K, XS: gl.constexpr, WQS: gl.constexpr,
                       WBS: gl.constexpr, GROUP: gl.constexpr, CONVERT: gl.constexpr, CONV_REGS: gl.constexpr,
                       LOADER_REGS: gl.constexpr, CONV_WARPS: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
        BN: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        BM: gl.constexpr = x_desc.block_type.shape[0]
        dtype: gl.constexpr = x_desc.dtype
        wb_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BN, BK], dtype)
        if CONVERT:
            wq_bufs = gl.allocate_shared_memory(gl.int8, [WQS, BN, BK], w_desc.layout)
            wb_bufs = gl.allocate_shared_memory(dtype, [WBS, BN, BK], wb_layout)
        else:
            wq_bufs = gl.allocate_shared_memory(
                gl.int8, [1, 16, 16], gl.NVMMASharedLayout.get_default_for([16, 16], gl.int8)
            )
            wb_bufs = gl.allocate_shared_memory(dtype, [WBS, BN, BK], w_desc.layout)
        x_bufs = gl.allocate_shared_memory(dtype, [XS, BM, BK], x_desc.layout)
        y_buf = gl.allocate_shared_memory(dtype, [BM, BN], y_desc.layout)
        wq_ready = gl.allocate_shared_memory(gl.int64, [WQS, 1], mbarrier.MBarrierLayout())
        wq_empty = gl.allocate_shared_memory(gl.int64, [WQS, 1], mbarrier.MBarrierLayout())
        wb_ready = gl.allocate_shared_memory(gl.int64, [WBS, 1], mbarrier.MBarrierLayout())
        wb_empty = gl.allocate_shared_memory(gl.int64, [WBS, 1], mbarrier.MBarrierLayout())
        x_ready = gl.allocate_shared_memory(gl.int64, [XS, 1], mbarrier.MBarrierLayout())
        x_empty = gl.allocate_shared_memory(gl.int64, [XS, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(WQS):
            mbarrier.init(wq_ready.index(s), count=1)
            mbarrier.init(wq_empty.index(s), count=1)
        for s in gl.static_range(WBS):
            mbarrier.init(wb_ready.index(s), count=1)
            mbarrier.init(wb_empty.index(s), count=1)
        for s in gl.static_range(XS):
            mbarrier.init(x_ready.index(s), count=1)
            mbarrier.init(x_empty.index(s), count=1)
        tiles_m = gl.cdiv(M, BM)
        tiles_n = gl.cdiv(N, BN)
        n_k = gl.cdiv(K, BK)
        gl.warp_specialize(
            [
                (_consumer, (wb_bufs, x_bufs, y_buf, wb_ready, wb_empty, x_ready, x_empty, y_desc, S_ptr, N,
                             tiles_m, tiles_n, n_k, GROUP, num_warps)),
                (_loader, (w_desc, x_desc, wq_bufs, wb_bufs, x_bufs, wq_ready, wq_empty, wb_ready, wb_empty,
                           x_ready, x_empty, tiles_m, tiles_n, n_k, GROUP, CONVERT)),
                (_converter, (wq_bufs, wb_bufs, wq_ready, wq_empty, wb_ready, wb_empty, tiles_m, tiles_n, n_k,
                              CONVERT, CONV_WARPS)),
            ],
            [1, CONV_WARPS],
            [LOADER_REGS, CONV_REGS],
        )  # fmt: skip


def gemm(
    x2: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, cfg: Config, out: torch.Tensor | None = None
):
    """y (M, N) = x2 (M, K) @ (w (N, K) * scale[:, None]).T; w int8 when cfg.convert, else x2's dtype."""
    M, K = x2.shape
    N = w.shape[0]
    assert (w.dtype == torch.int8) == cfg.convert, (w.dtype, cfg)
    assert K % 16 == 0 and N % 8 == 0 and cfg.smem_bytes() <= SMEM_LIMIT, cfg
    y = torch.empty((M, N), dtype=x2.dtype, device=x2.device) if out is None else out
    tiles = triton.cdiv(M, cfg.block_m) * triton.cdiv(N, cfg.block_n)
    grid = (min(tiles, _sms(x2.device)),)
    _staged_kernel[grid](
        _descriptor(w, [cfg.block_n, cfg.block_k]), _descriptor(x2, [cfg.block_m, cfg.block_k]),
        _descriptor(y, [cfg.block_m, cfg.block_n]), scale, M, N, K, XS=cfg.xs, WQS=cfg.wqs if cfg.convert else 1,
        WBS=cfg.wbs, GROUP=cfg.group, CONVERT=cfg.convert, CONV_REGS=cfg.conv_regs, LOADER_REGS=cfg.loader_regs,
        CONV_WARPS=cfg.conv_warps, num_warps=8,
    )  # fmt: skip
    return y


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref).norm() / ref.norm()).item()


def _shape(name: str, rows: int, variants: list[Config], stall: float) -> tuple[dict, list[str]]:
    """One layer at one row count: every path checked, then timed; (JSON record, table cells)."""
    n, k = GLM_LINEARS[name]
    wq = Int8Weight.quantize(torch.randn(n, k, device="cuda") * 0.02)
    wb = wq.dequantize().bfloat16()
    ones = torch.ones(n, device="cuda")
    x = torch.randn(rows, k, device="cuda").bfloat16()
    ref = x.float() @ wq.dequantize().T
    cells, rec = [], {"layer": name, "rows": rows}
    t_bf16 = do_bench(lambda: x @ wb.T)
    rec["cublas_us"] = t_bf16 * 1e3
    cells.append(f"{t_bf16 * 1e3:.1f}")
    scratch = torch.empty_like(wb)

    def deq():
        return x @ dequantize_triton(wq.qweight, wq.scale, torch.bfloat16, out=scratch).T

    paths = [("dequant_cublas", deq, rel(deq(), ref))]
    if int8_gemm_ws.available(x, wq.qweight):
        paths.append(("gemm_ws", lambda: int8_gemm_ws.gemm_w8(x, wq.qweight, wq.scale),
                      rel(int8_gemm_ws.gemm_w8(x, wq.qweight, wq.scale), ref)))  # fmt: skip
    for cfg in variants:
        w, s = (wq.qweight, wq.scale) if cfg.convert else (wb, ones)
        try:
            err = rel(gemm(x, w, s, cfg), ref)
            paths.append((cfg.name, lambda w=w, s=s, cfg=cfg: gemm(x, w, s, cfg), err))
        except Exception as e:  # noqa: BLE001
            paths.append((cfg.name, None, f"ERROR {type(e).__name__}: {str(e)[:200]}"))
    for label, fn, err in paths:
        if fn is None or not isinstance(err, float) or err > TOL:
            cells.append(f"{err if isinstance(err, str) else f'FAIL rel {err:.1e}'}")
            rec[label] = str(err)
            continue
        t = do_bench(fn)
        rec[label] = {"us": t * 1e3, "x": t_bf16 / t, "rel": err}
        cells.append(f"{t * 1e3:.1f} ({t_bf16 / t:.2f}x)")
        faulthandler.dump_traceback_later(stall, exit=True)
    return rec, cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="4096")
    ap.add_argument("--layers", default="qkv,o_proj,gate_up,down")
    ap.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))))
    ap.add_argument(
        "--stall", type=float, default=90.0, help="seconds without progress before the watchdog ends it"
    )
    args = ap.parse_args()
    faulthandler.dump_traceback_later(args.stall, exit=True)
    variants = [VARIANTS[int(v)] for v in args.variants.split(",")]
    torch.manual_seed(0)
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    results = []

    # odd shapes first: edges wrong show here
    for n, k, rows in ((200, 1008, 300), (1160, 272, 37)):
        wq = Int8Weight.quantize(torch.randn(n, k, device="cuda") * 0.05)
        x = torch.randn(rows, k, device="cuda").bfloat16()
        ref = x.float() @ wq.dequantize().T
        for cfg in variants:
            w = wq.qweight if cfg.convert else wq.dequantize().bfloat16()
            s = wq.scale if cfg.convert else torch.ones(n, device="cuda")
            try:
                y = torch.full((rows, n), float("nan"), dtype=x.dtype, device="cuda")
                gemm(x, w, s, cfg, out=y)
                torch.cuda.synchronize()
                err = rel(y, ref)
                print(
                    f"  smoke {n}x{k} {rows} rows {cfg.name}: rel {err:.2e} {'ok' if err <= TOL else 'FAIL'}",
                    flush=True,
                )
            except Exception as e:  # noqa: BLE001
                print(
                    f"  smoke {n}x{k} {rows} rows {cfg.name}: ERROR {type(e).__name__}: {str(e)[:300]}",
                    flush=True,
                )
            faulthandler.dump_traceback_later(args.stall, exit=True)

    print("| layer | rows | cuBLAS bf16 us | dequantize + cuBLAS | int8_gemm_ws (registers) | "
          + " | ".join(c.name for c in variants) + " |", flush=True)  # fmt: skip
    for rows in (int(r) for r in args.rows.split(",")):
        for name in args.layers.split(","):
            rec, cells = _shape(name, rows, variants, args.stall)
            print(f"| {name} | {rows} | " + " | ".join(cells) + " |", flush=True)
            results.append(rec)
            out = Path(os.environ.get("OUT", Path(__file__).parent / "out")) / "w8_staged.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
