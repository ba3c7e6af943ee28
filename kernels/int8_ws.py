"""W8A16 at 2..WS_ROWS rows on Hopper: the rows as int8 planes, a warp-specialized int8 x int8 GEMM (Gluon).

y = x @ (qweight * scale[:, None]).T + bias for few 16-bit rows, as a decode step with a small batch (or a
speculative draft) has them. The rows are first split into two int8 planes with one scale per row,
x ~= sx * (hi + lo / 254) (``_planes_kernel``, Triton, one program per row and K chunk; the same split as
``int8_matmul.split_rows``), so the product runs on the int8 tensor cores with both operands in shared memory
and no weight conversion at all. The GEMM is written in Gluon (Triton's tile-level dialect with explicit
shared memory, barriers and warp roles) because plain Triton could not express what a weight stream at these
row counts needs (RESULTS.md "W8A16 at 8-32 rows: where the few-rows kernel's time goes"): one program per 64
output channels, its whole K range streamed through a deep ring of TMA copies by one producer warp while one
warpgroup issues the wgmmas (``_loader`` / ``_mma``), and the next layer's weights already in flight while
the planes are written (programmatic dependent launch: the producer sends its first STAGES weight tiles, then
waits for the planes kernel; the GEMM lets the next kernel launch at its own start, so in a chain of products
the next planes kernel and GEMM are resident, their weight tiles on the way, while this one streams).
Where an RMSNorm writes the rows (the q/k/v and gate/up projections' input in a decode step), its kernel can
also write their planes (``planes_target`` / ``planes_written``; ``kernels.fused_norm``; the engine asks for
it unless AUTOGLM_NORM_PLANES=0), and the product skips the planes kernel: the GEMM then waits on the norm.
Swapped operands: acc (64 channels, MP rows) = W_tile @ planes_tile.T, where MP pads the rows to 8, 16 or 32
(the padding rows hold whatever an earlier call left; their columns are never stored).
GPU only (sm_90: wgmma and TMA); Triton's CPU interpreter cannot run Gluon, so CI runs the planes kernel
there, compiles the GEMM for sm_90 (tests/kernels/hopper_compile.py) and the GPU tests check both against
the dequantized reference. ``int8_matmul.int8_linear_triton`` takes this path where the GPU measured it
faster (``use_ws``).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from .gluon_common import (
    HAS_GLUON,
    TensorDescriptor,
    gl,
    gluon,
    gluon_hopper,
    mbarrier,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from .gluon_common import tma_load as _tma_load
from .triton_common import pdl_enabled, pdl_trigger, pdl_wait

WS_ROWS = 32
LO_STEPS: tl.constexpr = tl.constexpr(254.0)  # the lo plane's steps per hi step (every planes writer's)
BLOCK_N = 64  # output channels a program: one warpgroup's wgmma M
BLOCK_K = 128  # int8 bytes a weight row per tile: TMA's 128-byte swizzle
# tiled planes: a row scale per SCALE_K columns, 16 of the GEMM's k-steps, so that its int32 accumulators are
# scaled into float32 once every 16 k-steps (H100, 2026-12-07: a scale per k-step, folded while the next
# k-step's wgmmas ran, cost 0.3-2.9 us a product; RESULTS.md "Tiled planes"). Every writer's rows are whole
# groups: SiLU-and-multiply's and the planes kernel's 2,048-column chunks, the RMSNorm's whole row, the decode
# attention's KV group of 16 heads x 128 dims
SCALE_K: tl.constexpr = tl.constexpr(2048)
# the scales (cdiv(K, SCALE_K), SX_COLS): a group's row scales padded to 32 floats (128 bytes), so that each
# ring slot the GEMM copies them into starts 128-byte aligned, as TMA wants (H100: a 32-byte slot at 8 rows
# stopped the GEMM with a misaligned address)
SX_COLS: tl.constexpr = tl.constexpr(WS_ROWS)
GROUP_TILES: tl.constexpr = tl.constexpr(2048 // BLOCK_K)  # the GEMM's k-steps a scale group
SMEM_BUDGET = 200 * 1024  # of an H100/H200's 227 KB a program, leaving room for barriers and the epilogue
MAX_STAGES = 16


@triton.jit
def _planes_kernel(X_ptr, P_ptr, SX_ptr, K, stride_xm, MP, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
                   PDL: tl.constexpr, TILED: tl.constexpr, TILE: tl.constexpr):  # fmt: skip
    """Program (m, c): row m of X (M, K) 16-bit -> sx[m] = max|x| / 127 (every program reads the whole row;
    program c = 0 stores it) and its K chunk c of the planes hi = round(x / sx), lo = round((x / sx - hi) *
    254), both in [-127, 127], at P[0, m] and P[1, m] (P int8 (2, MP, K)). ``TILED``: a scale per SCALE_K
    columns instead, SX[g, m] (``store_tile_planes``), so a program reads only its chunk."""
    pdl_trigger(PDL)
    pdl_wait(PDL)
    m = tl.program_id(0)
    c = tl.program_id(1)
    row = X_ptr + m.to(tl.int64) * stride_xm
    if TILED:
        k = c * CHUNK + tl.arange(0, CHUNK)
        x = tl.load(row + k, mask=k < K, other=0.0).to(tl.float32)
        store_tile_planes(P_ptr, SX_ptr, m, c * CHUNK, K, MP, x, CHUNK, TILE)
    else:
        offs = tl.arange(0, BLOCK)
        peak = tl.zeros((BLOCK,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK):
            peak = tl.maximum(
                peak, tl.abs(tl.load(row + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32))
            )
        sx = row_scale(tl.max(peak, axis=0))
        if c == 0:
            tl.store(SX_ptr + m, sx)
        k = c * CHUNK + tl.arange(0, CHUNK)
        store_planes(P_ptr, m, k, k < K, K, MP, tl.load(row + k, mask=k < K, other=0.0).to(tl.float32) / sx)


@triton.jit
def row_scale(amax):
    """A row's plane scale from its largest |value|: amax / 127 (1 for an all-zero row)."""
    return tl.where(amax > 0, amax / 127.0, 1.0)


@triton.jit
def store_planes(P_ptr, m, k, mask, K, MP, t):
    """Columns k of row m's planes, t = x / sx (float32): hi = round(t) and lo = round((t - hi) * LO_STEPS),
    both in [-127, 127], at P[0, m, k] and P[1, m, k] (P int8 (2, MP, K))."""
    hi = tl.minimum(tl.maximum(tl.floor(t + 0.5), -127.0), 127.0)
    lo = tl.minimum(tl.maximum(tl.floor((t - hi) * LO_STEPS + 0.5), -127.0), 127.0)
    dst = P_ptr + m.to(tl.int64) * K + k
    tl.store(dst, hi.to(tl.int8), mask=mask)
    tl.store(dst + tl.cast(MP, tl.int64) * K, lo.to(tl.int8), mask=mask)


@triton.jit
def store_tile_planes(P_ptr, SX_ptr, m, k0, K, MP, x, C: tl.constexpr, TILE: tl.constexpr):
    """Tiled planes of columns k0..k0+C-1 of row m (x float32 (C,), 0 past K; k0 a multiple of SCALE_K; TILE =
    min(SCALE_K, C), so C < SCALE_K only for a whole row that short): each SCALE_K-column group g gets its own
    scale SX[g, m] = max|x| / 127 (SX float32 (cdiv(K, SCALE_K), SX_COLS)) and its columns' planes as
    ``store_planes`` writes them. A writer holding only whole groups of a row (a chunk of SiLU-and-multiply's
    output, a KV group's heads of the decode attention's) can make their planes alone."""
    x2 = tl.reshape(x, (C // TILE, TILE))
    sx = row_scale(tl.max(tl.abs(x2), axis=1))
    groups = k0 // SCALE_K + tl.arange(0, C // TILE)
    tl.store(SX_ptr + groups * SX_COLS + m, sx, mask=groups * SCALE_K < K)
    k = k0 + tl.arange(0, C // TILE)[:, None] * TILE + tl.arange(0, TILE)[None, :]
    store_planes(P_ptr, m, k, k < K, K, MP, x2 / sx[:, None])


@triton.jit
def store_group_planes(P_ptr, SX_ptr, m, group, heads, h_mask, offs_d, K, MP, x, HEAD_DIM: tl.constexpr):
    """Tiled planes of the heads of one KV group in row m (x float32 (G, >= HEAD_DIM), its valid heads
    ``h_mask``, GROUP * HEAD_DIM == SCALE_K columns: scale group ``group``): one scale for them all, then
    their columns' planes, ``store_tile_planes``' values."""
    d_mask = offs_d < HEAD_DIM
    x = tl.where(h_mask[:, None] & d_mask[None, :], x, 0.0)
    sx = row_scale(tl.max(tl.max(tl.abs(x), axis=1), axis=0))
    tl.store(SX_ptr + group * SX_COLS + m, sx)
    cols = heads[:, None] * HEAD_DIM + offs_d[None, :]
    store_planes(P_ptr, m, cols, h_mask[:, None] & d_mask[None, :], K, MP, x / sx)


def row_bucket(M: int) -> int:
    """The rows padded to the GEMM's MP: 8, 16 or 32."""
    return 8 if M <= 8 else 16 if M <= 16 else 32


def planes_tiled() -> bool:
    """Whether the planes carry a scale per (row, SCALE_K-column group) rather than one per row
    (on unless AUTOGLM_PLANES_TILED=0). Tiled, any kernel writing a part of a row (the decode attention's KV
    groups, SiLU-and-multiply's chunks) can make that part's planes alone, and the GEMM scales its int32
    products once a group (``_mma``'s TILED fold) instead of once at the end.
    NOTE: H100 2026-12-07 15:05 (RESULTS.md "Tiled planes"): the GEMM on tiled planes within 0.5 us of the
    row-scaled one (down 32 rows 23.9 vs 23.4 us chained), and SiLU's own planes make SiLU + down 1.73-1.85x
    of SiLU + cuBLAS at 2-32 rows (the planes kernel's path 1.61-1.69x)."""
    return os.environ.get("AUTOGLM_PLANES_TILED", "1") == "1"


def scale_groups(K: int) -> int:
    """Groups of SCALE_K columns in a row of K: the rows of tiled planes' scales (cdiv(K, SCALE_K), SX_COLS)."""
    return triton.cdiv(K, SCALE_K.value)


def split_planes(x2: torch.Tensor, planes: torch.Tensor, sx: torch.Tensor, pdl: bool = False) -> None:
    """x2 (M, K) 16-bit -> planes (2, MP, K) int8 rows 0..M-1 and sx float32: (>= M,) a scale per row, or
    (cdiv(K, SCALE_K), SX_COLS) a scale per row and group, columns 0..M-1 (tiled planes) (``_planes_kernel``)."""
    M, K = x2.shape
    # the row's maximum in one load where it fits (a loop of dependent loads made the planes of a 13,696-wide
    # row take ~5 us, longer than the GEMM's first weight tiles take to stream); 2 K chunks a program's row read
    block = min(triton.next_power_of_2(K), 16384)
    chunk = min(block, 2048)
    tiled = sx.dim() == 2
    _planes_kernel[(M, triton.cdiv(K, chunk))](
        x2, planes, sx, K, x2.stride(0), planes.shape[1], CHUNK=chunk, BLOCK=block, PDL=pdl, TILED=tiled,
        TILE=min(SCALE_K.value, chunk), num_warps=8 if block > 4096 and not tiled else 4, launch_pdl=pdl,
    )  # fmt: skip


def split_tiles_ref(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled planes of x2 (M, K) in torch: (planes int8 (2, M, K), sx float32 (cdiv(K, SCALE_K), M)), the
    arithmetic of ``store_tile_planes`` (the GPU's division may round the last bit otherwise)."""
    M, K = x2.shape
    kt, width = scale_groups(K), SCALE_K.value
    xf = torch.nn.functional.pad(x2.float(), (0, kt * width - K)).view(M, kt, width)
    amax = xf.abs().amax(-1)
    sx = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    t = xf / sx[..., None]
    hi = torch.floor(t + 0.5).clamp(-127, 127)
    lo = torch.floor((t - hi) * 254.0 + 0.5).clamp(-127, 127)
    planes = torch.stack([hi, lo]).view(2, M, kt * width)[..., :K].to(torch.int8)
    return planes, sx.T.contiguous()


if HAS_GLUON:

    @gluon.jit
    def _griddepcontrol(op: gl.constexpr):
        """``griddepcontrol.wait`` (wait for the kernels this one depends on, and their writes) or
        ``griddepcontrol.launch_dependents`` (let the next kernel launch now), as triton_common's pdl_*."""
        gl.inline_asm_elementwise(
            "griddepcontrol." + op + "; // $0", "=r", [], dtype=gl.int32, is_pure=False, pack=1
        )

    @gluon.jit
    def _loader(w_desc, p_desc, s_desc, w_bufs, p_bufs, s_bufs, ready, empty, off_n, n_k, STAGES: gl.constexpr,
                PDL: gl.constexpr, TILED: gl.constexpr):  # fmt: skip
        """Producer warp: tile i of the weights and of the planes (tiled planes: and its group's row scales) into ring
        slot i % STAGES, once the consumer released it; the first STAGES weight tiles before waiting for the
        planes' kernel (PDL)."""
        BK: gl.constexpr = w_desc.block_type.shape[1]
        nbytes: gl.constexpr = w_desc.block_type.nbytes + p_desc.block_type.nbytes + (
            s_desc.block_type.nbytes if TILED else 0
        )  # fmt: skip
        n_pre = gl.minimum(n_k, STAGES)
        for i in range(n_pre):
            mbarrier.expect(ready.index(i), nbytes)
            _tma_load(w_desc, [off_n, i * BK], ready.index(i), w_bufs.index(i))
        if PDL:
            _griddepcontrol("wait")
        for i in range(n_pre):
            _tma_load(p_desc, [0, i * BK], ready.index(i), p_bufs.index(i))
            if TILED:
                _tma_load(s_desc, [i // GROUP_TILES, 0], ready.index(i), s_bufs.index(i))
        for i in range(n_pre, n_k):
            s = i % STAGES
            mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)
            mbarrier.expect(ready.index(s), nbytes)
            _tma_load(w_desc, [off_n, i * BK], ready.index(s), w_bufs.index(s))
            _tma_load(p_desc, [0, i * BK], ready.index(s), p_bufs.index(s))
            if TILED:
                _tma_load(s_desc, [i // GROUP_TILES, 0], ready.index(s), s_bufs.index(s))

    @gluon.jit
    def _k_steps(
        w_bufs, p_bufs, ready, empty, acc_hi, acc_lo, i0, i1, MP: gl.constexpr, STAGES: gl.constexpr
    ):
        """k-steps i0..i1-1 into the int32 accumulators, one step's wgmmas in flight while the slot of the step
        before is released; returns them with the last step's still in flight."""
        for i in range(i0, i1):
            s = i % STAGES
            mbarrier.wait(ready.index(s), (i // STAGES) & 1)
            w = w_bufs.index(s)
            p = p_bufs.index(s)
            acc_hi = warpgroup_mma(w, p.slice(0, MP).permute((1, 0)), acc_hi, is_async=True)
            acc_lo = warpgroup_mma(w, p.slice(MP, MP).permute((1, 0)), acc_lo, is_async=True)
            acc_hi, acc_lo = warpgroup_mma_wait(num_outstanding=2, deps=(acc_hi, acc_lo))
            mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), pred=i > 0)
        return acc_hi, acc_lo

    @gluon.jit
    def _mma(w_bufs, p_bufs, s_bufs, ready, empty, n_k, S_ptr, SX_ptr, B_ptr, off_n, M, N, BN: gl.constexpr,
             MP: gl.constexpr, STAGES: gl.constexpr, HAS_BIAS: gl.constexpr, TILED: gl.constexpr,
             num_warps: gl.constexpr):  # fmt: skip
        """Consumer warpgroup: int32 (BN, MP) = W_tile @ hi_tile.T and W_tile @ lo_tile.T per tile, one
        tile's wgmmas in flight while the slot of the tile before is released; returns the float32 output
        tile, scaled (and biased). The channel scales and bias are asked for before the loop and the row
        scales once the first tile is in (the planes kernel wrote them: that tile's planes came after the
        loader's dependency wait), so no load waits after the last tile (H100: 0.4 us off every product, q/k/v
        at 8 rows 10.6 -> 10.2 us; RESULTS.md "The GEMM's scales asked for before its mainloop").
        ``TILED`` (a row scale per SCALE_K columns: GROUP_TILES k-steps, in each k-step's ring slot): after a
        group's last k-step the accumulators are waited for, scaled into a float32 tile and zeroed."""
        layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, MP, 32]
        )
        offs_n = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, layout))
        offs_m = gl.arange(0, MP, layout=gl.SliceLayout(0, layout))
        sw = gl.load(S_ptr + offs_n, mask=offs_n < N, other=0.0)
        if HAS_BIAS:
            bias = gl.load(B_ptr + offs_n, mask=offs_n < N, other=0.0).to(gl.float32)
        acc_hi = gl.zeros([BN, MP], gl.int32, layout)
        acc_lo = gl.zeros([BN, MP], gl.int32, layout)
        mbarrier.wait(ready.index(0), 0)
        if TILED:
            # a group's k-steps as the row-scaled loop runs them, then its products waited for, scaled by the
            # group's row scales (its last slot's) and the accumulators zeroed: no branch inside the k-loop
            # (a conditional fold there made ptxas wait for every k-step's wgmmas)
            out = gl.zeros([BN, MP], gl.float32, layout)
            for g0 in range(0, n_k, GROUP_TILES):
                g1 = gl.minimum(g0 + GROUP_TILES, n_k)
                acc_hi, acc_lo = _k_steps(w_bufs, p_bufs, ready, empty, acc_hi, acc_lo, g0, g1, MP, STAGES)
                acc_hi, acc_lo = warpgroup_mma_wait(num_outstanding=0, deps=(acc_hi, acc_lo))
                sxg = s_bufs.index((g1 - 1) % STAGES).slice(0, MP, dim=1).load(layout)
                out += (acc_hi.to(gl.float32) + acc_lo.to(gl.float32) * (1.0 / LO_STEPS)) * sxg
                acc_hi = gl.zeros([BN, MP], gl.int32, layout)
                acc_lo = gl.zeros([BN, MP], gl.int32, layout)
            out = out * sw[:, None]
        else:
            sx = gl.load(SX_ptr + offs_m, mask=offs_m < M, other=0.0)
            acc_hi, acc_lo = _k_steps(w_bufs, p_bufs, ready, empty, acc_hi, acc_lo, 0, n_k, MP, STAGES)
            acc_hi, acc_lo = warpgroup_mma_wait(num_outstanding=0, deps=(acc_hi, acc_lo))
            out = (
                (acc_hi.to(gl.float32) + acc_lo.to(gl.float32) * (1.0 / LO_STEPS)) * sw[:, None] * sx[None, :]
            )
        if HAS_BIAS:
            out += bias[:, None]
        return (out,)

    @gluon.jit
    def _w8_ws_kernel(w_desc, p_desc, s_desc, S_ptr, SX_ptr, B_ptr, Y_ptr, M, N, stride_ym, K_TILES,
                      MP: gl.constexpr, STAGES: gl.constexpr, HAS_BIAS: gl.constexpr, PDL: gl.constexpr,
                      TILED: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
        BN: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        if PDL:
            # the next kernel may launch now: it waits for this one before it reads our output, and a next
            # product's GEMM sends its first weight tiles meanwhile (RESULTS.md "W8A16 at 2-32 rows: the GEMM
            # lets the next kernel launch at its start": H100, q/k/v at 8 rows 11.6 -> 10.5 us in a chain)
            _griddepcontrol("launch_dependents")
        off_n = gl.program_id(0) * BN
        w_bufs = gl.allocate_shared_memory(gl.int8, [STAGES, BN, BK], w_desc.layout)
        p_bufs = gl.allocate_shared_memory(gl.int8, [STAGES, 2 * MP, BK], p_desc.layout)
        # tiled planes: each k-step's row scales (one row of SX) travel in the ring slot with its planes
        s_bufs = gl.allocate_shared_memory(gl.float32, [STAGES if TILED else 1, 1, SX_COLS], s_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(ready.index(s), count=1)
            mbarrier.init(empty.index(s), count=1)
        # (Triton 3.6 takes the default partition's results as a tuple, not a lone tensor)
        (out,) = gl.warp_specialize(
            [
                (_mma, (w_bufs, p_bufs, s_bufs, ready, empty, K_TILES, S_ptr, SX_ptr, B_ptr, off_n, M, N, BN, MP,
                        STAGES, HAS_BIAS, TILED, num_warps)),
                (_loader, (w_desc, p_desc, s_desc, w_bufs, p_bufs, s_bufs, ready, empty, off_n, K_TILES, STAGES, PDL,
                           TILED)),
            ],
            [1],
            [24],
        )  # fmt: skip
        layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, MP, 32]
        )
        offs_n = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, layout))
        offs_m = gl.arange(0, MP, layout=gl.SliceLayout(0, layout))
        mask = (offs_m[None, :] < M) & (offs_n[:, None] < N)
        gl.store(
            Y_ptr + offs_m[None, :] * stride_ym + offs_n[:, None], out.to(Y_ptr.dtype.element_ty), mask=mask
        )


def stages_for(MP: int, tiled: bool = False) -> int:
    """Ring depth: as many (weight + planes (+ row scales)) tiles as fit SMEM_BUDGET, at most MAX_STAGES."""
    return min(
        MAX_STAGES, SMEM_BUDGET // (BLOCK_N * BLOCK_K + 2 * MP * BLOCK_K + (4 * WS_ROWS if tiled else 0))
    )


def rows_fit(x2: torch.Tensor) -> bool:
    """Whether rows x2 (M, K) can be this path's input: Gluon present, a Hopper GPU (wgmma and TMA are sm_90's),
    2..WS_ROWS 16-bit rows, K a multiple of 16 (TMA's 16-byte row strides)."""
    M, K = x2.shape
    return (
        2 <= M <= WS_ROWS and gluon_hopper(x2) and x2.dtype in (torch.float16, torch.bfloat16) and K % 16 == 0
    )


def available(x2: torch.Tensor, qweight: torch.Tensor) -> bool:
    """Whether this product can take the path: ``rows_fit`` and contiguous weight rows."""
    return rows_fit(x2) and qweight.stride(1) == 1 and qweight.stride(0) % 16 == 0


@functools.cache
def _planes_buffers(device: torch.device, MP: int, K: int, tiled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The planes and scales (per row (MP,), or tiled (cdiv(K, SCALE_K), SX_COLS)) of one (MP, K), kept for the
    process (never evicted: a CUDA graph replays the addresses it captured), and every product of that shape
    on the stream writes them before reading (one stream at a time: the engine's)."""
    shape = (scale_groups(K), WS_ROWS) if tiled else (MP,)
    return torch.empty((2, MP, K), dtype=torch.int8, device=device), torch.empty(shape, dtype=torch.float32,
                                                                                   device=device)  # fmt: skip


# (device, MP, K, tiled) -> (rows, their version): the rows whose planes the kernel before the product wrote into
# that shape's buffers (``planes_target``, e.g. the RMSNorm kernel for the q/k/v and gate/up projections),
# held so that their memory cannot be handed to other rows meanwhile
_MADE: dict[tuple, tuple[torch.Tensor, int]] = {}


def planes_target(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The planes and row scales buffers the kernel writing ``rows`` (M, K) should also fill (with rows' planes,
    as ``split_planes`` would, bit for bit) so that the next product on them skips the planes kernel, or None
    where the rows cannot take this path. The writer calls ``planes_written(rows)`` after its launch."""
    if not rows_fit(rows):
        return None
    return _planes_buffers(*_planes_key(rows))


def _planes_key(rows: torch.Tensor) -> tuple:
    """The planes buffers' key of rows (M, K): (device, MP, K, tiled), the format ``planes_tiled`` says."""
    return (rows.device, row_bucket(rows.shape[0]), rows.shape[1], planes_tiled())


def _version(t: torch.Tensor) -> int | None:
    """t's version counter (what torch's in-place writes bump); None for an inference-mode tensor, which has
    none (the engine's: its rows are written once, by the kernel, and read by the next product)."""
    return None if t.is_inference() else t._version


def planes_written(rows: torch.Tensor) -> None:
    """Record that the kernel just launched wrote ``rows``' planes into ``planes_target(rows)``'s buffers."""
    _MADE[_planes_key(rows)] = (rows, _version(rows))


def _planes_made(x2: torch.Tensor, key: tuple) -> bool:
    """Whether the buffers of ``key`` hold x2's planes (written with it, x2 unchanged since by torch)."""
    made = _MADE.get(key)
    if made is None:
        return False
    rows, version = made
    return (
        rows.data_ptr() == x2.data_ptr()
        and rows.shape == x2.shape
        and rows.stride() == x2.stride()
        and rows.dtype == x2.dtype
        and version == _version(x2)
    )


_DESCRIPTORS: dict[tuple, object] = {}


@functools.cache
def _no_tile_scales(device: torch.device) -> torch.Tensor:
    """A (1, SX_COLS) float32 stand-in for the tiled scales' descriptor of a GEMM on row-scaled planes."""
    return torch.zeros((1, WS_ROWS), dtype=torch.float32, device=device)


def _descriptor(t: torch.Tensor, block: list[int]):
    """A TMA descriptor of t, kept per (address, shape, strides, block): the weights' and planes' never move."""
    key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), tuple(block), t.device, t.dtype)
    desc = _DESCRIPTORS.get(key)
    if desc is None:
        if t.dtype == torch.int8:
            layout = gl.NVMMASharedLayout.get_default_for(block, gl.int8)
        else:  # the tiled scales: read by plain shared loads, unswizzled
            layout = gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=32, rank=2)
        desc = _DESCRIPTORS[key] = TensorDescriptor.from_tensor(t, block, layout)
    return desc


def ws_linear(
    x2: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, y: torch.Tensor
) -> torch.Tensor:
    """y (M, N) = x2 (M, K) @ dequant(qweight, scale).T + bias, for ``available`` products: the planes kernel,
    then the GEMM (the GEMM alone where the kernel that wrote x2 wrote its planes too: ``planes_written``)."""
    M, K = x2.shape
    key = _planes_key(x2)
    planes, sx = _planes_buffers(*key)
    pdl = pdl_enabled(x2)
    if not _planes_made(x2, key):
        # (this product's own planes: the rows the kernel before made them for, if any, are overwritten)
        _MADE.pop(key, None)
        split_planes(x2, planes, sx, pdl)
    return planes_gemm(planes, sx, M, qweight, scale, bias, y, pdl)


def planes_gemm(
    planes: torch.Tensor,
    sx: torch.Tensor,
    M: int,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    pdl: bool = False,
) -> torch.Tensor:
    """The GEMM alone: y (M, N) from the first M rows of ``split_planes``' planes (2, MP, K) and scales sx
    (per row, or tiled: (cdiv(K, SCALE_K), SX_COLS)); ``pdl``: launched programmatically dependent on the planes
    kernel (inside a CUDA graph capture)."""
    MP, K = planes.shape[1:]
    N = qweight.shape[0]
    tiled = sx.dim() == 2
    # the tiled scales' descriptor: a (1, SX_COLS) box, one group's row scales (a stand-in where they are per
    # row: the kernel never loads it)
    s_desc = _descriptor(sx if tiled else _no_tile_scales(sx.device), [1, WS_ROWS])
    _w8_ws_kernel[(triton.cdiv(N, BLOCK_N),)](
        _descriptor(qweight, [BLOCK_N, BLOCK_K]), _descriptor(planes.view(2 * MP, K), [2 * MP, BLOCK_K]), s_desc,
        scale, sx, bias if bias is not None else scale, y, M, N, y.stride(0), triton.cdiv(K, BLOCK_K), MP=MP,
        STAGES=stages_for(MP, tiled), HAS_BIAS=bias is not None, PDL=pdl, TILED=tiled, num_warps=4,
        launch_pdl=pdl,
    )  # fmt: skip
    return y
