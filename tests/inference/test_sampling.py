"""Sampler transformations: penalties, top-k/top-p filtering, greedy and seeded sampling."""

import pytest
import torch

from inference.sampling import Sampler, SamplingParams, apply_penalties, filter_top_k_top_p, make_generator


def test_repetition_and_presence_penalties():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    out = apply_penalties(logits, SamplingParams(repetition_penalty=2.0), prompt_ids=[0], output_ids=[1])
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]  # positive divided, negative multiplied, unseen untouched
    out = apply_penalties(
        logits,
        SamplingParams(presence_penalty=0.5, frequency_penalty=0.25),
        prompt_ids=[3],
        output_ids=[2, 2],
    )
    assert out.tolist() == [2.0, -2.0, 0.0, 0.5]  # 1.0 - 0.5 - 2 * 0.25
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5]  # input untouched


def test_top_k_top_p_filtering():
    logits = torch.log(torch.tensor([0.5, 0.05, 0.3, 0.15]))
    kept = filter_top_k_top_p(logits, top_k=2, top_p=1.0).isfinite().tolist()
    assert kept == [True, False, True, False]
    kept = filter_top_k_top_p(logits, top_k=0, top_p=0.8).isfinite().tolist()
    assert kept == [True, False, True, False]  # 0.5 + 0.3 reaches 0.8
    kept = filter_top_k_top_p(logits, top_k=0, top_p=0.81).isfinite().tolist()
    assert kept == [True, False, True, True]
    kept = filter_top_k_top_p(logits, top_k=0, top_p=0.1).isfinite().tolist()
    assert kept == [True, False, False, False]  # the best token always survives


def test_sampler_greedy_seeded_and_logprobs():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    greedy = SamplingParams(temperature=0, logprobs=True)
    sampled = SamplingParams(temperature=0.8, top_k=10, seed=3)
    rows = [
        (greedy, [1], [], None),
        (sampled, [1], [], make_generator(3, torch.device("cpu"))),
        (SamplingParams(temperature=0, repetition_penalty=1e9), [int(logits[2].argmax())], [], None),
    ]
    tokens, logprobs = Sampler().sample(logits, rows)
    assert tokens[0] == int(logits[0].argmax())
    assert logprobs[0] == pytest.approx(float(logits[0].log_softmax(-1).max()))
    assert logprobs[1] is None
    assert tokens[1] in logits[1].topk(10).indices.tolist()
    assert tokens[2] != int(logits[2].argmax())  # the penalized prompt token lost its lead
    again, _ = Sampler().sample(logits[1:2], [(sampled, [1], [], make_generator(3, torch.device("cpu")))])
    assert again == [tokens[1]]


def test_precomputed_argmax_serves_plain_greedy_rows_only():
    """A decode graph's argmax (ModelRunner.last_argmax) is taken as the tokens of an all-greedy batch, with
    logprobs if asked; a penalized greedy row or a sampled row in the batch makes the sampler choose itself."""
    torch.manual_seed(1)
    logits = torch.randn(3, 40)
    argmax = logits.argmax(-1)
    greedy = SamplingParams(temperature=0)
    sampled = Sampler().sample_async(logits, [(greedy, [1], [], None)] * 3, argmax=argmax)
    # the given ids themselves, so the runner's feed_tokens sees its own buffer and copies nothing
    assert sampled.tokens is argmax
    tokens, logprobs = sampled.wait()
    assert tokens == argmax.tolist() and logprobs == [None] * 3
    with_lp = SamplingParams(temperature=0, logprobs=True)
    tokens, logprobs = Sampler().sample_async(logits, [(with_lp, [1], [], None)] * 3, argmax=argmax).wait()
    assert tokens == argmax.tolist()
    assert logprobs == pytest.approx(logits.log_softmax(-1).max(-1).values.tolist())
    # a penalty against each row's best token: the given argmax no longer holds
    penalized = [(SamplingParams(temperature=0, repetition_penalty=1e9), [int(t)], [], None) for t in argmax]
    tokens, _ = Sampler().sample_async(logits, penalized, argmax=argmax).wait()
    assert all(t != int(a) for t, a in zip(tokens, argmax, strict=True))
    assert tokens == Sampler().sample(logits, penalized)[0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"stop": [""]}, "stop strings"),
    ],
)
def test_invalid_params_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def _mixed_rows(device: torch.device):
    """Greedy, seeded sampled (top-k, top-p), penalized greedy and penalized sampled rows, with logprobs."""
    sampled = SamplingParams(temperature=0.7, top_k=20, top_p=0.9, seed=11, logprobs=True)
    return [
        (SamplingParams(temperature=0, logprobs=True), [1, 2], [3], None),
        (sampled, [4], [5, 6], make_generator(11, device)),
        (
            SamplingParams(temperature=0, repetition_penalty=1.5, frequency_penalty=0.5),
            [7, 8, 9],
            [9, 9, 2],
            None,
        ),
        (
            SamplingParams(temperature=1.3, top_k=5, presence_penalty=1.0, seed=5),
            [1],
            [1, 2, 3],
            make_generator(5, device),
        ),
        (SamplingParams(temperature=0), [], [], None),
    ]


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    ],
)
def test_batched_rows_sample_as_one_by_one(device):
    """Every row of a mixed batch gets the token (and logprob) it gets when sampled alone: per-row
    parameters, penalties and seeded noise do not leak between rows."""
    dev = torch.device(device)
    torch.manual_seed(1)
    logits = (3 * torch.randn(5, 300)).to(dev)
    batch_tokens, batch_lps = Sampler().sample(logits, _mixed_rows(dev))
    alone = [Sampler().sample(logits[i : i + 1], [row]) for i, row in enumerate(_mixed_rows(dev))]
    assert batch_tokens == [t[0] for t, _ in alone]
    assert batch_lps[2:] == [None, None, None]
    for got, (_, lp) in zip(batch_lps[:2], alone, strict=False):
        assert got == pytest.approx(lp[0], abs=1e-5)
    # the rows' own rules hold: greedy is the argmax, top-k keeps the sampled token among the 5 best of its
    # penalized logits, and the penalized greedy row equals the one-row reference transformation
    assert batch_tokens[0] == int(logits[0].argmax()) and batch_tokens[4] == int(logits[4].argmax())
    p2, prompt2, out2, _ = _mixed_rows(dev)[2]
    assert batch_tokens[2] == int(apply_penalties(logits[2].cpu(), p2, prompt2, out2).argmax())
    p3, prompt3, out3, _ = _mixed_rows(dev)[3]
    top5 = apply_penalties(logits[3].cpu(), p3, prompt3, out3).topk(5).indices.tolist()
    assert batch_tokens[3] in top5


def test_seeded_rows_reproducible_and_distribution_follows_probabilities():
    """The same seed gives the same tokens batch after batch; unseeded draws follow softmax(logits / T)."""
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1, 1e-9]]))
    p = SamplingParams(temperature=1.0, seed=3)
    first = [
        Sampler().sample(logits, [(p, [], [], make_generator(3, torch.device("cpu")))])[0][0]
        for _ in range(3)
    ]
    assert len(set(first)) == 1
    torch.manual_seed(0)
    rows = [(SamplingParams(temperature=1.0), [], [], None)] * 4000
    tokens, _ = Sampler().sample(logits.expand(4000, 4).contiguous(), rows)
    freq = torch.bincount(torch.tensor(tokens), minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1, 0.0]), atol=0.03)
