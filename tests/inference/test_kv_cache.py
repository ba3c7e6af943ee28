"""Block pool and radix prefix cache, simulated (no model, no tensors): exact ids, refs, eviction order."""

from dataclasses import dataclass, field

import pytest

from inference.kv_cache import BlockPool, KVCacheManager, RadixCache


def toks(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def test_pool_hands_out_fifo_and_refuses_shortage():
    pool = BlockPool(4)
    assert pool.take(3) == [0, 1, 2]
    assert pool.ref_counts == [1, 1, 1, 0]
    assert pool.take(2) is None  # expected shortage: None, nothing taken
    assert pool.num_free == 1
    pool.ref_counts[1] = 0
    pool.put(1)
    assert pool.take(2) == [3, 1]
    with pytest.raises(ValueError, match="num_blocks"):
        BlockPool(0)


def test_match_insert_release_refcounts():
    c = RadixCache.create_simulated(num_blocks=8, block_size=4)
    a = toks(100, 12)
    blocks = c.allocate(3)
    assert blocks == [0, 1, 2]
    assert c.insert(a, blocks) == 3
    c.release(blocks)
    assert [c.ref_count(b) for b in range(3)] == [0, 0, 0]
    assert all(c.is_cached(b) for b in range(3)) and c.pool.num_free == 5
    # full match, partial-block prompt (only whole blocks count), divergence inside the third block
    assert c.match(a + [1, 2]) == [0, 1, 2]
    assert [c.ref_count(b) for b in range(3)] == [1, 1, 1]
    assert c.match(a[:6]) == [0]
    assert c.match(a[:9] + [0, 0, 0]) == [0, 1]
    assert [c.ref_count(b) for b in range(3)] == [3, 2, 1]
    assert c.match(toks(100, 12), max_blocks=1) == [0]
    assert c.match(toks(999, 12)) == []
    c.release([0, 1, 2])
    c.release([0])
    c.release([0, 1])
    c.release([0])
    assert [c.ref_count(b) for b in range(3)] == [0, 0, 0]


def test_shared_prefix_branches_and_duplicate_blocks_stay_private():
    c = RadixCache.create_simulated(num_blocks=8, block_size=4)
    a = toks(0, 8)
    b = toks(0, 4) + toks(50, 4)
    ba = c.allocate(2)
    c.insert(a, ba)
    hit = c.match(b)
    assert hit == [0]
    bb = hit + c.allocate(1)
    assert bb == [0, 2]
    assert c.insert(b, bb) == 1
    assert c.ref_count(0) == 2 and c.num_cached_blocks == 3
    # a third request computed the same 8 tokens as `a` in its own blocks (before a's were cached)
    dup = c.allocate(2)
    assert dup == [3, 4]
    assert c.insert(a, dup) == 0
    assert not c.is_cached(3) and not c.is_cached(4)
    free_before = c.pool.num_free
    c.release(dup)
    assert c.pool.num_free == free_before + 2  # private blocks go straight back to the pool


def test_lru_eviction_order_leaves_first():
    c = RadixCache.create_simulated(num_blocks=6, block_size=4)
    a, b = toks(0, 8), toks(40, 8)
    ba = c.allocate(2)  # [0, 1]
    c.insert(a, ba)
    c.release(ba)
    bb = c.allocate(2)  # [2, 3]
    c.insert(b, bb)
    c.release(bb)
    assert c.pool.num_free == 2
    # 3 blocks: the 2 free ones, then the least recently used leaf (a's second block)
    got = c.allocate(3)
    assert got == [4, 5, 1]
    assert not c.is_cached(1) and c.is_cached(0)
    # a's first block became a leaf and is older than b's blocks; b's leaf goes before b's root block
    assert c.evict(3) == [0, 3, 2]
    assert c.num_cached_blocks == 0


def test_match_refreshes_recency_and_referenced_blocks_are_never_evicted():
    c = RadixCache.create_simulated(num_blocks=4, block_size=4)
    a, b = toks(0, 8), toks(40, 8)
    for t in (a, b):
        blocks = c.allocate(2)
        c.insert(t, blocks)
        c.release(blocks)
    held = c.match(a)  # a is now the most recent, and referenced
    assert held == [0, 1]
    assert c.allocate(3) is None  # b's 2 blocks are all that could be evicted
    assert c.is_cached(0) and c.is_cached(1)
    assert c.num_cached_blocks == 2 and c.pool.num_free == 2  # b was evicted trying: leaf first
    c.release(held)
    assert c.allocate(3) == [3, 2, 1]


@dataclass
class Seq:
    token_ids: list[int]
    num_computed: int = 0
    block_ids: list[int] = field(default_factory=list)
    num_cached_blocks: int = 0


def test_manager_keeps_last_token_to_compute_and_counts_hits():
    kv = KVCacheManager(num_blocks=8, block_size=4)
    s1 = Seq(toks(0, 8))
    assert kv.match_prefix(s1) == 0
    assert kv.allocate_slots(s1, 8) and s1.block_ids == [0, 1]
    s1.num_computed = 8
    kv.cache_blocks(s1)
    assert s1.num_cached_blocks == 2
    # the same 8 tokens again: only one block is reused so the last token still yields logits
    s2 = Seq(toks(0, 8))
    assert kv.match_prefix(s2) == 4 and s2.block_ids == [0] and s2.num_computed == 4
    assert kv.blocks_needed(s2, 4) == 1
    assert kv.allocate_slots(s2, 4) and s2.block_ids == [0, 2]
    kv.free(s2)
    kv.free(s1)
    assert kv.cache.ref_count(0) == 0 and kv.cache.is_cached(0)
    assert not kv.cache.is_cached(2) and kv.cache.pool.num_free == 6
    # longer prompt sharing 9 tokens: 2 full blocks hit
    s3 = Seq(toks(0, 9) + [77, 78])
    assert kv.match_prefix(s3) == 8 and s3.block_ids == [0, 1]
    assert not kv.allocate_slots(s3, 100) and s3.block_ids == [0, 1]  # shortage: no side effects
