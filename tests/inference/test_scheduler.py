"""Scheduling decisions on a simulated cache (no model): budgets, chunking, decode priority, preemption."""

from inference.kv_cache import KVCacheManager
from inference.sampling import SamplingParams
from inference.scheduler import Request, Scheduler, Status


def run_step(sched: Scheduler, next_token: int = 1):
    """Schedule one step and apply it as the engine would (no model: every sampled token is next_token)."""
    batch = sched.schedule()
    for i, req in enumerate(batch.requests):
        sample = batch.samples(i)
        req.num_computed += batch.num_tokens[i]
        sched.kv.cache_blocks(req)
        if sample:
            req.append(next_token)
    return batch


def plan(batch) -> list[tuple[str, int]]:
    return [(r.request_id, n) for r, n in zip(batch.requests, batch.num_tokens, strict=True)]


def req(rid: str, n: int, start: int = 0) -> Request:
    return Request(rid, list(range(start, start + n)), SamplingParams(temperature=0))


def test_chunked_prefill_within_budget_then_decodes_first():
    sched = Scheduler(KVCacheManager(num_blocks=16, block_size=4), max_num_seqs=8, max_num_batched_tokens=8)
    a, b = req("a", 10), req("b", 6, start=100)
    sched.add(a)
    sched.add(b)
    s1 = run_step(sched)
    assert plan(s1) == [("a", 8)]
    assert a.output_ids == [] and a.block_ids == [0, 1]
    s2 = run_step(sched)  # a finishes its prompt (2 tokens, samples), b gets the remaining 6
    assert plan(s2) == [("a", 2), ("b", 6)]
    assert a.output_ids == [1] and b.output_ids == [1]
    c = req("c", 20, start=200)
    sched.add(c)
    s3 = run_step(sched)  # decodes first (a, b: 1 token each), then c's first chunk in what is left
    assert plan(s3) == [("a", 1), ("b", 1), ("c", 6)]


def test_max_num_seqs_limits_admission():
    sched = Scheduler(KVCacheManager(num_blocks=16, block_size=4), max_num_seqs=2, max_num_batched_tokens=64)
    rs = [req(str(i), 3, start=10 * i) for i in range(3)]
    for r in rs:
        sched.add(r)
    s = run_step(sched)
    assert [r.request_id for r in s.requests] == ["0", "1"]
    assert list(sched.waiting) == [rs[2]]


def test_pool_exhaustion_preempts_newest_and_recomputes_it():
    kv = KVCacheManager(num_blocks=4, block_size=4, enable_prefix_caching=False)
    sched = Scheduler(kv, max_num_seqs=8, max_num_batched_tokens=64)
    old, new = req("old", 7), req("new", 7, start=50)
    sched.add(old)
    sched.add(new)
    run_step(sched)  # both prefilled: 2 blocks each, pool full
    assert old.block_ids == [0, 1] and new.block_ids == [2, 3]
    run_step(sched)  # position 7 still fits in the second block
    s = run_step(sched)  # position 8 needs a third block for each: the newest is preempted
    assert s.preempted == [new]
    assert [r.request_id for r in s.requests] == ["old"]
    assert new.status is Status.WAITING and new.block_ids == [] and new.num_computed == 0
    assert old.block_ids == [0, 1, 3]
    assert new.output_ids == [1, 1] and new.num_remaining == 9  # prompt + output recomputed later
    assert list(sched.waiting) == [new] and sched.num_preemptions == 1
    # once the old request finishes, the preempted one is readmitted and recomputes all 9 tokens
    sched.finish(old)
    s = run_step(sched)
    assert plan(s) == [("new", 9)]
    assert new.output_ids == [1, 1, 1]


def test_finish_frees_blocks_of_waiting_and_running_requests():
    kv = KVCacheManager(num_blocks=8, block_size=4)
    sched = Scheduler(kv, max_num_batched_tokens=4)
    a, b = req("a", 8), req("b", 4, start=30)
    sched.add(a)
    sched.add(b)
    run_step(sched)  # a: first chunk of 4
    sched.finish(a)
    sched.finish(b)
    assert a.status is Status.FINISHED and b.status is Status.FINISHED
    assert not sched.has_work()
    assert all(kv.cache.ref_count(i) == 0 for i in range(8))
