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
