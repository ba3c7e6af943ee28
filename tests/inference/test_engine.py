"""The engine end to end against transformers' greedy generate on the same weights."""

import asyncio
import time

import pytest
import torch
from transformers import GenerationConfig

from inference import Completion, Engine, EngineOverloaded, SamplingParams, TokenEvent

from .conftest import hf_model

GREEDY = SamplingParams(max_tokens=64, temperature=0, ignore_eos=True)


def hf_greedy(path, ids: list[int], n: int) -> list[int]:
    model = hf_model(path)
    cfg = GenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    model.generation_config.eos_token_id = None  # compare all n tokens, like ignore_eos
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), generation_config=cfg)
    return out[0, len(ids) :].tolist()


@pytest.fixture(scope="module", params=["glm", "glm4"])
def arch_path(request, checkpoints):
    return checkpoints[request.param]


PROMPTS = [
    "The engine answers questions",
    "企业问答系统读取公司文档并回答员工的问题。",
    "Prefix caching reuses the key and value blocks of a shared system prompt and shared context passages.",
]


def test_greedy_batch_of_different_lengths_matches_transformers(arch_path):
    with Engine.from_pretrained(arch_path, num_blocks=128, block_size=4) as engine:
        results = engine.generate(PROMPTS, GREEDY)
        # decode steps were launched before the previous step's ids reached the host (read on the device)
        assert engine.stats()["overlapped_steps"] >= 60
        for prompt, res in zip(PROMPTS, results, strict=True):
            ids = engine.tokenizer.encode(prompt)
            assert res.token_ids == hf_greedy(arch_path, ids, 64)
            assert res.finish_reason == "length"
            assert res.usage.prompt_tokens == len(ids) and res.usage.completion_tokens == 64


def test_prefix_hits_full_and_partial_blocks(checkpoints):
    path = checkpoints["glm"]
    with Engine.from_pretrained(path, num_blocks=128, block_size=4) as engine:
        shared = list(range(3, 21))  # 18 tokens: 4 full blocks + 2 tokens of a fifth
        first = shared + [200, 201, 202]
        [r0] = engine.generate([first], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
        assert r0.usage.prefix_hit_tokens == 0
        # same 18-token prefix: the partial fifth block is recomputed, 16 tokens come from the cache
        second = shared + [300, 301]
        # a prompt that is fully cached (first + its output): all but the block holding the last token hit
        third = first + r0.token_ids[:3]
        r1, r2 = engine.generate([second, third], GREEDY)
        assert r1.usage.prefix_hit_tokens == 16
        # third has 24 tokens: 5 full blocks are cached, the 6th holds the last token and is recomputed
        assert r2.usage.prefix_hit_tokens == 20
        assert r1.token_ids == hf_greedy(path, second, 64)
        assert r2.token_ids == hf_greedy(path, third, 64)
        stats = engine.stats()
        assert stats["prefix_hit_tokens"] == 36
        assert stats["prefix_hit_rate"] == pytest.approx(36 / (21 + 20 + 24))


def test_forced_preemption_keeps_outputs_identical(checkpoints):
    path = checkpoints["glm4"]
    prompts = [list(range(10 + 7 * i, 30 + 7 * i)) for i in range(4)]  # 20 tokens each
    params = GREEDY  # 64 tokens
    # 4 sequences x 84 tokens need 84 blocks of 4; the pool has 24 (one sequence needs 21)
    with Engine.from_pretrained(path, num_blocks=24, block_size=4, enable_prefix_caching=False) as engine:
        results = engine.generate(prompts, params)
        assert engine.stats()["num_preemptions"] > 0
        assert engine.stats()["free_blocks"] == 24
    for p, r in zip(prompts, results, strict=True):
        assert r.token_ids == hf_greedy(path, p, 64)


def test_stream_chat_utf8_events_then_final(checkpoints):
    path = checkpoints["glm"]
    messages = [{"role": "system", "content": "你好"}, {"role": "user", "content": "差旅政策规定什么？"}]

    async def run(engine):
        events = [ev async for ev in engine.stream(messages, SamplingParams(max_tokens=24, temperature=0))]
        return events

    with Engine.from_pretrained(path, num_blocks=64, block_size=4) as engine:
        events = asyncio.run(run(engine))
        final = events[-1]
        assert isinstance(final, Completion)
        tokens = [ev for ev in events[:-1] if isinstance(ev, TokenEvent)]
        assert len(tokens) == len(events) - 1 == final.usage.completion_tokens
        assert "".join(ev.text for ev in tokens) == final.text
        ids = engine.tokenizer.encode(
            "[gMASK]<sop><|system|>\n你好<|user|>\n差旅政策规定什么？<|assistant|>", False
        )
        assert final.usage.prompt_tokens == len(ids)
        expected = hf_greedy(path, ids, 24)
        eos = engine.eos_ids
        cut = next((i + 1 for i, t in enumerate(expected) if t in eos), len(expected))
        assert final.token_ids == expected[:cut]
        t = final.timings
        assert 0 <= t.queue_s <= t.ttft_s <= t.total_s


def test_cancel_frees_blocks_and_timeout(checkpoints):
    path = checkpoints["glm"]
    with Engine.from_pretrained(path, num_blocks=64, block_size=4, enable_prefix_caching=False) as engine:

        async def consume_two():
            got = []
            async for ev in engine.stream(
                list(range(5, 30)), SamplingParams(max_tokens=200, ignore_eos=True)
            ):
                got.append(ev)
                if len(got) == 2:
                    break
            return got

        assert len(asyncio.run(consume_two())) == 2
        deadline = time.time() + 10
        while engine.stats()["running"] and time.time() < deadline:
            time.sleep(0.01)
        assert engine.stats()["running"] == 0 and engine.stats()["free_blocks"] == 64

        done: list[Completion] = []
        engine.submit(
            list(range(5, 30)),
            SamplingParams(max_tokens=200, ignore_eos=True),
            lambda ev: isinstance(ev, Completion) and done.append(ev),
            timeout_s=0.05,
        )
        while not done and time.time() < deadline:
            time.sleep(0.01)
        assert done[0].finish_reason == "timeout" and done[0].usage.completion_tokens < 200


def test_bounded_queue_rejects_when_full(checkpoints):
    with Engine.from_pretrained(checkpoints["glm"], num_blocks=32, block_size=4, max_waiting=2) as engine:
        with engine._cv:  # hold the loop so nothing leaves the queue while we fill it
            engine.submit([5, 6, 7], SamplingParams(max_tokens=2), lambda ev: None)
            engine.submit([5, 6, 8], SamplingParams(max_tokens=2), lambda ev: None)
            with pytest.raises(EngineOverloaded, match=r"engine queue is full \(2 waiting requests\)"):
                engine.submit([5, 6, 9], SamplingParams(max_tokens=2), lambda ev: None)


def test_stop_strings_stop_ids_seed_and_logprobs(checkpoints):
    path = checkpoints["glm"]
    prompt = "The engine answers questions"
    with Engine.from_pretrained(path, num_blocks=64, block_size=4) as engine:
        [full] = engine.generate(
            prompt, SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, logprobs=True)
        )
        # logprobs of the chosen tokens equal transformers' log-softmax at those positions
        ids = engine.tokenizer.encode(prompt)
        with torch.no_grad():
            logits = hf_model(path)(torch.tensor([ids + full.token_ids])).logits[0, len(ids) - 1 : -1]
        ref = logits.log_softmax(-1).gather(1, torch.tensor(full.token_ids)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(full.logprobs), ref, atol=1e-4)

        printable = [i for i, ch in enumerate(full.text) if ch.isprintable() and ch != "\ufffd" and i > 3]
        stop = full.text[printable[0] : printable[0] + 1]
        [cut] = engine.generate(
            prompt, SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, stop=[stop])
        )
        assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index(stop)]
        # the stop string is seen a step late (events trail sampling); the token sampled meanwhile is dropped
        k = len(cut.token_ids)
        assert cut.token_ids == full.token_ids[:k] and cut.usage.completion_tokens == k
        assert stop in engine.tokenizer.decode(cut.token_ids) and stop not in engine.tokenizer.decode(
            cut.token_ids[:-1]
        )

        stop_id = full.token_ids[5]
        [st] = engine.generate(
            prompt, SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, stop_token_ids=[stop_id])
        )
        k = full.token_ids.index(stop_id)
        assert st.finish_reason == "stop" and st.token_ids == full.token_ids[: k + 1]

        sampled = [
            SamplingParams(max_tokens=20, temperature=1.0, top_p=0.9, top_k=50, seed=s) for s in (7, 7, 8)
        ]
        a, b, c = engine.generate([prompt] * 3, sampled)
        assert a.token_ids == b.token_ids != c.token_ids


def test_repetition_penalty_sees_every_token_before_the_next_step(checkpoints):
    """Penalties count generated tokens on the host, so their steps are not overlapped: the output equals
    transformers' greedy generate with the same repetition penalty."""
    path = checkpoints["glm"]
    ids = [7] * 20  # without a penalty this model repeats one token over and over
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, repetition_penalty=1.3)
    with Engine.from_pretrained(path, num_blocks=64, block_size=4) as engine:
        [res] = engine.generate([ids], params)
        assert engine.stats()["overlapped_steps"] == 0
    cfg = GenerationConfig(max_new_tokens=24, do_sample=False, repetition_penalty=1.3, pad_token_id=0)
    model = hf_model(path)
    model.generation_config.eos_token_id = None
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), generation_config=cfg)
    assert res.token_ids == out[0, len(ids) :].tolist()


def test_caller_errors(checkpoints):
    with Engine.from_pretrained(checkpoints["glm"], num_blocks=8, block_size=4) as engine:
        with pytest.raises(ValueError, match="exceeds max_model_len"):
            engine.generate([list(range(20))], SamplingParams(max_tokens=20))
        with pytest.raises(ValueError, match="prompt token ids must be in"):
            engine.generate([[5, 10_000]])
        with pytest.raises(ValueError, match="the prompt is empty"):
            engine.generate([[]])
        with pytest.raises(ValueError, match="top_p must be in"):
            SamplingParams(top_p=0)


def test_int8_weights_and_kv_cache(checkpoints):
    path = checkpoints["glm4"]
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    with Engine.from_pretrained(path, num_blocks=32, block_size=4) as ref_engine:
        [ref] = ref_engine.generate(PROMPTS[:1], params)
    with Engine.from_pretrained(
        path, num_blocks=32, block_size=4, quantization="int8", kv_cache_dtype="int8"
    ) as e:
        assert e.runner.caches[0].k.dtype == torch.int8 and e.runner.caches[0].k_scale is not None
        [res] = e.generate(PROMPTS[:1], params)
    assert res.token_ids[:4] == ref.token_ids[:4]


def test_many_asyncio_callers_and_a_thread_share_one_engine(checkpoints):
    """Concurrent streams (one event loop) and a blocking generate (another thread) batch together and
    each gets exactly the tokens it gets alone."""
    import threading

    path = checkpoints["glm"]
    prompts = [list(range(3 + i, 12 + 3 * i)) for i in range(5)]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    with Engine.from_pretrained(path, num_blocks=128, block_size=4) as engine:
        alone = [engine.generate([p], params)[0].token_ids for p in prompts]
        threaded: list = []
        t = threading.Thread(target=lambda: threaded.extend(engine.generate(prompts[3:], params)))
        steps_before = engine.stats()["steps"]

        async def one(p):
            return [ev async for ev in engine.stream(p, params)][-1]

        async def main():
            t.start()
            return await asyncio.gather(*(one(p) for p in prompts[:3]))

        streamed = asyncio.run(main())
        t.join()
        assert [c.token_ids for c in streamed] + [c.token_ids for c in threaded] == alone
        assert engine.stats()["steps"] - steps_before < 5 * 12  # requests shared steps


def test_pool_sized_from_memory_budget_and_prompt_forms(checkpoints):
    from inference.runner import kv_bytes_per_block
    from inference.weights import load_model

    path = checkpoints["glm"]
    model = load_model(path)
    per_block = kv_bytes_per_block(model.cfg, 16, 4, int8=False)
    assert per_block == 2 * 2 * 16 * 2 * 16 * 4  # K and V, 2 layers, 16 tokens, 2 KV heads, hd 16, fp32
    with Engine(model, None, kv_cache_memory=10 * per_block + 5) as engine:
        assert engine.kv.num_blocks == 10 and engine.max_model_len == 160
        with pytest.raises(ValueError, match="this engine has no tokenizer; pass token ids"):
            engine.generate("hello")
    with pytest.raises(ValueError, match="less than one block"):
        Engine(model, None, kv_cache_memory=per_block - 1)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        Engine(model, None, num_blocks=8, cuda_graphs=True)
    with pytest.raises(ValueError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        Engine(model, None, num_blocks=8, gpu_memory_utilization=1.5)
    with Engine.from_pretrained(path, num_blocks=64, block_size=4) as engine:
        p = SamplingParams(max_tokens=3, temperature=0)
        msgs = [{"role": "user", "content": "你好"}]
        ids = engine.tokenizer.encode_chat(msgs)
        [by_ids] = engine.generate(ids, p)  # one prompt given as token ids
        [by_msgs] = engine.generate(msgs, p)  # one prompt given as chat messages
        assert by_ids.token_ids == by_msgs.token_ids and by_msgs.usage.prompt_tokens == len(ids)
        [by_text] = engine.generate("[gMASK]<sop><|user|>\n你好<|assistant|>", p)
        assert by_text.usage.prompt_tokens == len(ids) + 2  # the post-processor adds [gMASK]<sop> again
        with pytest.raises(ValueError, match="got 2 SamplingParams for 1 prompts"):
            engine.generate([ids], [p, p])


def _reclaimable(engine: Engine) -> int:
    """Blocks a new request could get: free ones plus cached ones nobody references."""
    return engine.kv.cache.num_available()


def _wait_idle(engine: Engine, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while (engine.stats()["running"] or engine.stats()["waiting"]) and time.time() < deadline:
        time.sleep(0.01)


def test_timeout_and_cancelled_stream_return_every_block(checkpoints):
    """With prefix caching on, a timed-out request and a stream whose consumer task is cancelled mid-way
    (a client disconnect) leave every block reclaimable, and the engine serves the next request."""
    path = checkpoints["glm"]
    params = SamplingParams(max_tokens=300, ignore_eos=True)
    with Engine.from_pretrained(path, num_blocks=128, block_size=4) as engine:
        assert _reclaimable(engine) == 128
        done: list[Completion] = []
        engine.submit(list(range(5, 40)), params, lambda ev: isinstance(ev, Completion) and done.append(ev),
                      timeout_s=0.2)  # fmt: skip
        deadline = time.time() + 10
        while not done and time.time() < deadline:
            time.sleep(0.01)
        assert done[0].finish_reason == "timeout" and 0 < done[0].usage.completion_tokens < 300
        _wait_idle(engine)
        assert _reclaimable(engine) == 128 and engine.kv.cache.num_cached_blocks > 0

        async def disconnecting_client():
            got: list = []

            async def consume():
                async for ev in engine.stream(list(range(50, 90)), params):
                    got.append(ev)

            task = asyncio.create_task(consume())
            while len(got) < 3:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return got

        assert len(asyncio.run(disconnecting_client())) >= 3
        _wait_idle(engine)
        assert engine.stats()["running"] == 0 and _reclaimable(engine) == 128
        [again] = engine.generate(
            [list(range(5, 40))], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
        )
        assert again.finish_reason == "length" and again.usage.prefix_hit_tokens == 32


OOM_SCRIPT = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from inference import Engine, SamplingParams

path, big_len = sys.argv[1], int(sys.argv[2])
p = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
small = [5, 6, 7, 8, 9, 10, 11]
engine = Engine.from_pretrained(path, num_blocks=big_len // 16 + 64, block_size=16, max_num_seqs=1,
                                max_num_batched_tokens=big_len)
[before] = engine.generate([small], p)  # starts the loop thread and warms every allocation path
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) * 1024
_, hard = resource.getrlimit(resource.RLIMIT_AS)
# 256 MiB of address space to spare: small steps fit, the big prompt's attention mask does not
resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), hard))
# max_num_seqs=1: the big prompt's step runs alone; the small request waits and is not part of it
big_and_small = engine.generate([list(range(1, 500)) * (big_len // 499), small], p)
after = engine.generate([small], p)
resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
print(json.dumps({
    "before": before.token_ids, "big": [big_and_small[0].finish_reason, big_and_small[0].error],
    "queued": [big_and_small[1].finish_reason, big_and_small[1].token_ids], "after": after[0].token_ids,
    "reclaimable": engine.kv.cache.num_available(), "num_blocks": engine.kv.num_blocks,
}))
engine.close()
"""


def test_out_of_memory_step_fails_its_requests_and_the_engine_keeps_serving(checkpoints):
    """A real allocation failure (the process's address space capped, then a prompt whose attention needs
    more) fails that step's request with a clear error; the queued request and later ones are served
    with the same tokens as before, and every block comes back."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", OOM_SCRIPT, str(checkpoints["glm"]), str(499 * 50)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    reason, error = res["big"]
    assert reason == "error" and "allocate" in error, error
    assert res["queued"] == ["length", res["before"]]
    assert res["after"] == res["before"]
    assert res["reclaimable"] == res["num_blocks"]


def cold_and_warm(path, invariant: bool, **device) -> tuple[Completion, Completion]:
    """A prompt computed cold in 64-token chunks, and the same prompt after its first 200 tokens came from
    the prefix cache (12 new tokens in one step); greedy, 16 tokens with logprobs. The keys span several
    attention tiles (64 on the GPU), so both code paths of the prefill kernel are crossed."""
    prefix = [(i * 37 + 11) % 500 + 3 for i in range(200)]
    prompt, other = prefix + list(range(100, 112)), prefix + list(range(200, 212))
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True, logprobs=True)
    opts = dict(num_blocks=160, block_size=4, max_num_batched_tokens=64, batch_invariant=invariant, **device)
    with Engine.from_pretrained(path, enable_prefix_caching=False, **opts) as engine:
        [cold] = engine.generate([prompt], params)
    with Engine.from_pretrained(path, **opts) as engine:
        engine.generate([other], params)
        [warm] = engine.generate([prompt], params)
    assert warm.usage.prefix_hit_tokens == 200 and cold.usage.prefix_hit_tokens == 0
    return cold, warm


def test_batch_invariant_cached_prefix_gives_the_cold_prompts_exact_output(checkpoints):
    """batch_invariant: the same tokens and logprobs, bit for bit, cold and after a prefix hit (the CUDA
    test repeats this in bfloat16, where the default mode differs)."""
    cold, warm = cold_and_warm(checkpoints["glm4"], invariant=True)
    assert warm.token_ids == cold.token_ids
    assert warm.logprobs == cold.logprobs


def _completion_sink(done: dict, i: int):
    def sink(ev) -> None:
        if isinstance(ev, Completion):
            done[i] = ev

    return sink


def test_overlapped_steps_under_a_random_mix_keep_outputs_and_blocks_exact(checkpoints):
    """40 requests submitted at once into a small pool (preemptions), with random lengths, stop ids (a token
    that ends a request while its next step is already launched), a shared prefix, some penalized (those
    steps are not overlapped) and some aborted mid-way: every finished request's tokens equal the same
    request run alone, and afterwards every block is reclaimable with nothing referenced."""
    import random

    path = checkpoints["glm4"]
    rng = random.Random(7)
    shared = [rng.randrange(3, 500) for _ in range(24)]
    cases = []
    for i in range(40):
        prompt = (shared if i % 3 == 0 else []) + [rng.randrange(3, 500) for _ in range(rng.randrange(4, 40))]
        params = SamplingParams(max_tokens=rng.randrange(1, 24), temperature=0, ignore_eos=True,
                                repetition_penalty=1.2 if i % 7 == 0 else 1.0)  # fmt: skip
        cases.append((prompt, params, i % 11 == 5))  # (prompt, params, aborted)
    opts = dict(num_blocks=32, block_size=4, max_num_batched_tokens=64, max_num_seqs=12)
    with Engine.from_pretrained(path, **opts) as engine:
        alone = [engine.generate([p], sp)[0] for p, sp, _ in cases]
        # stop ids: every other request's 3rd token (when it has more) ends it there
        stopped = [
            SamplingParams(**{**sp.__dict__, "stop_token_ids": [a.token_ids[2]]})
            if len(a.token_ids) > 3 and i % 2
            else sp
            for i, ((_, sp, _), a) in enumerate(zip(cases, alone, strict=True))
        ]
        engine.kv.cache.reset()
        done: dict[int, Completion] = {}
        ids = []
        for i, ((prompt, _, _), sp) in enumerate(zip(cases, stopped, strict=True)):
            ids.append(engine.submit(prompt, sp, _completion_sink(done, i)))
        time.sleep(0.05)  # aborts land mid-way (or before a request ran, or after it ended: all valid)
        for i, (_, _, aborted) in enumerate(cases):
            if aborted:
                engine.abort(ids[i])
        deadline = time.time() + 60
        while len(done) < len(cases) and time.time() < deadline:
            time.sleep(0.01)
        assert len(done) == len(cases)
        assert engine.stats()["overlapped_steps"] > 0 and engine.stats()["num_preemptions"] > 0
        _wait_idle(engine)
        assert _reclaimable(engine) == 32
        assert all(rc == 0 for rc in engine.kv.cache.pool.ref_counts)
    kinds = [c.finish_reason for c in done.values()]
    assert kinds.count("stop") >= 5 and kinds.count("length") >= 10, kinds
    for i, ((_, sp, aborted), a) in enumerate(zip(cases, alone, strict=True)):
        c = done[i]
        if aborted and c.finish_reason == "abort":
            assert c.finish_reason == "abort" and c.token_ids == a.token_ids[: len(c.token_ids)]
        elif sp is not stopped[i]:
            k = a.token_ids.index(a.token_ids[2])  # the first occurrence of the stop id ends it
            assert c.finish_reason == "stop" and c.token_ids == a.token_ids[: k + 1], i
        else:
            assert c.finish_reason == "length" and c.token_ids == a.token_ids, i
