"""W8A16 at prefill rows on Hopper: a warp-specialized Gluon GEMM that converts the weights in registers.

y = x @ (qweight * scale[:, None]).T + bias for many 16-bit rows (a prefill chunk), x (M, K) bf16/fp16,
qweight (N, K) int8, scale (N,) float32 per output channel. The plain-Triton GEMMs reached 0.59-0.75x of
cuBLAS bf16 at 4,096 rows because the weight conversion ran between the wgmmas instead of beside them
(RESULTS.md "Batch-1 decode at 32k and W8A16 at 4,096 rows: where the limits are"). Here (as Machete does for
Hopper) the operands are swapped so that the int8 weight tile is wgmma's A operand, the one that may come
from registers: acc (weight rows, x rows) = W_tile @ X_tile.T. Per tile of BN output channels x BM rows:

- one producer warp (``_loader``, a worker partition) brings the int8 weight tile (BN, BK) and the x tile
  (BM, BK) by TMA into a ring of STAGES shared-memory slots (``ready`` barriers: bytes landed; ``empty``:
  the consumers are done with the slot);
- two consumer warpgroups (``_consumer``, the default partition of 8 warps), each owning BN / 2 = 64 of the
  tile's weight rows and reading the same x tile: each issues k-step i's wgmmas, then loads k-step i + 1's
  int8 fragment from shared memory into registers and converts it to 16 bits (exact; Triton lowers the
  conversion to byte permutes and a packed subtract) while steps i - 1 and i are in flight, then waits for
  step i - 1 and releases its slot (``_step_early``, three fragments live; ``Config.early=False``: the
  conversion after the wait, ``_step``). No per-element scale: the per-channel scale multiplies the
  accumulator's rows (the output channels) in the epilogue;
- epilogue: acc * scale (+ bias), transposed through shared memory (stmatrix) into y (M, N) by a TMA store
  that stays in flight while the next tile's main loop runs.

The grid is persistent (``Config.persistent``: one program per multiprocessor walking output tiles, GROUP row
tiles at a time so concurrent tiles share operands in L2) or one program per tile. TMA zero-fills what lies
past M, N or K and clips the stores, so no shape needs to be a multiple of the tiles (K % 16 == 0 and
N % 8 == 0 for TMA's 16-byte strides). GPU only (sm_90); Triton's CPU interpreter cannot run Gluon, so CI
compiles the kernel for sm_90 (tests/kernels/hopper_compile.py) and the GPU test checks it against the
dequantized reference. Not on the product path: ``benchmarks/w8_gluon.py`` times it against cuBLAS.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton

from .gluon_common import (
    HAS_GLUON,
    TensorDescriptor,
    fence_async_shared,
    gl,
    gluon,
    gluon_hopper,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from .gluon_common import barrier as _barrier
from .gluon_common import tma_load as _tma_load
from .gluon_common import tma_store as _tma_store

MIN_ROWS = 256  # below this the few-rows and planes paths of int8_matmul are the candidates
SMEM_LIMIT = 227 * 1024  # an H100/H200's shared memory a block


@dataclass(frozen=True)
class Config:
    """A variant of the GEMM. block_n: output channels a tile (128: two consumer warpgroups of 64 rows; 128
    rows each would need more than the 240 registers a thread the consumers get, and ptxas serializes the
    wgmmas); block_m: x rows a tile (the wgmma N, <= 256); block_k: K a ring slot (64: a 128-byte row of
    16-bit x, TMA's widest swizzle); stages: ring slots; persistent: one program per multiprocessor (else one
    per tile); group: row tiles walked together; loader_regs: the producer warp's registers a thread (the
    consumers get what is left of the kernel's 168 x 384 threads); early: the next fragment converted while
    two wgmma groups are in flight, before the wait for the older one (``_step_early``; else after it,
    ``_step``): on an H100 the tensor pipe busy 80.7% of the cycles instead of 77.5% (o_proj, ncu), 0-7%
    faster at 4,096 rows but q/k/v in one run of two (RESULTS "W8A16 at 4,096 rows as a Gluon GEMM"), and
    it needs the 4-slot ring (3 slots: 0.67-0.84x of cuBLAS, against 0.82-0.98x converting after the wait);
    stagger: where in K each tile's k-steps start (``_loader``; 0: all at k = 0; on an H200 no better at
    1,024 rows and -3..+7% at 4,096: RESULTS "An H200 at last")."""

    block_n: int = 128
    block_m: int = 256
    block_k: int = 64
    stages: int = 4
    persistent: bool = True
    group: int = 8
    loader_regs: int = 40
    early: bool = True
    stagger: int = 0

    @property
    def name(self) -> str:
        return (
            f"{self.block_n}x{self.block_m}x{self.block_k} {self.stages}st "
            f"{'persistent' if self.persistent else 'one tile a program'} g{self.group}"
            f"{' early' if self.early else ''}{f' stagger {self.stagger}' if self.stagger else ''}"
        )

    def smem_bytes(self, elem: int = 2) -> int:
        """Shared memory: the ring (int8 weights + 16-bit x a slot), the epilogue's y tile, the barriers."""
        ring = self.stages * (self.block_n * self.block_k + self.block_m * self.block_k * elem)
        return ring + self.block_m * self.block_n * elem + 16 * self.stages + 256


DEFAULT = Config()
# the GPU script's variants (benchmarks/w8_gluon.py), each within SMEM_LIMIT
VARIANTS = (
    DEFAULT,
    Config(early=False),
    Config(stages=3, early=False),
    Config(persistent=False),
    Config(group=4),
    Config(group=16),
    Config(block_m=128, stages=6),
    Config(block_m=128, stages=6, persistent=False),
    Config(stagger=1),
    Config(stagger=4),
    Config(block_m=128, stages=6, stagger=1),
    Config(block_m=128, stages=6, stagger=4),
    Config(block_m=256, stages=4, group=16, stagger=1),
)


if HAS_GLUON:

    @gluon.jit
    def _tile(tile, tiles_m, tiles_n, GROUP: gl.constexpr):
        """(pid_m, pid_n) of a tile id: GROUP row tiles walk the weight tiles together (operands stay in L2)."""
        in_group = GROUP * tiles_n
        first_m = (tile // in_group) * GROUP
        size_m = gl.minimum(tiles_m - first_m, GROUP)
        return first_m + (tile % in_group) % size_m, (tile % in_group) // size_m

    @gluon.jit
    def _loader(w_desc, x_desc, w_bufs, x_bufs, ready, empty, tiles_m, tiles_n, n_k, GROUP: gl.constexpr,
                STAGGER: gl.constexpr):  # fmt: skip
        """Producer warp: k-step i (counted over all of the program's tiles) into slot i % STAGES once the
        consumers released it; the weight tile and the x tile complete one ``ready`` barrier. STAGGER > 0: a
        tile's k-steps start at ((pid_m + pid_n) * STAGGER) % n_k and wrap around, so that the programs
        sharing an x tile (or a weight tile) at the same moment do not ask L2 for the same lines together
        (the consumers do not care in which order the k-steps come: the sum is the same)."""
        STAGES: gl.constexpr = w_bufs.shape[0]
        BN: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        BM: gl.constexpr = x_desc.block_type.shape[0]
        nbytes: gl.constexpr = w_desc.block_type.nbytes + x_desc.block_type.nbytes
        i = 0
        for tile in range(gl.program_id(0), tiles_m * tiles_n, gl.num_programs(0)):
            pid_m, pid_n = _tile(tile, tiles_m, tiles_n, GROUP)
            k0 = ((pid_m + pid_n) * STAGGER) % n_k
            for kq in range(n_k):
                kk = (kq + k0) % n_k
                s = i % STAGES
                # a fresh barrier counts as having completed the phase before its first: no wait in round 0
                mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)
                mbarrier.expect(ready.index(s), nbytes)
                _tma_load(w_desc, [pid_n * BN, kk * BK], ready.index(s), w_bufs.index(s))
                _tma_load(x_desc, [pid_m * BM, kk * BK], ready.index(s), x_bufs.index(s))
                i += 1

    @gluon.jit
    def _fragment(w_bufs, ready, i, layout: gl.constexpr, dtype: gl.constexpr):
        """The int8 weight tile of k-step i, once landed, as the wgmma A operand in 16 bits (each warpgroup
        its own rows: the layout's)."""
        STAGES: gl.constexpr = w_bufs.shape[0]
        s = i % STAGES
        mbarrier.wait(ready.index(s), (i // STAGES) & 1)
        return w_bufs.index(s).load(layout).to(dtype)

    @gluon.jit
    def _step(
        acc, a, x_bufs, w_bufs, ready, empty, i, first, last, layout: gl.constexpr, dtype: gl.constexpr
    ):
        """K-step i: issue wgmma i (A: fragment ``a``, converted during step i - 1), wait for wgmma i - 1 and
        release its slot (if it was this tile's), then load and convert the fragment of step i + 1 while
        wgmma i runs (the tile's last step reloads its own: landed, and not released yet)."""
        STAGES: gl.constexpr = w_bufs.shape[0]
        acc = warpgroup_mma(a, x_bufs.index(i % STAGES).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
        # every warp's wgmma i - 1 is done before the slot is released (the arrive is one thread's), and the
        # fence orders our generic-proxy reads of the slot before the TMA's (async proxy) next writes
        _barrier()
        fence_async_shared()
        mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), pred=i > first)
        return acc, _fragment(w_bufs, ready, gl.minimum(i + 1, last), layout, dtype)

    @gluon.jit
    def _step_early(acc, a_prev, a_cur, x_bufs, w_bufs, ready, empty, i, first, last, layout: gl.constexpr,
                    dtype: gl.constexpr):  # fmt: skip
        """K-step i, the next fragment converted while two wgmma groups are in flight: issue wgmma i (A:
        ``a_cur``), load and convert the fragment of step i + 1, then wait for wgmma i - 1 (``a_prev``'s
        registers kept until then: the wait's deps) and release its slot. Returns (acc, a_cur, next)."""
        STAGES: gl.constexpr = w_bufs.shape[0]
        acc = warpgroup_mma(a_cur, x_bufs.index(i % STAGES).permute((1, 0)), acc, is_async=True)
        a_next = _fragment(w_bufs, ready, gl.minimum(i + 1, last), layout, dtype)
        acc, a_prev = warpgroup_mma_wait(num_outstanding=1, deps=(acc, a_prev))
        _barrier()
        fence_async_shared()
        mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), pred=i > first)
        return acc, a_cur, a_next

    @gluon.jit
    def _epilogue(acc, y_buf, y_desc, S_ptr, B_ptr, N, pid_m, pid_n, HAS_BIAS: gl.constexpr,
                  acc_layout: gl.constexpr):  # fmt: skip
        """A tile's acc (BN weight rows, BM x rows) times the channels' scales (+ bias) into y (M, N) by a TMA
        store through ``y_buf``; the store stays in flight (the caller waits for it after its last tile)."""
        BN: gl.constexpr = y_buf.shape[1]
        BM: gl.constexpr = y_buf.shape[0]
        offs_n = pid_n * BN + gl.arange(0, BN, layout=gl.SliceLayout(1, acc_layout))
        out = acc * gl.load(S_ptr + offs_n, mask=offs_n < N, other=0.0)[:, None]
        if HAS_BIAS:
            out += gl.load(B_ptr + offs_n, mask=offs_n < N, other=0.0).to(gl.float32)[:, None]
        # the previous tile's store must have read the buffer before it is written again; its transposed
        # view takes acc (channels, rows) as y's (rows, channels) tile
        tma.store_wait(0)
        y_buf.permute((1, 0)).store(out.to(y_buf.dtype))
        fence_async_shared()
        _tma_store(y_desc, [pid_m * BM, pid_n * BN], y_buf)

    @gluon.jit
    def _consumer(w_bufs, x_bufs, y_buf, ready, empty, y_desc, S_ptr, B_ptr, N, tiles_m, tiles_n, n_k,
                  GROUP: gl.constexpr, HAS_BIAS: gl.constexpr, EARLY: gl.constexpr,
                  num_warps: gl.constexpr):  # fmt: skip
        """The consumer warpgroups (the default partition): acc (BN weight rows, BM x rows) per tile, each
        warpgroup BN / (num_warps / 4) of the rows; the k-steps two at a time (``_step``), then the epilogue."""
        STAGES: gl.constexpr = w_bufs.shape[0]
        BN: gl.constexpr = w_bufs.shape[1]
        BM: gl.constexpr = x_bufs.shape[1]
        dtype: gl.constexpr = x_bufs.dtype
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BM, 16]
        )
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)
        i = 0
        for tile in range(gl.program_id(0), tiles_m * tiles_n, gl.num_programs(0)):
            pid_m, pid_n = _tile(tile, tiles_m, tiles_n, GROUP)
            first = i
            last = i + n_k - 1
            acc = gl.zeros([BN, BM], gl.float32, acc_layout)
            a0 = _fragment(w_bufs, ready, i, a_layout, dtype)
            if EARLY:
                # three k-steps an iteration: three fragments live (two read by wgmmas in flight, one being
                # written), back in the same registers after three steps
                ap = a0
                ac = a0
                for _ in range(n_k // 3):
                    acc, ap, ac = _step_early(acc, ap, ac, x_bufs, w_bufs, ready, empty, i, first, last, a_layout,
                                              dtype)  # fmt: skip
                    acc, ap, ac = _step_early(acc, ap, ac, x_bufs, w_bufs, ready, empty, i + 1, first, last,
                                              a_layout, dtype)  # fmt: skip
                    acc, ap, ac = _step_early(acc, ap, ac, x_bufs, w_bufs, ready, empty, i + 2, first, last,
                                              a_layout, dtype)  # fmt: skip
                    i += 3
                for _ in range(n_k % 3):
                    acc, ap, ac = _step_early(acc, ap, ac, x_bufs, w_bufs, ready, empty, i, first, last, a_layout,
                                              dtype)  # fmt: skip
                    i += 1
                acc, ap, ac = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ap, ac))
            else:
                # NOTE: two k-steps an iteration, their fragments in two variables: a fragment carried through
                # the loop would be rewritten while the wgmma that reads it is still in flight, and ptxas then
                # serializes every wgmma ("insufficient register resources")
                for _ in range(n_k // 2):
                    acc, a1 = _step(acc, a0, x_bufs, w_bufs, ready, empty, i, first, last, a_layout, dtype)
                    acc, a0 = _step(
                        acc, a1, x_bufs, w_bufs, ready, empty, i + 1, first, last, a_layout, dtype
                    )
                    i += 2
                if n_k % 2 == 1:
                    acc, a1 = _step(acc, a0, x_bufs, w_bufs, ready, empty, i, first, last, a_layout, dtype)
                    i += 1
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
            _barrier()
            fence_async_shared()
            mbarrier.arrive(empty.index((i - 1) % STAGES))

            _epilogue(acc, y_buf, y_desc, S_ptr, B_ptr, N, pid_m, pid_n, HAS_BIAS, acc_layout)
        tma.store_wait(0)

    @gluon.jit
    def _w8_gemm_kernel(w_desc, x_desc, y_desc, S_ptr, B_ptr, M, N, K, STAGES: gl.constexpr, GROUP: gl.constexpr,
                        HAS_BIAS: gl.constexpr, LOADER_REGS: gl.constexpr, EARLY: gl.constexpr,
                        STAGGER: gl.constexpr, num_warps: gl.constexpr):  # fmt: skip
        """y (M, N) = x (M, K) @ (W (N, K) int8 * S[:, None]).T (+ B): one program walks output tiles (its
        id, then every num_programs-th), a producer warp and num_warps / 4 consumer warpgroups."""
        BN: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        BM: gl.constexpr = x_desc.block_type.shape[0]
        w_bufs = gl.allocate_shared_memory(gl.int8, [STAGES, BN, BK], w_desc.layout)
        x_bufs = gl.allocate_shared_memory(x_desc.dtype, [STAGES, BM, BK], x_desc.layout)
        y_buf = gl.allocate_shared_memory(y_desc.dtype, [BM, BN], y_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(ready.index(s), count=1)
            mbarrier.init(empty.index(s), count=1)
        tiles_m = gl.cdiv(M, BM)
        tiles_n = gl.cdiv(N, BN)
        n_k = gl.cdiv(K, BK)
        # NOTE: both consumer warpgroups are the default partition: ptxas (CUDA 12.8) kept a wgmma loop in a
        # worker partition to the kernel's 168 registers a thread at 384 threads and serialized its wgmmas
        gl.warp_specialize(
            [
                (_consumer, (w_bufs, x_bufs, y_buf, ready, empty, y_desc, S_ptr, B_ptr, N, tiles_m, tiles_n, n_k,
                             GROUP, HAS_BIAS, EARLY, num_warps)),
                (_loader, (w_desc, x_desc, w_bufs, x_bufs, ready, empty, tiles_m, tiles_n, n_k, GROUP, STAGGER)),
            ],
            [1],
            [LOADER_REGS],
        )  # fmt: skip


@functools.lru_cache(maxsize=16)
def _sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


# the row tiles ``pick`` chooses from, each with the deepest ring that fits SMEM_LIMIT beside its y tile
TILES = (Config(block_m=256, stages=4), Config(block_m=128, stages=6))
# a tile's fixed cost in x rows (its epilogue, the ring's fill, the wgmma issue of a narrower tile)
TILE_COST_ROWS = 64


def pick(M: int, N: int, sms: int) -> Config:
    """The row tile for M rows x N channels on ``sms`` multiprocessors: the fewest rows a program computes
    end to end, waves x (block_m + TILE_COST_ROWS), the wider tile on a tie. A persistent grid pays for its
    last, partly filled wave in full: o_proj (32 channel tiles) at 512 rows is 64 tiles of 256 rows, half
    the multiprocessors idle, or 128 tiles of 128 rows."""

    def cost(cfg: Config) -> int:
        tiles = triton.cdiv(M, cfg.block_m) * triton.cdiv(N, cfg.block_n)
        return triton.cdiv(tiles, sms) * (cfg.block_m + TILE_COST_ROWS)

    return min(TILES, key=lambda cfg: (cost(cfg), -cfg.block_m))


def available(x2: torch.Tensor, qweight: torch.Tensor) -> bool:
    """Whether this product can take the kernel: Gluon present, a Hopper GPU (wgmma and TMA are sm_90's),
    >= MIN_ROWS 16-bit rows with unit column stride, K % 16 == 0 and N % 8 == 0 (TMA's 16-byte strides of
    the weight, x and y rows) and weight rows with unit column stride."""
    M, K = x2.shape
    N = qweight.shape[0]
    return (
        M >= MIN_ROWS
        and gluon_hopper(x2)
        and x2.dtype in (torch.float16, torch.bfloat16)
        and K % 16 == 0
        and N % 8 == 0
        and x2.stride(1) == 1
        and x2.stride(0) % 8 == 0
        and qweight.stride(1) == 1
        and qweight.stride(0) % 16 == 0
    )


_TORCH_TO_GL = {}
if HAS_GLUON:
    _TORCH_TO_GL = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16, torch.int8: gl.int8}


def _descriptor(t: torch.Tensor, block: list[int]):
    layout = gl.NVMMASharedLayout.get_default_for(block, _TORCH_TO_GL[t.dtype])
    return TensorDescriptor.from_tensor(t, block, layout)


def gemm_w8(
    x2: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: Config = DEFAULT,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """y (M, N) = x2 (M, K) @ (qweight (N, K) int8 * scale[:, None]).T + bias, in x2's dtype, for
    ``available`` products; ``out``: a contiguous (M, N) tensor of x2's dtype to write (else a new one)."""
    M, K = x2.shape
    N, Kw = qweight.shape
    if Kw != K or scale.shape != (N,) or (bias is not None and bias.shape != (N,)):
        raise ValueError(f"shapes do not match: x2 {tuple(x2.shape)}, qweight {tuple(qweight.shape)}, "
                         f"scale {tuple(scale.shape)}, bias {None if bias is None else tuple(bias.shape)}")  # fmt: skip
    if qweight.dtype != torch.int8 or scale.dtype != torch.float32:
        raise ValueError(f"qweight must be int8 and scale float32, got {qweight.dtype}, {scale.dtype}")
    if config.block_n != 128 or config.block_m not in (64, 128, 256) or config.block_k != 64:
        raise ValueError(f"config tiles must be block_n 128, block_m 64/128/256, block_k 64: {config}")
    if config.smem_bytes() > SMEM_LIMIT:
        raise ValueError(
            f"config needs {config.smem_bytes()} bytes of shared memory, > {SMEM_LIMIT}: {config}"
        )
    y = torch.empty((M, N), dtype=x2.dtype, device=x2.device) if out is None else out
    assert y.shape == (M, N) and y.dtype == x2.dtype and y.is_contiguous(), f"{y.shape=} {y.dtype=}"
    cfg = config
    tiles = triton.cdiv(M, cfg.block_m) * triton.cdiv(N, cfg.block_n)
    grid = (min(tiles, _sms(x2.device)) if cfg.persistent else tiles,)
    _w8_gemm_kernel[grid](
        _descriptor(qweight, [cfg.block_n, cfg.block_k]), _descriptor(x2, [cfg.block_m, cfg.block_k]),
        _descriptor(y, [cfg.block_m, cfg.block_n]), scale, bias if bias is not None else scale, M, N, K,
        STAGES=cfg.stages, GROUP=cfg.group, HAS_BIAS=bias is not None, LOADER_REGS=cfg.loader_regs,
        EARLY=cfg.early, STAGGER=cfg.stagger, num_warps=8,
    )  # fmt: skip
    return y


def gemm_w8_ref(
    x2: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The exact product in float32: x2 @ (qweight * scale[:, None]).T (+ bias)."""
    y = x2.float() @ (qweight.float() * scale.float()[:, None]).T
    return y if bias is None else y + bias.float()
