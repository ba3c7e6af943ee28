"""Compile the kernels' GPU-only variants for sm_90 (an H100/H200) with this machine's Triton, no GPU needed.

The CPU interpreter never traces what only the GPU runs: inline PTX (the int8 conversions, the L2 prefetch),
programmatic dependent launch, the fused epilogues at GPU tile sizes. Compiling them here (Triton's own
ptxas) catches a kernel that would not build on the GPU, or whose loop lost its software pipeline (pointers
and 16-divisible integers carry the divisibility the JIT gives them: without it no load is pipelined). Run as a script, outside the interpreter (the
kernels read TRITON_INTERPRET when imported): ``python -m tests.kernels.hopper_compile`` prints one line per
variant, ``<name> ok <comma-separated PTX markers found>`` or ``<name> FAIL <error>``, and exits 1 on any failure.
"""

from __future__ import annotations

import inspect
import sys

from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, compile

from kernels import flash_decode, fused_norm, int8_gemm_ws, int8_matmul, int8_ws, swiglu

FLOATS = {"qk_scale", "softcap", "eps"}
# what a variant's PTX must contain: programmatic dependent launch, the L2 prefetch, the int8 byte permutes,
# pipelined loads (asynchronous copies into shared memory)
MARKERS = (
    "griddepcontrol.wait",
    "griddepcontrol.launch_dependents",
    "prefetch.global.L2",
    "prmt.b32",
    "cp.async",
)
# integer arguments that are multiples of 16 at the shapes the engine runs (the JIT marks such values, and
# every pointer, 16-divisible; without that Triton cannot prove 16-byte alignment and pipelines no load)
DIVISIBLE = {"K", "N", "MP", "stride_xm", "stride_wn", "stride_ym", "q_cols", "kv_cols", "stride_qt", "stride_qh",
             "stride_cb", "stride_co", "stride_ch", "stride_bt", "stride_ob", "stride_oh", "stride_os",
             "stride_t", "stride_h", "HEAD_DIM"}  # fmt: skip


def _build(fn, ptr_types: dict, consts: dict, num_warps: int, num_stages: int = 3):
    signature = inspect.signature(fn.fn).parameters
    # constexprs with a default the variant leaves out take it (as a launch that does not pass them)
    consts = {
        **{k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty},
        **consts,
    }
    params = list(signature)
    gluon = getattr(fn, "is_gluon", lambda: False)()
    sig, attrs = {}, {}
    for i, name in enumerate(params):
        if name in consts:
            sig[name] = "constexpr"
        elif name.endswith("_desc"):  # a TMA descriptor (Gluon): its type spelled out in ptr_types
            sig[name] = ptr_types[name]
        elif name.endswith("_ptr"):
            sig[name] = ptr_types.get(name, "*bf16")
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "fp32" if name in FLOATS else "i32"
            if name in DIVISIBLE:
                attrs[(i,)] = [["tt.divisibility", 16]]
    if gluon:
        from triton.experimental.gluon._runtime import GluonASTSource

        src = GluonASTSource(
            fn, sig, constexprs={(params.index(k),): v for k, v in consts.items()}, attrs=attrs
        )
        return compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
    src = ASTSource(fn, sig, constexprs={(params.index(k),): v for k, v in consts.items()}, attrs=attrs)
    return compile(
        src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": num_stages}
    )


def _ws(MP: int, bias: bool, pdl: bool, tiled: bool = False) -> tuple:
    """The warp-specialized int8 x int8 GEMM (Gluon) at MP padded rows: TMA descriptors of the weight and
    planes tiles (and of the tiled planes' row scales), its ring as deep as int8_ws gives it."""
    from triton.experimental.gluon import language as gl

    def desc(rows: int) -> str:
        layout = gl.NVMMASharedLayout.get_default_for([rows, int8_ws.BLOCK_K], gl.int8)
        return f"tensordesc<i8[{rows}, {int8_ws.BLOCK_K}],{layout!r}>"

    s_layout = gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=32, rank=2)
    s_desc = f"tensordesc<fp32[1, {int8_ws.WS_ROWS}],{s_layout!r}>"
    ptrs = {"w_desc": desc(int8_ws.BLOCK_N), "p_desc": desc(2 * MP), "s_desc": s_desc,
            "S_ptr": "*fp32", "SX_ptr": "*fp32"}  # fmt: skip
    consts = dict(
        MP=MP, STAGES=int8_ws.stages_for(MP, tiled), HAS_BIAS=bias, PDL=pdl, TILED=tiled, num_warps=4
    )
    want = ("cp.async.bulk.tensor", ".s32.s8.s8", "setmaxnreg") + (MARKERS[:2] if pdl else ())
    return int8_ws._w8_ws_kernel, ptrs, consts, 4, want


def _gemm_ws(cfg, bias: bool, dtype: str) -> tuple:
    """The warp-specialized W8A16 GEMM at prefill rows (Gluon, int8_gemm_ws) at one of its configs: TMA
    descriptors of the weight, x and y tiles; 8 consumer warps (two warpgroups) and the producer warp."""
    from triton.experimental.gluon import language as gl

    def desc(block: list[int], ty: str) -> str:
        layout = gl.NVMMASharedLayout.get_default_for(
            block, {"i8": gl.int8, "bf16": gl.bfloat16, "fp16": gl.float16}[ty]
        )
        return f"tensordesc<{ty}[{block[0]}, {block[1]}],{layout!r}>"

    ptrs = {
        "w_desc": desc([cfg.block_n, cfg.block_k], "i8"),
        "x_desc": desc([cfg.block_m, cfg.block_k], dtype),
        "y_desc": desc([cfg.block_m, cfg.block_n], dtype),
        "S_ptr": "*fp32",
        "B_ptr": f"*{dtype}",
    }
    consts = dict(STAGES=cfg.stages, GROUP=cfg.group, HAS_BIAS=bias, LOADER_REGS=cfg.loader_regs,
                  EARLY=cfg.early, STAGGER=cfg.stagger, num_warps=8)  # fmt: skip
    want = (
        "cp.async.bulk.tensor",
        f"wgmma.mma_async.sync.aligned.m64n{cfg.block_m}k16.f32.{dtype.replace('fp', 'f')}",
        "ld.shared.v2.b8",
        "stmatrix",
        "setmaxnreg",
    )
    return int8_gemm_ws._w8_gemm_kernel, ptrs, consts, 8, want


def _decode(quant: bool, **kw) -> dict:
    base = dict(GROUP=16, BLOCK_G=16, HEAD_DIM=128, BLOCK_D=128, BLOCK_N=128, PAGE=16, QUANT=quant, SOFTCAP=False,
                UPCAST=False, PRECISION="tf32", FAST=True, QK8=quant, DIRECT=False, FUSED=False,
                LOOP_STAGES=6 if quant else 5, PDL_END=True, EARLY=True, PF_LINES=1 if quant else 2, PLANES=False)  # fmt: skip
    return {**base, **kw}


def _few_rows(**kw) -> dict:
    base = dict(HAS_BIAS=False, EVEN_K=True, UPCAST=False, PRECISION="tf32", FAST=True, BLOCK_M=16, BLOCK_N=8,
                BLOCK_K=256, SPLIT_K=1, DOT=False, STAGES=6, CVT=0, QUANT=True, PDL=True, PRE_BYTES=4096,
                ROPE=False, HEAD_DIM=1, ROT=0, SWIGLU=False, IMMA=False)  # fmt: skip
    return {**base, **kw}


I8_DECODE = {"KC_ptr": "*i8", "VC_ptr": "*i8", "KS_ptr": "*fp32", "VS_ptr": "*fp32"}
COMMON_DECODE = {"BT_ptr": "*i32", "SEQ_ptr": "*i32", "CU_ptr": "*i32", "OP_ptr": "*fp32", "LSE_ptr": "*fp32",
                 "CNT_ptr": "*i32", "PL_ptr": "*i8", "SX_ptr": "*fp32"}  # fmt: skip
MERGE = {"OP_ptr": "*fp32", "LSE_ptr": "*fp32", "CU_ptr": "*i32", "SEQ_ptr": "*i32"}
I8_W = {"W_ptr": "*i8", "S_ptr": "*fp32", "P_ptr": "*fp32", "C_ptr": "*i32", "SX_ptr": "*fp32", "COS_ptr": "*fp32",
        "SIN_ptr": "*fp32", "SLOT_ptr": "*i64"}  # fmt: skip

# name -> (kernel, pointer types, constexprs, warps, the PTX markers it must have)
VARIANTS = {
    "decode bf16 KV, early launch + prefetch": (
        flash_decode._flash_decode_kernel, COMMON_DECODE, _decode(False), 4, MARKERS[:3]),
    "decode int8 KV, int8 q.K, early launch + prefetch": (
        flash_decode._flash_decode_kernel, {**COMMON_DECODE, **I8_DECODE}, _decode(True), 4, MARKERS),
    "split merge under PDL": (
        flash_decode._merge_kernel, MERGE,
        dict(HEAD_DIM=128, BLOCK_D=32, BLOCK_S=128, BLOCK_N=128, PDL=True), 4, MARKERS[:2]),
    "decode bf16 KV, the merge in the kernel, the rows also as tiled int8 planes": (
        flash_decode._flash_decode_kernel, COMMON_DECODE,
        _decode(False, FUSED=True, LOOP_STAGES=3, EARLY=False, PLANES=True), 4,
        MARKERS[1:2] + ("cp.async", "atom.global.gpu.acq_rel.add")),
    "decode int8 KV, one split, the rows also as tiled int8 planes": (
        flash_decode._flash_decode_kernel, {**COMMON_DECODE, **I8_DECODE},
        _decode(True, DIRECT=True, EARLY=False, PLANES=True), 4, MARKERS[1:2] + ("cp.async",)),
    "one-row int8 gate/up + SiLU epilogue, PDL preload": (
        int8_matmul._int8_few_rows_kernel, I8_W, _few_rows(SWIGLU=True), 2, MARKERS[:2] + MARKERS[3:]),
    "one-row 16-bit q/k/v + rotary epilogue": (
        int8_matmul._int8_few_rows_kernel, {**I8_W, "W_ptr": "*bf16", "KC_ptr": "*bf16", "VC_ptr": "*bf16"},
        _few_rows(QUANT=False, ROPE=True, HEAD_DIM=128, ROT=64, BLOCK_K=512, STAGES=4), 4, MARKERS[:2]),
    "8-row int8 dot, split K": (
        int8_matmul._int8_few_rows_kernel, I8_W,
        _few_rows(DOT=True, BLOCK_N=64, BLOCK_K=256, STAGES=3, SPLIT_K=2, PDL=False, PRE_BYTES=0), 4,
        MARKERS[3:]),
    "8-row int8 dot under PDL, first K tile preloaded, split K": (
        int8_matmul._int8_few_rows_kernel, I8_W,
        _few_rows(DOT=True, BLOCK_N=32, BLOCK_K=256, STAGES=3, SPLIT_K=4, PRE_BYTES=4096), 2, MARKERS[:2] + MARKERS[3:]),
    "8-row int8 x int8 planes (IMMA) under PDL, preloaded": (
        int8_matmul._int8_few_rows_kernel, {**I8_W, "X_ptr": "*i8"},
        _few_rows(DOT=True, IMMA=True, BLOCK_N=32, BLOCK_K=256, STAGES=4, SPLIT_K=2, PRE_BYTES=4096), 2,
        MARKERS[:2] + ("cp.async", ".s8.s8")),
    "8-row int8 x int8 planes (IMMA), split K": (
        int8_matmul._int8_few_rows_kernel, {**I8_W, "X_ptr": "*i8"},
        _few_rows(DOT=True, IMMA=True, BLOCK_N=64, BLOCK_K=256, STAGES=3, SPLIT_K=2, PDL=False, PRE_BYTES=0), 4,
        ("cp.async", ".s8.s8")),
    "many-row int8 x int8 planes (IMMA) GEMM": (
        int8_matmul._int8_matmul_kernel, {**I8_W, "X_ptr": "*i8"},
        dict(HAS_BIAS=False, EVEN_K=True, UPCAST=False, PRECISION="tf32", FAST=True, BLOCK_M=64, BLOCK_N=128,
             BLOCK_K=128, GROUP_N=8, SWAP=False, CVT=0, IMMA=True), 4, ("cp.async", ".s8.s8")),
    "rows split into int8 planes under PDL": (
        int8_matmul._split_rows_kernel, {"P_ptr": "*i8", "SX_ptr": "*fp32"}, dict(BLOCK_K=1024, PDL=True), 4,
        MARKERS[:2]),
    "SiLU-and-multiply under PDL": (
        swiglu._silu_and_mul_kernel, {}, dict(BLOCK=2048, PDL=True, PLANES=False), 8, MARKERS[:2]),
    "SiLU-and-multiply under PDL, the rows also as tiled int8 planes": (
        swiglu._silu_and_mul_kernel, {"PL_ptr": "*i8", "SX_ptr": "*fp32"},
        dict(BLOCK=2048, PDL=True, PLANES=True), 8, MARKERS[:2]),
    "add + two RMSNorms, the rows also as int8 planes, under PDL": (
        fused_norm._rms_norm_kernel, {"PL_ptr": "*i8", "SX_ptr": "*fp32"},
        dict(HAS_RESIDUAL=True, BLOCK_N=4096, PRE=True, PLANES=True, PDL=True), 8, MARKERS[:2]),
    "add + two RMSNorms, the rows also as tiled int8 planes, under PDL": (
        fused_norm._rms_norm_kernel, {"PL_ptr": "*i8", "SX_ptr": "*fp32"},
        dict(HAS_RESIDUAL=True, BLOCK_N=4096, PRE=True, PLANES=True, PDL=True, TILED=True), 8, MARKERS[:2]),
    "rows into int8 planes by K chunk under PDL (int8_ws)": (
        int8_ws._planes_kernel, {"P_ptr": "*i8", "SX_ptr": "*fp32"},
        dict(CHUNK=1024, BLOCK=1024, PDL=True, TILED=False, TILE=128), 4, MARKERS[:2]),
    "rows into tiled int8 planes by K chunk under PDL (int8_ws)": (
        int8_ws._planes_kernel, {"P_ptr": "*i8", "SX_ptr": "*fp32"},
        dict(CHUNK=2048, BLOCK=16384, PDL=True, TILED=True, TILE=128), 4, MARKERS[:2]),
}  # fmt: skip
if int8_ws.HAS_GLUON:
    VARIANTS.update({
        "warp-specialized int8 x int8 GEMM, 8 rows, PDL (Gluon)": _ws(8, False, True),
        "warp-specialized int8 x int8 GEMM, 16 rows, bias (Gluon)": _ws(16, True, False),
        "warp-specialized int8 x int8 GEMM, 32 rows, bias, PDL (Gluon)": _ws(32, True, True),
        "warp-specialized int8 x int8 GEMM, tiled planes, 8 rows, PDL (Gluon)": _ws(8, False, True, True),
        "warp-specialized int8 x int8 GEMM, tiled planes, 32 rows, bias, PDL (Gluon)": _ws(32, True, True, True),
        "W8A16 GEMM, weights converted in registers, 128x256 tiles (Gluon)": _gemm_ws(
            int8_gemm_ws.DEFAULT, False, "bf16"),
        "W8A16 GEMM, weights converted in registers, 128x128 tiles, bias, fp16 (Gluon)": _gemm_ws(
            int8_gemm_ws.Config(block_m=128, stages=6), True, "fp16"),
        "W8A16 GEMM, weights converted in registers, 128x256 tiles, staggered k-steps (Gluon)": _gemm_ws(
            int8_gemm_ws.Config(stagger=1), False, "bf16"),
    })  # fmt: skip


def main() -> int:
    failed = 0
    for name, (fn, ptrs, consts, warps, want) in VARIANTS.items():
        try:
            ptx = _build(fn, ptrs, consts, warps).asm["ptx"]
        except Exception as e:  # noqa: BLE001 - reported per variant
            failed += 1
            print(f"{name} FAIL {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            continue
        missing = [m for m in want if m not in ptx]
        if missing:
            failed += 1
            print(f"{name} FAIL missing {','.join(missing)}")
        else:
            print(f"{name} ok {','.join(m for m in MARKERS if m in ptx)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
