"""Paged KV block bookkeeping: a ref-counted block pool and a radix tree of cached prefixes.

Pure Python over block ids (no tensors), so the policy is unit-tested on any machine with exact
block ids, reference counts and eviction order (like SGLang's simulated RadixCache). The runner
owns the tensors that the ids index.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import Protocol


class BlockPool:
    """Block ids 0..num_blocks-1 with reference counts. Free ids are handed out in FIFO order
    (initially ascending); a block returns to the free list only when its owner puts it back."""

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.ref_counts = [0] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))

    @property
    def num_free(self) -> int:
        return len(self._free)

    def take(self, n: int) -> list[int] | None:
        """n free blocks with one reference each, or None when fewer than n are free."""
        if n > len(self._free):
            return None
        blocks = [self._free.popleft() for _ in range(n)]
        for b in blocks:
            assert self.ref_counts[b] == 0, f"{b=} {self.ref_counts[b]=}"
            self.ref_counts[b] = 1
        return blocks

    def put(self, block: int) -> None:
        assert self.ref_counts[block] == 0, f"{block=} {self.ref_counts[block]=}"
        self._free.append(block)


class _Node:
    __slots__ = ("key", "block", "parent", "children", "last_access")

    def __init__(self, key: tuple[int, ...], block: int, parent: _Node | None) -> None:
        self.key = key
        self.block = block
        self.parent = parent
        self.children: dict[tuple[int, ...], _Node] = {}
        self.last_access = 0


class RadixCache:
    """Radix tree over full blocks of token ids; each node is one block whose KV holds its tokens
    given the tokens on the path above it.

    Contract: `match` returns the blocks of the longest cached block-aligned prefix and takes a
    reference on each; `insert` records a sequence's full blocks (already referenced by the
    caller); `release` drops references (a block no longer referenced stays cached if it is in
    the tree, else it returns to the pool); `allocate` takes free blocks, evicting unreferenced
    leaves least-recently-used first (ties: lower block id) when the pool runs short.
    Recency is a logical clock ticked by every match, insert and release.
    """

    def __init__(self, num_blocks: int, block_size: int, enabled: bool = True) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        self.enabled = enabled
        self.root = _Node((), -1, None)
        self._nodes: dict[int, _Node] = {}  # block id -> node, for blocks in the tree
        self._clock = 0

    @classmethod
    def create_simulated(cls, num_blocks: int = 16, block_size: int = 4) -> RadixCache:
        """A cache with no tensors behind it, for tests and planning."""
        return cls(num_blocks, block_size)

    # queries -----------------------------------------------------------------------------------
    @property
    def num_cached_blocks(self) -> int:
        return len(self._nodes)

    def is_cached(self, block: int) -> bool:
        return block in self._nodes

    def ref_count(self, block: int) -> int:
        return self.pool.ref_counts[block]

    def num_available(self) -> int:
        """Free blocks plus cached blocks nobody references (an upper bound on what allocate can return)."""
        return self.pool.num_free + sum(1 for b in self._nodes if self.pool.ref_counts[b] == 0)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _chunks(self, tokens: Sequence[int], n: int):
        bs = self.block_size
        for i in range(n):
            yield tuple(tokens[i * bs : (i + 1) * bs])

    # operations --------------------------------------------------------------------------------
    def match(self, tokens: Sequence[int], max_blocks: int | None = None) -> list[int]:
        """Blocks of the longest cached prefix of `tokens` (whole blocks, at most max_blocks), referenced."""
        if not self.enabled:
            return []
        n = len(tokens) // self.block_size
        if max_blocks is not None:
            n = min(n, max_blocks)
        now = self._tick()
        node, blocks = self.root, []
        for key in self._chunks(tokens, n):
            child = node.children.get(key)
            if child is None:
                break
            node = child
            node.last_access = now
            self.pool.ref_counts[node.block] += 1
            blocks.append(node.block)
        return blocks

    def insert(self, tokens: Sequence[int], blocks: Sequence[int]) -> int:
        """Record the full blocks of `tokens` held in `blocks`; returns how many blocks were added.
        Where an equal prefix is already cached under other blocks the existing nodes are kept and the
        caller's duplicate blocks stay private (freed on release)."""
        if not self.enabled:
            return 0
        n = min(len(tokens) // self.block_size, len(blocks))
        now = self._tick()
        node, added = self.root, 0
        for i, key in enumerate(self._chunks(tokens, n)):
            child = node.children.get(key)
            if child is None:
                if blocks[i] in self._nodes:  # already cached elsewhere: cannot hang it twice
                    break
                child = _Node(key, blocks[i], node)
                node.children[key] = child
                self._nodes[blocks[i]] = child
                added += 1
            child.last_access = now
            node = child
        return added

    def release(self, blocks: Sequence[int]) -> None:
        """Drop one reference on each block (tail first)."""
        now = self._tick()
        for b in reversed(blocks):
            rc = self.pool.ref_counts
            assert rc[b] > 0, f"{b=} {rc[b]=}"
            rc[b] -= 1
            node = self._nodes.get(b)
            if node is not None:
                node.last_access = now
            elif rc[b] == 0:
                self.pool.put(b)

    def allocate(self, n: int) -> list[int] | None:
        """n blocks with one reference each, evicting cached blocks if needed; None if impossible."""
        if n > self.pool.num_free:
            self.evict(n - self.pool.num_free)
        return self.pool.take(n)

    def evict(self, n: int) -> list[int]:
        """Evict up to n unreferenced leaves, least recently used first; returns the evicted block ids."""
        rc = self.pool.ref_counts
        heap = [
            (nd.last_access, nd.block) for nd in self._nodes.values() if not nd.children and rc[nd.block] == 0
        ]
        heapq.heapify(heap)
        evicted: list[int] = []
        while heap and len(evicted) < n:
            _, b = heapq.heappop(heap)
            node = self._nodes.pop(b)
            parent = node.parent
            assert parent is not None, f"{b=}"
            del parent.children[node.key]
            self.pool.put(b)
            evicted.append(b)
            if parent is not self.root and not parent.children and rc[parent.block] == 0:
                heapq.heappush(heap, (parent.last_access, parent.block))
        return evicted

    def reset(self) -> int:
        """Drop every unreferenced cached block (e.g. after new weights); returns how many."""
        return len(self.evict(len(self._nodes)))


class CachedSequence(Protocol):
    token_ids: list[int]
    num_computed: int
    block_ids: list[int]
    num_cached_blocks: int


class KVCacheManager:
    """Hands blocks to sequences. Contract: `match_prefix` gives a new sequence its cached prefix
    (never the whole sequence: the last token is always computed so it yields logits);
    `allocate_slots` makes room for n more tokens or returns False without side effects;
    `cache_blocks` publishes a sequence's newly computed full blocks; `free` releases everything."""

    def __init__(self, num_blocks: int, block_size: int = 16, enable_prefix_caching: bool = True) -> None:
        self.cache = RadixCache(num_blocks, block_size, enabled=enable_prefix_caching)
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.prompt_tokens = 0
        self.hit_tokens = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def record_hit(self, prompt_tokens: int, hit_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.hit_tokens += hit_tokens

    def match_prefix(self, seq: CachedSequence) -> int:
        """Attach the longest cached prefix to a sequence with no blocks; returns the hit tokens."""
        assert not seq.block_ids and seq.num_computed == 0, f"{seq.block_ids=} {seq.num_computed=}"
        blocks = self.cache.match(seq.token_ids, max_blocks=(len(seq.token_ids) - 1) // self.block_size)
        seq.block_ids = blocks
        seq.num_cached_blocks = len(blocks)
        seq.num_computed = len(blocks) * self.block_size
        return seq.num_computed

    def blocks_needed(self, seq: CachedSequence, num_new: int) -> int:
        return -(-(seq.num_computed + num_new) // self.block_size) - len(seq.block_ids)

    def allocate_slots(self, seq: CachedSequence, num_new: int) -> bool:
        need = self.blocks_needed(seq, num_new)
        if need <= 0:
            return True
        blocks = self.cache.allocate(need)
        if blocks is None:
            return False
        seq.block_ids.extend(blocks)
        return True

    def cache_blocks(self, seq: CachedSequence) -> None:
        full = seq.num_computed // self.block_size
        if full > seq.num_cached_blocks:
            self.cache.insert(seq.token_ids[: full * self.block_size], seq.block_ids[:full])
            seq.num_cached_blocks = full

    def free(self, seq: CachedSequence) -> None:
        self.cache.release(seq.block_ids)
        seq.block_ids = []
        seq.num_cached_blocks = 0
