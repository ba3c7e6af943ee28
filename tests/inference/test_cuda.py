"""The engine on a CUDA device (skipped without one): float32 greedy parity with transformers, bfloat16
and INT8 close to it, with whichever kernels dispatch picks (AUTOGLM_KERNELS=torch forces references)."""

import pytest
import torch

from inference import Engine, SamplingParams
from inference.runner import ModelRunner
from inference.weights import load_model

from .conftest import hf_model, rel_err
from .test_engine import PROMPTS, cold_and_warm, hf_greedy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("arch", ["glm", "glm4"])
def test_cuda_float32_greedy_matches_transformers(checkpoints, arch):
    path = checkpoints[arch]
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    with Engine.from_pretrained(path, device="cuda", dtype="float32", num_blocks=64, block_size=16) as engine:
        assert engine.model.embed.is_cuda and engine.runner.caches[0].k.is_cuda
        results = engine.generate(PROMPTS, params)
        for prompt, res in zip(PROMPTS, results, strict=True):
            assert res.token_ids == hf_greedy(path, engine.tokenizer.encode(prompt), 32)


@pytest.mark.parametrize(
    "quant,kv,imma",
    [(None, "auto", False), ("int8", "auto", False), ("int8", "int8", False), ("int8", "auto", True)],
)
def test_cuda_bf16_and_int8_logits_close(checkpoints, quant, kv, imma, monkeypatch):
    # imma: INT8 weights on the int8 x int8 path (AUTOGLM_W8_IMMA=1: the 30- and 10-row steps split their rows
    # into int8 planes)
    monkeypatch.setenv("AUTOGLM_W8_IMMA", "1" if imma else "0")
    path = checkpoints["glm4"]
    tokens = [(i * 31 + 7) % 560 for i in range(40)]
    with torch.no_grad():
        ref = hf_model(path)(torch.tensor([tokens])).logits[0, -1]
    model = load_model(path, device="cuda", dtype="bfloat16", quantization=quant)
    runner = ModelRunner(model, num_blocks=8, block_size=16, kv_cache_dtype=kv)
    runner.execute([(tokens, 0, 30, [3, 1, 6], False)])
    out = runner.execute([(tokens, 30, 10, [3, 1, 6], True)])[0].cpu()
    assert rel_err(out, ref) < (0.05 if quant is None else 0.15)


@pytest.mark.parametrize("kv", ["auto", "int8"])
def test_graph_replay_matches_eager(checkpoints, kv):
    """Decode batches of 1..5 rows replayed from the padded graphs give the eager forward's logits (float32:
    only the summation order may differ) and greedy tokens; padding rows never touch the sequences' blocks.
    (Batch 1 in a graph launches decode attention early, ``kernels.flash_decode.EARLY_BATCH``; with either
    cache.)"""
    path = checkpoints["glm4"]
    model = load_model(path, device="cuda", dtype="float32")
    runner = ModelRunner(model, num_blocks=64, block_size=16, max_num_seqs=8, kv_cache_dtype=kv)
    runner.capture_graphs(8)
    assert sorted(runner.graphs) == [1, 2, 4, 8]
    prompts = [[(i * 31 + 7 * b) % 560 for i in range(20 + 9 * b)] for b in range(5)]
    blocks = [[4 * b + 3, 4 * b + 2, 4 * b + 1, 4 * b] for b in range(5)]
    runner.execute([(p, 0, len(p), bl, False) for p, bl in zip(prompts, blocks, strict=True)])
    for n in (1, 3, 5):
        seqs = [(p, len(p) - 1, 1, bl, True) for p, bl in zip(prompts[:n], blocks[:n], strict=True)]
        before = runner.graph_replays
        graph = runner.execute(seqs).clone()
        assert runner.graph_replays == before + 1
        # the graph's greedy ids, already in the feed for the next step
        assert torch.equal(runner.last_argmax, graph.argmax(-1))
        assert runner.last_argmax.data_ptr() == runner.feed.data_ptr()
        ids, pos, meta, _ = runner.prepare(seqs)
        with torch.inference_mode():
            eager = model.compute_logits(model.forward(ids, pos, meta, runner.caches))
        assert rel_err(graph, eager) < 1e-4, n
        assert torch.equal(graph.argmax(-1), eager.argmax(-1))


def test_prefill_graph_matches_eager_and_padding_stays_in_the_dummy_block(checkpoints):
    """A one-sequence chunk after a cached prefix replays the prefill graph of the next power of two: the
    eager forward's logits (float32), and only the chunk's own slots (and the dummy block) are written."""
    model = load_model(checkpoints["glm4"], device="cuda", dtype="float32")
    runner = ModelRunner(model, num_blocks=64, block_size=16, max_num_seqs=4)
    runner.capture_graphs(4, prefill_tokens=64)
    assert sorted(runner.prefill_graphs) == [16, 32, 64]
    graphs = runner.prefill_graphs
    tokens = [(i * 17 + 3) % 560 for i in range(70)]
    blocks = [9, 2, 7, 30, 11]
    runner.prefill_graphs = {}  # eager: the cached prefix, and the reference below
    runner.execute([(tokens, 0, 40, blocks, False)])
    runner.prefill_graphs = graphs
    caches = [c.k[: runner.dummy_block].clone() for c in runner.caches]
    before = runner.graph_replays
    graph = runner.execute([(tokens, 40, 30, blocks, True)]).clone()  # 30 tokens: the 32-token graph
    assert runner.graph_replays == before + 1 and graph.shape == (1, model.cfg.vocab_size)
    written = torch.zeros(runner.dummy_block, 16, dtype=torch.bool, device="cuda")
    for pos in range(40, 70):
        written[blocks[pos // 16], pos % 16] = True
    for c, old in zip(runner.caches, caches, strict=True):
        assert torch.equal(c.k[: runner.dummy_block][~written], old[~written])
        assert not torch.equal(c.k[: runner.dummy_block][written], old[written])
    runner.prefill_graphs = {}
    eager = runner.execute([(tokens, 40, 30, blocks, True)])
    runner.prefill_graphs = graphs
    assert rel_err(graph, eager) < 1e-4
    assert torch.equal(graph.argmax(-1), eager.argmax(-1))
    assert runner.execute([(tokens, 40, 20, blocks, False)]).shape == (0, model.cfg.vocab_size)


def test_engine_with_graphs_generates_like_eager_and_sizes_pool_from_memory(checkpoints):
    """Default CUDA engine: graphs captured, KV pool sized from gpu_memory_utilization after a profiled
    step; greedy (and seeded sampled) outputs equal the eager engine's."""
    path = checkpoints["glm4"]
    prompts = [[(i * 13 + b) % 560 for i in range(5 + 7 * b)] for b in range(6)]
    greedy = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    seeded = SamplingParams(max_tokens=24, temperature=0.8, top_p=0.9, seed=4, ignore_eos=True)
    total = torch.cuda.mem_get_info()[1]
    with Engine.from_pretrained(path, device="cuda", dtype="float32", gpu_memory_utilization=0.2) as engine:
        assert engine.runner.graphs and max(engine.runner.graphs) == 64
        assert sorted(engine.runner.prefill_graphs) == [16, 32, 64, 128, 256, 512]
        used = total - torch.cuda.mem_get_info()[0]
        assert used <= 0.2 * total + (256 << 20), (used, total)
        assert engine.kv.num_blocks * 16 > 1_000_000  # a tiny model: the pool takes most of the budget
        with_graphs = engine.generate(prompts, [greedy] * 5 + [seeded])
        steps = engine.stats()["steps"]
    with Engine.from_pretrained(
        path, device="cuda", dtype="float32", num_blocks=256, enforce_eager=True
    ) as eager:
        assert not eager.runner.graphs
        without = eager.generate(prompts, [greedy] * 5 + [seeded])
    assert [c.token_ids for c in with_graphs] == [c.token_ids for c in without]
    assert steps < 6 * 24
    with pytest.raises(ValueError, match="no GPU memory left for the KV cache"):
        Engine.from_pretrained(path, device="cuda", dtype="bfloat16", gpu_memory_utilization=0.001)


def test_cuda_out_of_memory_fails_the_step_and_graphs_still_replay(checkpoints):
    """A real CUDA OOM (the device filled until the allocator refuses even 2 MiB, then a prompt whose step
    needs more) fails that request with a clear error; its blocks come back and later decodes (graph
    replays) give the same tokens as before."""
    import gc

    path = checkpoints["glm4"]
    p = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    small = [[5, 6, 7, 8, 9], [10, 11, 12]]
    big_len = 60_000  # one 60k-token step: its float32 activations take tens of MiB
    with Engine.from_pretrained(
        path, device="cuda", dtype="float32", num_blocks=big_len // 16 + 64, max_num_batched_tokens=big_len,
        max_num_seqs=4, enable_prefix_caching=False,
    ) as engine:  # fmt: skip
        before = [c.token_ids for c in engine.generate(small, p)]
        gc.collect()  # engines of earlier tests, so that freeing them cannot make room mid-step
        torch.cuda.empty_cache()
        hog: list[torch.Tensor] = []
        try:
            for chunk in (1 << 30, 64 << 20, 2 << 20):  # take the device's memory until allocation fails
                while True:
                    try:
                        hog.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
                    except torch.OutOfMemoryError:
                        break
            [big] = engine.generate([[(i * 7) % 560 for i in range(big_len)]], p)
        finally:
            hog.clear()
            torch.cuda.empty_cache()
        assert big.finish_reason == "error" and "out of GPU memory" in big.error, (
            big.finish_reason,
            big.error,
        )
        assert engine.kv.cache.num_available() == engine.kv.num_blocks
        replays = engine.stats()["graph_steps"]
        assert [c.token_ids for c in engine.generate(small, p)] == before
        assert engine.stats()["graph_steps"] >= replays + 14  # decode steps of two rows: the bs-2 graph


def test_steps_issue_no_host_synchronization(checkpoints):
    """Prefill, a graph-replayed decode and an eager decode, each sampled with mixed greedy/top-k/top-p/
    penalized/seeded rows, run under torch's sync debug mode set to raise: nothing in a step waits for the
    device (the token ids are read afterwards, from pinned memory, after an event)."""
    from inference.sampling import Sampler, make_generator

    model = load_model(checkpoints["glm4"], device="cuda", dtype="bfloat16")
    runner = ModelRunner(model, num_blocks=64, block_size=16, max_num_seqs=4)
    runner.capture_graphs(4)
    sampler = Sampler()
    prompts = [[(i * 11 + b) % 560 for i in range(30 + b)] for b in range(6)]
    blocks = [[2 * b, 2 * b + 1, 40 + b] for b in range(6)]
    prefill = [(p, 0, len(p), bl, True) for p, bl in zip(prompts, blocks, strict=True)]
    graph = [(p, len(p) - 1, 1, bl, True) for p, bl in zip(prompts[:3], blocks[:3], strict=True)]
    eager = [(p, len(p) - 1, 1, bl, True) for p, bl in zip(prompts, blocks, strict=True)]  # 6 > 4 rows

    def rows(n):
        kinds = [
            SamplingParams(temperature=0),
            SamplingParams(temperature=0.7, top_k=5, top_p=0.9),
            SamplingParams(temperature=0, repetition_penalty=1.3, presence_penalty=0.5, logprobs=True),
            SamplingParams(temperature=1.0, seed=3),
        ]
        return [(k := kinds[i % 4], prompts[i], [1, 2], make_generator(3, runner.device) if k.seed else None)
                for i in range(n)]  # fmt: skip

    def run_all() -> list[tuple[list[int], list]]:
        # each step waits once for its ids: an event, then a read of pinned host memory
        out = [sampler.sample_async(runner.execute(s), rows(len(s))).wait() for s in (prefill, graph, eager)]
        # an all-greedy graph step: the graph's own argmax, copied to the host
        logits = runner.execute(graph)
        greedy = [(SamplingParams(temperature=0), prompts[i], [], None) for i in range(3)]
        return out + [sampler.sample_async(logits, greedy, argmax=runner.last_argmax).wait()]

    warm = run_all()  # compiles and autotunes (those sync) outside the checked region
    torch.cuda.set_sync_debug_mode("error")
    try:
        results = run_all()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert [len(t) for t, _ in results] == [6, 3, 6, 3]
    assert results[0][0][0] == warm[0][0][0]  # the prefill step's greedy row: same token again
    assert runner.graph_replays == 4


def test_batch_invariant_bf16_prefix_hit_matches_cold_bit_for_bit(checkpoints):
    """bfloat16 with graphs: in batch-invariant mode the prompt's cold run (chunks of 64, eager) and its run
    after a prefix hit (12 tokens, the 16-token prefill graph) give identical tokens and logprobs."""
    cold, warm = cold_and_warm(checkpoints["glm4"], invariant=True, device="cuda", dtype="bfloat16")
    assert warm.token_ids == cold.token_ids and warm.logprobs == cold.logprobs


def test_int8_engine_chooses_its_chunk_paths_while_warming_up(checkpoints, monkeypatch):
    # INT8 weights, CUDA graphs: an eager prefill chunk of 513-1,024 rows (above the prefill graphs) chooses its
    # W8A16 path on first use; the engine makes that choice while it starts, not during the first long prompt
    from kernels import int8_matmul

    monkeypatch.setenv("AUTOGLM_W8_IMMA", "auto")
    monkeypatch.setattr(int8_matmul, "_IMMA", {})
    path = checkpoints["glm4"]
    with Engine.from_pretrained(
        path, device="cuda", quantization="int8", gpu_memory_utilization=0.2
    ) as engine:
        chosen = int8_matmul.imma_decisions()
        assert {d["rows_bucket"] for d in chosen} >= {1024}, chosen
        prompt = [(i * 13 + 5) % 560 for i in range(700)]
        (out,) = engine.generate([prompt], [SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)])
        assert len(out.token_ids) == 4
        assert int8_matmul.imma_decisions() == chosen  # the 700-row chunk found its choice made
