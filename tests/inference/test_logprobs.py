"""Log-probabilities from the engine against a full forward pass of transformers' model on the same weights:
the prompt's (every position, chunked prefill, a prefix the cache holds) and each generated token's likeliest
alternatives."""

import time

import pytest
import torch

from inference import Engine, SamplingParams, TokenEvent

from .conftest import hf_model

PROMPT = (
    "Prefix caching reuses the key and value blocks of a shared system prompt and shared context passages."
)


def hf_log_softmax(path, ids: list[int]) -> torch.Tensor:
    """(len(ids), V) log-probabilities of the next token at every position, from one forward pass."""
    with torch.no_grad():
        return hf_model(path)(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def assert_prompt_logprobs(got, ids: list[int], ref: torch.Tensor, k: int) -> None:
    assert len(got) == len(ids) and got[0] is None  # the first token has no context
    for p in range(1, len(ids)):
        lp, top = got[p]
        assert lp == pytest.approx(ref[p - 1, ids[p]].item(), abs=1e-4), p
        want = ref[p - 1].topk(k)
        assert [t for t, _ in top] == want.indices.tolist(), p  # the k largest, likeliest first
        assert [v for _, v in top] == pytest.approx(want.values.tolist(), abs=1e-4)
        assert all(a[1] >= b[1] for a, b in zip(top, top[1:], strict=False))


@pytest.mark.parametrize("chunk", [2048, 7])  # 7: the prompt is prefilled in chunks of 7 tokens
def test_prompt_logprobs_are_transformers_log_softmax_at_every_position(checkpoints, chunk):
    path = checkpoints["glm4"]
    with Engine.from_pretrained(path, num_blocks=64, block_size=4, max_num_batched_tokens=chunk) as engine:
        ids = engine.encode_prompt(PROMPT)
        assert len(ids) > 3 * 7
        ref = hf_log_softmax(path, ids)
        params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True, prompt_logprobs=3)
        plain = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
        scored, other = engine.generate(
            [ids, ids[:12]], [params, plain]
        )  # batched with one that does not ask
        assert_prompt_logprobs(scored.prompt_logprobs, ids, ref, 3)
        assert other.prompt_logprobs is None and other.logprobs is None
        # asking changes nothing of the output
        assert scored.token_ids == engine.generate([ids], plain)[0].token_ids
        assert other.token_ids == engine.generate([ids[:12]], plain)[0].token_ids
        [zero] = engine.generate([ids], SamplingParams(max_tokens=1, prompt_logprobs=0))
        assert [e[1] for e in zero.prompt_logprobs[1:]] == [[]] * (len(ids) - 1)
        assert [e[0] for e in zero.prompt_logprobs[1:]] == [e[0] for e in scored.prompt_logprobs[1:]]
        [one] = engine.generate([ids[:1]], params)
        assert one.prompt_logprobs == [None]


def test_a_cached_prefix_is_recomputed_for_prompt_logprobs(checkpoints):
    path = checkpoints["glm"]
    with Engine.from_pretrained(path, num_blocks=64, block_size=4) as engine:
        ids = engine.encode_prompt(PROMPT)
        greedy = SamplingParams(max_tokens=2, temperature=0, ignore_eos=True)
        engine.generate([ids], greedy)  # caches the prompt's full blocks
        [warm] = engine.generate([ids], greedy)
        assert warm.usage.prefix_hit_tokens > 0
        scored = SamplingParams(max_tokens=2, temperature=0, ignore_eos=True, prompt_logprobs=2)
        [r] = engine.generate([ids], scored)
        assert r.usage.prefix_hit_tokens == 0  # recomputed: a cached position has no logits
        assert_prompt_logprobs(r.prompt_logprobs, ids, hf_log_softmax(path, ids), 2)
        assert r.token_ids == warm.token_ids
        [again] = engine.generate([ids], greedy)
        assert again.usage.prefix_hit_tokens == warm.usage.prefix_hit_tokens  # the cache still serves others


def test_top_logprobs_of_generated_tokens(checkpoints):
    path = checkpoints["glm4"]
    with Engine.from_pretrained(path, num_blocks=64, block_size=4) as engine:
        ids = engine.encode_prompt("The engine answers questions")
        params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True, logprobs=True, top_logprobs=5)
        mixed = [params, SamplingParams(max_tokens=6, temperature=0, ignore_eos=True, logprobs=True, top_logprobs=2),
                 SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)]  # fmt: skip
        r, two, none = engine.generate([ids] * 3, mixed)
        ref = hf_log_softmax(path, ids + r.token_ids)
        assert len(r.top_logprobs) == len(r.logprobs) == len(r.token_ids) == 6
        for j, (tok, lp, top) in enumerate(zip(r.token_ids, r.logprobs, r.top_logprobs, strict=True)):
            row = ref[len(ids) - 1 + j]
            want = row.topk(5)
            assert [t for t, _ in top] == want.indices.tolist()
            assert [v for _, v in top] == pytest.approx(want.values.tolist(), abs=1e-4)
            assert top[0] == (tok, pytest.approx(lp, abs=1e-6))  # greedy: the chosen token is the likeliest
        assert two.token_ids == r.token_ids
        assert [[t for t, _ in top] for top in two.top_logprobs] == [
            [t for t, _ in top[:2]] for top in r.top_logprobs
        ]
        assert [v for top in two.top_logprobs for _, v in top] == pytest.approx(
            [v for top in r.top_logprobs for _, v in top[:2]], abs=1e-5
        )
        assert none.top_logprobs is None and none.token_ids == r.token_ids
        events = []
        engine.submit(ids, params, events.append)
        deadline = time.monotonic() + 60
        while (not events or isinstance(events[-1], TokenEvent)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [[t for t, _ in ev.top_logprobs] for ev in events[:-1]] == [
            [t for t, _ in top] for top in r.top_logprobs
        ]
        assert events[-1].top_logprobs == [
            ev.top_logprobs for ev in events[:-1]
        ]  # the Completion has them all


def test_bad_logprob_options_are_caller_errors():
    with pytest.raises(ValueError, match="top_logprobs must be in"):
        SamplingParams(logprobs=True, top_logprobs=21)
    with pytest.raises(ValueError, match="top_logprobs needs logprobs"):
        SamplingParams(top_logprobs=2)
    with pytest.raises(ValueError, match="prompt_logprobs must be"):
        SamplingParams(prompt_logprobs=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_and_logprobs_together(checkpoints):
    # a scoring prefill runs eagerly; the decode graphs keep serving every step (top logprobs come back through
    # their own pinned buffer)
    path = checkpoints["glm4"]
    with Engine.from_pretrained(path, device="cuda", dtype="float32", num_blocks=64, block_size=16) as engine:
        assert engine.runner.graphs
        ids = engine.encode_prompt(PROMPT)
        ref = hf_log_softmax(path, ids)
        scored = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, logprobs=True, top_logprobs=4,
                                prompt_logprobs=5)  # fmt: skip
        plain = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
        replays = engine.stats()["graph_steps"]
        r, other = engine.generate([ids, ids[:10]], [scored, plain])
        assert engine.stats()["graph_steps"] > replays
        assert_prompt_logprobs(r.prompt_logprobs, ids, ref, 5)
        full = hf_log_softmax(path, ids + r.token_ids)
        for j, (tok, top) in enumerate(zip(r.token_ids, r.top_logprobs, strict=True)):
            assert [t for t, _ in top] == full[len(ids) - 1 + j].topk(4).indices.tolist()
            assert top[0][0] == tok
        assert r.token_ids == engine.generate([ids], plain)[0].token_ids
        assert other.token_ids == engine.generate([ids[:10]], plain)[0].token_ids


def test_prompt_logprobs_survive_preemption(checkpoints):
    # the pool holds one sequence's 84 tokens at a time: requests are preempted and recomputed, the scoring one
    # included, and each prompt position is scored once
    path = checkpoints["glm4"]
    prompts = [list(range(10 + 7 * i, 30 + 7 * i)) for i in range(4)]
    plain = SamplingParams(max_tokens=64, temperature=0, ignore_eos=True)
    scored = SamplingParams(max_tokens=64, temperature=0, ignore_eos=True, prompt_logprobs=2)
    with Engine.from_pretrained(path, num_blocks=24, block_size=4, max_num_batched_tokens=8) as engine:
        results = engine.generate(prompts, [plain, scored, plain, scored])
        assert engine.stats()["num_preemptions"] > 0
        for ids, r in zip(prompts[1::2], results[1::2], strict=True):
            assert_prompt_logprobs(r.prompt_logprobs, ids, hf_log_softmax(path, ids), 2)
        assert results[1].token_ids == engine.generate([prompts[1]], plain)[0].token_ids
