"""Executes a scheduled batch on the model: packs tokens, builds paged-attention metadata, runs one
forward for all sequences (prefill chunks and decodes together) and returns the sampling rows' logits.

Decode-only batches replay a CUDA graph captured for the next larger batch size (padding rows write
their K/V into a reserved dummy block and attend to one token of it); everything else runs eagerly.
Inputs are staged in pinned host memory (numpy views) and uploaded asynchronously, so a step issues
no host synchronization: the caller decides when to wait for its results.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import torch

import kernels

from .config import ModelConfig
from .model import AttentionMetadata, GlmModel, LayerCache
from .staging import Staging

log = logging.getLogger(__name__)

KV_DTYPES = ("auto", "int8")

Seq = tuple[list[int], int, int, list[int], bool]  # (token_ids, start, n, block_ids, sample)


def kv_bytes_per_block(cfg: ModelConfig, block_size: int, elem_size: int, int8: bool) -> int:
    per_layer = 2 * block_size * cfg.num_kv_heads * cfg.head_dim * (1 if int8 else elem_size)
    if int8:
        per_layer += 2 * block_size * cfg.num_kv_heads * 4  # float32 scales
    return per_layer * cfg.num_layers


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """Decode batch sizes that get a CUDA graph: 1, 2, 4, 8, then every multiple of 8, up to max_num_seqs."""
    sizes = [s for s in (1, 2, 4, 8) if s < max_num_seqs] + list(range(8, max_num_seqs, 8))[1:]
    return sorted(set(sizes) | {max_num_seqs})


def next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def prefill_graph_sizes(max_tokens: int) -> list[int]:
    """Padded token counts that get a one-sequence prefill graph: powers of two from 16 to max_tokens."""
    return [t for t in (16 << i for i in range(16)) if t <= max_tokens]


class DecodeInputs:
    """Where a decode graph's inputs sit in one int64 buffer, so that a replay uploads them with ONE copy:
    [feed (S) | ids (S) | idx (S) | pos (S) | slots (S) | lens (S int32) | tables (S x W int32)], S rows
    (max_num_seqs), W table columns. The runner keeps one such buffer on the device (its first 2S words
    are ``feed``: the last sampled ids, then a replay's host-side ids) and one in pinned host memory, laid
    out alike; rows 0..bs-1 of a bs-row replay are the words [S, end(bs)).

    NOTE: a batch-1 INT8 decode step spent ~18-20 us of GPU time in six separate small uploads between
    two replays (H200 trace, RESULTS.md "What the engine runs between two batch-1 decode replays")."""

    FIELDS = ("feed", "ids", "idx", "pos", "slots")

    def __init__(self, rows: int, width: int) -> None:
        self.rows, self.width = rows, width
        self.lens_at = len(self.FIELDS) * rows
        self.tables_at = self.lens_at + -(-rows // 2)
        self.words = self.tables_at + -(-rows * width // 2)

    def end(self, bs: int) -> int:
        """One past the last word that rows 0..bs-1 use (their table rows end the span)."""
        return self.tables_at + -(-bs * self.width // 2)

    def views(self, buf: torch.Tensor) -> dict[str, torch.Tensor]:
        S, W = self.rows, self.width
        out = {name: buf[i * S : (i + 1) * S] for i, name in enumerate(self.FIELDS)}
        out["lens"] = buf[self.lens_at : self.tables_at].view(torch.int32)[:S]
        out["tables"] = buf[self.tables_at : self.words].view(torch.int32)[: S * W].view(S, W)
        return out


def graphs_supported(device: torch.device) -> bool:
    """CUDA graphs need a CUDA device and the Triton kernels (the torch references sync on the host)."""
    return (
        device.type == "cuda"
        and kernels.dispatch.backend() != "torch"
        and kernels.dispatch.triton_available()
    )


class ModelRunner:
    """Owns the paged KV tensors. Contract: `execute(seqs)` takes (token_ids, start, n, block_ids, sample)
    per sequence (run token_ids[start:start+n], whose K/V go to block_ids) and returns float32 logits
    (R, V) for the R sequences with sample=True, in order. The logits are valid until the next call
    (a graph's output buffer is reused) and may still be in flight on the device.

    Block ids are 0..num_blocks-1; one more physical block (`dummy_block`) takes the padding rows of
    graph replays. Between calls a sequence's block list only grows in place (the KV manager's
    contract), so a row whose list is the same object as in the last call uploads only new entries.

    Token ids still on the device: `feed_tokens(t)` keeps the last sampled ids (R,) in a device buffer;
    `execute(seqs, feed_rows)` with feed_rows[i] = j >= 0 runs sequence i's first token as the j-th of
    them (its host value is a placeholder), so a decode step can be launched before the previous step's
    ids have reached the host. Stream order makes the read see that step's ids.
    """

    def __init__(
        self,
        model: GlmModel,
        num_blocks: int,
        block_size: int,
        kv_cache_dtype: str = "auto",
        *,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 2048,
        max_model_len: int | None = None,
        batch_invariant: bool = False,
    ) -> None:
        if kv_cache_dtype not in KV_DTYPES:
            raise ValueError(
                f"unsupported kv_cache_dtype {kv_cache_dtype!r}; choose one of {', '.join(KV_DTYPES)}"
            )
        self.model = model
        # steps with prefill tokens compute each token independently of the step's shape (decode steps
        # keep their fast one-row matmuls: a request decodes alone or in a batch either way)
        self.batch_invariant = batch_invariant
        self.max_num_seqs = max_num_seqs
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.dummy_block = num_blocks
        self.device = model.device
        self.caches = _allocate_caches(model, num_blocks + 1, block_size, kv_cache_dtype == "int8")
        self.max_model_len = max_model_len or num_blocks * block_size
        self.table_width = -(-self.max_model_len // block_size)  # blocks of the longest sequence
        self.staging = Staging(self.device)
        self.decode_inputs = DecodeInputs(max_num_seqs, self.table_width)
        self._d_dec = torch.zeros(self.decode_inputs.words, dtype=torch.int64, device=self.device)
        self._d_views = self.decode_inputs.views(self._d_dec)
        # [0, S): the last sampled token ids (feed_tokens); [S, 2S): a graph replay's host-side ids
        self.feed = self._d_dec[: 2 * max_num_seqs]
        # after a decode graph replay: its rows' greedy ids (argmax of the logits, computed in the graph and
        # already in feed[:rows]); None after any other step
        self.last_argmax: torch.Tensor | None = None
        self.last_hidden: torch.Tensor | None = None  # execute(keep_hidden=True)'s (T, H) hidden states
        self._alloc_host(max(max_num_batched_tokens, max_num_seqs), max_num_seqs, self.table_width)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.prefill_graphs: dict[int, torch.cuda.CUDAGraph] = {}  # padded tokens -> graph
        self.graph_memory = 0  # bytes the captured graphs hold (their private pool)
        self.graph_replays = 0
        self._static: dict[str, torch.Tensor] = {}
        self._pstatic: dict[str, torch.Tensor] = {}  # the prefill graphs' inputs

    # host staging ---------------------------------------------------------------------------------
    def _alloc_host(self, tokens: int, seqs: int, width: int) -> None:
        st = self.staging
        self._h_ids = st.empty((tokens,), torch.int64)
        self._h_idx = st.empty((tokens,), torch.int64)  # where each token's id is read from in `feed`
        self._h_pos = st.empty((tokens,), torch.int64)
        self._h_slots = st.empty((tokens,), torch.int64)
        self._h_rows = st.empty((seqs,), torch.int64)
        self._h_cu = st.empty((seqs + 1,), torch.int32)
        # lengths and block tables are written in place in the decode graphs' pinned upload buffer
        self._h_layout = DecodeInputs(seqs, width)
        self._h_dec = st.empty((self._h_layout.words,), torch.int64)
        self._h_views = self._h_layout.views(self._h_dec)
        self._h_lens = self._h_views["lens"]
        self._h_tables = self._h_views["tables"]
        # per table row: the block list it was last written from and how many of its entries
        self._row_src: list[tuple[list[int] | None, int]] = [(None, 0)] * seqs

    def _fill(
        self, seqs: list[Seq], pad_to: int | None = None, feed_rows: list[int] | None = None
    ) -> tuple[int, int, int, bool]:
        """Write the step's inputs into the host buffers; returns (T tokens, B rows, R sampling rows, whether
        any id comes from `feed`). With pad_to, rows B..pad_to-1 are padding: token 0 at position 0 in the
        dummy block. Token t's id is host id t or feed[_h_idx[t]] (an id of the layout [feed[:S] | host ids])."""
        bs = self.block_size
        B = len(seqs)
        rows_total = pad_to or B
        n = np.fromiter((s[2] for s in seqs), np.int64, B)
        start = np.fromiter((s[1] for s in seqs), np.int64, B)
        T = int(n.sum()) + (rows_total - B)
        width = max(len(s[3]) for s in seqs)
        if T > self._h_ids.shape[0] or rows_total > self._h_lens.shape[0] or width > self._h_tables.shape[1]:
            self.staging.claim()
            self._alloc_host(max(T, self._h_ids.shape[0]), max(rows_total, self._h_lens.shape[0]),
                             max(width, self._h_tables.shape[1]))  # fmt: skip
        self.staging.claim()
        tables = self._h_tables.numpy()
        for b, (tokens, s0, k, blocks, _) in enumerate(seqs):
            nb = len(blocks)
            assert k > 0 and s0 + k <= len(tokens) and nb * bs >= s0 + k, f"{s0=} {k=} {len(tokens)=} {nb=}"
            src, written = self._row_src[b]
            if src is not blocks or written > nb:
                written = 0
            if written < nb:
                tables[b, written:nb] = blocks[written:]
            self._row_src[b] = (blocks, nb)
        ids = self._h_ids.numpy()
        if int(n.max()) == 1:
            ids[:B] = [s[0][s[1]] for s in seqs]
        else:
            ids[: T - (rows_total - B)] = list(
                itertools.chain.from_iterable(s[0][s[1] : s[1] + s[2]] for s in seqs)
            )
        cu = self._h_cu.numpy()
        cu[0] = 0
        np.cumsum(n, out=cu[1 : B + 1])
        seq_of = np.repeat(np.arange(B), n)
        Treal = T - (rows_total - B)
        pos = self._h_pos.numpy()
        pos[:Treal] = np.arange(Treal) - cu[:B][seq_of] + start[seq_of]
        slots = self._h_slots.numpy()
        slots[:Treal] = tables[seq_of, pos[:Treal] // bs].astype(np.int64) * bs + pos[:Treal] % bs
        lens = self._h_lens.numpy()
        lens[:B] = start + n
        sample = np.fromiter((s[4] for s in seqs), bool, B)
        R = int(sample.sum())
        self._h_rows.numpy()[:R] = cu[1 : B + 1][sample] - 1
        S = self.max_num_seqs
        idx = self._h_idx.numpy()
        idx[:T] = np.arange(S, S + T)
        fed = False
        if feed_rows is not None:
            for b, j in enumerate(feed_rows):
                if j >= 0:
                    assert seqs[b][2] == 1 and 0 <= j < S, f"{b=} {j=} {seqs[b][2]=}"
                    t = int(cu[b])
                    idx[t], ids[t], fed = j, 0, True
        if rows_total > B:  # graph padding
            ids[Treal:T] = 0
            pos[Treal:T] = 0
            slots[Treal:T] = self.dummy_block * bs
            lens[B:rows_total] = 1
            tables[B:rows_total, 0] = self.dummy_block
            for b in range(B, rows_total):
                self._row_src[b] = (None, 0)
        return T, rows_total, R, fed

    # eager path -----------------------------------------------------------------------------------
    def prepare(
        self, seqs: list[Seq], feed_rows: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, torch.Tensor]:
        """Upload a batch's inputs: (input_ids (T,), positions (T,), metadata, sampling rows (R,))."""
        T, B, R, fed = self._fill(seqs, feed_rows=feed_rows)
        width = max(len(s[3]) for s in seqs)
        up = self.staging.upload
        # NOTE: whole rows of the table go up (a column slice of a pinned buffer is not contiguous)
        tables = up(self._h_tables[:B])[:, :width]
        meta = AttentionMetadata(
            slot_mapping=up(self._h_slots[:T]),
            block_tables=tables,
            seq_lens=up(self._h_lens[:B]),
            cu_seqlens_q=up(self._h_cu[: B + 1]),
            max_seqlen_q=max(s[2] for s in seqs),
        )
        meta.invariant = self.batch_invariant and meta.max_seqlen_q > 1
        ids = up(self._h_ids[:T])
        if fed:
            S = self.max_num_seqs
            ids = torch.cat([self.feed[:S], ids]).index_select(0, up(self._h_idx[:T]))
        out = ids, up(self._h_pos[:T]), meta, up(self._h_rows[:R])
        self.staging.uploaded()
        return out

    def feed_tokens(self, tokens: torch.Tensor) -> None:
        """Keep a step's sampled ids (R,) on the device for the next execute's feed_rows (stream-ordered)."""
        R = tokens.shape[0]
        if R > self.max_num_seqs:
            raise ValueError(f"{R} sampled rows; the feed holds max_num_seqs={self.max_num_seqs}")
        if tokens.data_ptr() == self.feed.data_ptr():
            return  # the decode graph's greedy ids, already there (last_argmax)
        self.feed[:R].copy_(tokens, non_blocking=True)

    @torch.inference_mode()
    def execute(
        self, seqs: list[Seq], feed_rows: list[int] | None = None, keep_hidden: bool = False
    ) -> torch.Tensor:
        """keep_hidden: run eagerly (no graph) and keep every token's final hidden state (T, H), sequences'
        tokens in order, in `last_hidden` until the next call (for prompt logprobs: logits of every
        position); otherwise last_hidden is None."""
        B = len(seqs)
        self.last_hidden = None
        bs = None if keep_hidden else self._graph_size(seqs)
        if bs is not None:
            return self._replay(seqs, bs, feed_rows)
        tp = None if keep_hidden else self._prefill_size(seqs, feed_rows)
        if tp is not None:
            self.last_argmax = None
            return self._replay_prefill(seqs[0], tp)
        self.last_argmax = None
        input_ids, positions, meta, rows = self.prepare(seqs, feed_rows)
        hidden = self.model.forward(input_ids, positions, meta, self.caches)  # (T, H)
        if keep_hidden:
            self.last_hidden = hidden
        if rows.shape[0] == B and meta.max_seqlen_q == 1:
            return self.model.compute_logits(hidden)  # every row samples: no gather
        return self.model.compute_logits(hidden[rows])  # (R, V)

    # CUDA graphs ----------------------------------------------------------------------------------
    def _graph_size(self, seqs: list[Seq]) -> int | None:
        """The captured batch size that runs this batch, or None when it runs eagerly."""
        if not self.graphs or len(seqs) > max(self.graphs):
            return None
        if any(s[2] != 1 or not s[4] for s in seqs):
            return None
        return min(b for b in self.graphs if b >= len(seqs))

    def _prefill_size(self, seqs: list[Seq], feed_rows: list[int] | None) -> int | None:
        """The prefill graph that runs a one-sequence step of >= 2 tokens (padded by at least one), or None."""
        if not self.prefill_graphs or len(seqs) != 1 or seqs[0][2] < 2 or (feed_rows and feed_rows[0] >= 0):
            return None
        fits = [t for t in self.prefill_graphs if t > seqs[0][2]]
        return min(fits) if fits else None

    def _pad_seq(self, n: int) -> Seq:
        """A padding sequence of n tokens at positions 0..n-1 in the dummy block (slots repeat: its K/V and
        outputs are never read by a real sequence)."""
        return [0] * n, 0, n, [self.dummy_block] * -(-n // self.block_size), False

    def _replay_prefill(self, seq: Seq, tp: int) -> torch.Tensor:
        """Run one sequence's prefill chunk in the graph of tp tokens: its n tokens, then a padding sequence
        of tp - n. Returns its logits row (1, V) when it samples, else (0, V)."""
        self._fill([seq, self._pad_seq(tp - seq[2])])
        self._upload_prefill(tp)
        self.prefill_graphs[tp].replay()
        self.graph_replays += 1
        return self._static["logits"][: 1 if seq[4] else 0]

    def _upload_prefill(self, tp: int) -> None:
        p, up = self._pstatic, self.staging.upload
        for name, host in (("ids", self._h_ids), ("pos", self._h_pos), ("slots", self._h_slots)):
            up(host[:tp], p[name][:tp])
        up(self._h_lens[:2], p["lens"])
        up(self._h_cu[:3], p["cu"])
        up(self._h_tables[:2], p["tables"])
        up(self._h_rows[:1], p["rows"])
        self.staging.uploaded()

    def _prefill_forward(self, tp: int) -> None:
        p = self._pstatic
        meta = AttentionMetadata(
            slot_mapping=p["slots"][:tp],
            block_tables=p["tables"],
            seq_lens=p["lens"],
            cu_seqlens_q=p["cu"],
            max_seqlen_q=tp,
            invariant=self.batch_invariant,
        )
        hidden = self.model.forward(p["ids"][:tp], p["pos"][:tp], meta, self.caches)
        self.model.compute_logits(hidden.index_select(0, p["rows"]), out=self._static["logits"][:1])

    def _static_forward(self, bs: int) -> None:
        s = self._static
        meta = AttentionMetadata(
            slot_mapping=s["slots"][:bs],
            block_tables=s["tables"][:bs],
            seq_lens=s["lens"][:bs],
            cu_seqlens_q=s["cu"][: bs + 1],
            max_seqlen_q=1,
        )
        ids = self.feed.index_select(0, s["idx"][:bs])  # host ids (feed[S:]) or last sampled ones
        hidden = self.model.forward(ids, s["pos"][:bs], meta, self.caches)
        logits = self.model.compute_logits(hidden, out=s["logits"][:bs])
        # the greedy ids go straight into the feed: a greedy step then needs no kernel between two replays
        # (a sampled step's feed_tokens overwrites them); padding rows' ids land past the sampled rows
        torch.argmax(logits, dim=-1, out=self.feed[:bs])

    def _upload_static(self, bs: int) -> None:
        """One copy of rows 0..bs-1 of every decode input (DecodeInputs), after _fill wrote them."""
        h = self._h_views
        h["ids"].numpy()[:bs] = self._h_ids.numpy()[:bs]
        h["idx"].numpy()[:bs] = self._h_idx.numpy()[:bs]
        h["pos"].numpy()[:bs] = self._h_pos.numpy()[:bs]
        h["slots"].numpy()[:bs] = self._h_slots.numpy()[:bs]
        lay = self.decode_inputs
        if (self._h_layout.rows, self._h_layout.width) == (lay.rows, lay.width):
            lo, hi = lay.rows, lay.end(bs)  # from the ids on: the feed is the device's own
            self.staging.upload(self._h_dec[lo:hi], self._d_dec[lo:hi])
        else:  # host buffers regrown past the graphs' shape by an eager batch: field by field
            for name in ("ids", "idx", "pos", "slots", "lens", "tables"):
                self.staging.upload(h[name][:bs], self._d_views[name][:bs])
        self.staging.uploaded()

    def _replay(self, seqs: list[Seq], bs: int, feed_rows: list[int] | None) -> torch.Tensor:
        self._fill(seqs, pad_to=bs, feed_rows=feed_rows)
        self._upload_static(bs)
        self.graphs[bs].replay()
        self.graph_replays += 1
        self.last_argmax = self.feed[: len(seqs)]
        return self._static["logits"][: len(seqs)]

    @torch.inference_mode()
    def warm_chunk(self, tokens: int) -> None:
        """One eager prefill of ``tokens`` padding tokens, into the pool's first blocks (nothing holds them
        yet). NOTE: the W8A16 matmul chooses its path per power-of-two row bucket on first use
        (``int8_matmul.use_imma``, ``use_gemm_ws``: timed as graph replays, ~0.4 s a layer shape); eager chunks
        longer than the prefill graphs would otherwise choose during the first long prompt."""
        self.execute([([0] * tokens, 0, tokens, list(range(-(-tokens // self.block_size))), True)])
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def capture_graphs(self, max_num_seqs: int, prefill_tokens: int = 0) -> None:
        """Capture one decode graph per size in graph_batch_sizes(max_num_seqs), largest first, and one
        one-sequence prefill graph per size in prefill_graph_sizes(prefill_tokens), all sharing one memory
        pool. Each graph's step first runs eagerly (Triton compiles and autotunes outside capture).

        NOTE: a prefill of a few hundred tokens reads every weight once, like a decode step, and issues the
        same ~600 launches; eagerly it costs 25-35 ms of host time for 5-9 ms of GPU work (H200, GLM-4-9B,
        108 new tokens after a cached prefix). Padding to the next power of two costs little at these sizes."""
        if max_num_seqs > self.max_num_seqs:
            raise ValueError(f"graphs up to {max_num_seqs} rows; this runner takes {self.max_num_seqs}")
        sizes = graph_batch_sizes(max_num_seqs)
        top = sizes[-1]
        dev, V = self.device, self.model.cfg.vocab_size
        d = self._d_views
        self._static = {name: d[name][:top] for name in ("ids", "idx", "pos", "slots", "lens", "tables")}
        self._static["cu"] = torch.arange(top + 1, dtype=torch.int32, device=dev)
        self._static["logits"] = torch.zeros(top, V, dtype=torch.float32, device=dev)
        if self._h_lens.shape[0] < top:
            self._alloc_host(max(self._h_ids.shape[0], top), top, self.table_width)
        t0 = time.perf_counter()
        free0, _ = torch.cuda.mem_get_info(dev)
        pool = None
        torch.cuda.synchronize(dev)
        for bs in reversed(sizes):
            self.staging.claim()
            self._pad_rows(bs)
            self._upload_static(bs)
            self.graphs[bs] = graph = _capture(lambda bs=bs: self._static_forward(bs), pool, dev)
            pool = graph.pool()
        psizes = prefill_graph_sizes(prefill_tokens)
        if psizes:
            tmax, width = psizes[-1], self.table_width
            self._pstatic = {
                "ids": torch.zeros(tmax, dtype=torch.int64, device=dev),
                "pos": torch.zeros(tmax, dtype=torch.int64, device=dev),
                "slots": torch.zeros(tmax, dtype=torch.int64, device=dev),
                "lens": torch.ones(2, dtype=torch.int32, device=dev),
                "cu": torch.zeros(3, dtype=torch.int32, device=dev),
                "tables": torch.zeros(2, width, dtype=torch.int32, device=dev),
                "rows": torch.zeros(1, dtype=torch.int64, device=dev),
            }
        for tp in reversed(psizes):
            self._fill([self._pad_seq(tp - 1), self._pad_seq(1)])
            self._h_rows[0] = tp - 2  # _fill samples no padding row; any row will do
            self._upload_prefill(tp)
            self.prefill_graphs[tp] = graph = _capture(lambda tp=tp: self._prefill_forward(tp), pool, dev)
            pool = graph.pool()
        torch.cuda.synchronize(dev)
        self.graph_memory = max(0, free0 - torch.cuda.mem_get_info(dev)[0])
        log.info(
            "captured %d decode CUDA graphs (batch sizes %s) and %d prefill graphs (tokens %s) in %.1f s, %.0f MiB",
            len(sizes), ",".join(map(str, sizes)), len(psizes), ",".join(map(str, psizes)),
            time.perf_counter() - t0, self.graph_memory / 2**20,
        )  # fmt: skip

    def _pad_rows(self, bs: int) -> None:
        """Host inputs of an all-padding batch of bs rows (warm-up and capture)."""
        self._h_ids[:bs] = 0
        self._h_idx[:bs] = torch.arange(self.max_num_seqs, self.max_num_seqs + bs)
        self._h_pos[:bs] = 0
        self._h_slots[:bs] = self.dummy_block * self.block_size
        self._h_lens[:bs] = 1
        self._h_tables[:bs, 0] = self.dummy_block
        self._row_src[:bs] = [(None, 0)] * bs


def _capture(step, pool, device: torch.device) -> torch.cuda.CUDAGraph:
    """Run `step` twice eagerly (Triton compiles and autotunes outside capture), then capture it into a graph
    that allocates from `pool` (None: a new pool)."""
    for _ in range(2):
        step()
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        step()
    return graph


def _allocate_caches(model: GlmModel, num_blocks: int, block_size: int, int8: bool) -> list[LayerCache]:
    cfg = model.cfg
    shape = (num_blocks, block_size, cfg.num_kv_heads, cfg.head_dim)
    dt = torch.int8 if int8 else model.dtype
    dev = model.device

    def scales() -> torch.Tensor | None:
        return torch.zeros(shape[:3], dtype=torch.float32, device=dev) if int8 else None

    return [
        LayerCache(
            torch.zeros(shape, dtype=dt, device=dev),
            torch.zeros(shape, dtype=dt, device=dev),
            scales(),
            scales(),
        )
        for _ in range(cfg.num_layers)
    ]
