"""Logits of our GLM-4 over the paged cache against transformers on the same weights (float32)."""

import pytest
import torch

from inference.runner import ModelRunner
from inference.weights import load_model

from .conftest import hf_model, rel_err

TOL = 1e-4


@pytest.fixture(scope="module", params=["glm", "glm4"])
def arch_path(request, checkpoints):
    return checkpoints[request.param]


def _hf_logits(path, tokens):
    with torch.no_grad():
        return hf_model(path)(torch.tensor([tokens])).logits[0]  # (L, V)


def test_prefill_and_every_decode_step(arch_path):
    """Prefill 37 tokens, then 64 greedy decode steps, each step's logits within 1e-4 of transformers."""
    model = load_model(arch_path, dtype="float32")
    runner = ModelRunner(model, num_blocks=32, block_size=4)  # blocks deliberately scattered
    blocks = [
        7,
        3,
        30,
        12,
        0,
        19,
        25,
        1,
        8,
        9,
        10,
        11,
        13,
        14,
        15,
        16,
        17,
        18,
        20,
        21,
        22,
        23,
        24,
        26,
        27,
        28,
    ]
    tokens = [(i * 37 + 11) % 560 for i in range(37)]
    logits = [runner.execute([(tokens, 0, len(tokens), blocks, True)])[0]]
    for _ in range(64):
        tokens.append(int(logits[-1].argmax()))
        logits.append(runner.execute([(tokens, len(tokens) - 1, 1, blocks, True)])[0])
    ref = _hf_logits(arch_path, tokens)
    for step, lg in enumerate(logits):
        pos = 36 + step
        assert rel_err(lg, ref[pos]) < TOL, f"step {step}"


def test_chunked_prefill_and_mixed_batch(arch_path):
    """Three sequences of different lengths in one packed batch: one prefilled in chunks of 5 tokens,
    one decoding, one fresh prefill; the logits match transformers per sequence."""
    model = load_model(arch_path)
    runner = ModelRunner(model, num_blocks=64, block_size=4)
    a = [(i * 13 + 5) % 500 for i in range(23)]
    b = [(i * 7 + 2) % 500 for i in range(9)]
    c = [(i * 29 + 1) % 500 for i in range(14)]
    ba, bb, bc = list(range(0, 8)), list(range(8, 16)), list(range(16, 24))
    # a: chunks of 5 tokens; b: full prefill minus its last token first, so it decodes in the mixed step
    for start in range(0, 20, 5):
        runner.execute([(a, start, 5, ba, False)])
    runner.execute([(b, 0, 8, bb, False)])
    out = runner.execute([(a, 20, 3, ba, True), (b, 8, 1, bb, True), (c, 0, 14, bc, True)])
    for row, seq in zip(out, (a, b, c), strict=True):
        assert rel_err(row, _hf_logits(arch_path, seq)[-1]) < TOL


def test_bfloat16_error_no_worse_than_transformers_bfloat16(checkpoints):
    """bfloat16 drifts from float32; ours must drift about as much as transformers' own bfloat16 run."""
    from transformers import AutoModelForCausalLM

    path = checkpoints["glm4"]
    tokens = list(range(5, 30))
    outs = []
    for dtype in ("float32", "bfloat16"):
        runner = ModelRunner(load_model(path, dtype=dtype), num_blocks=16, block_size=16)
        outs.append(runner.execute([(tokens, 0, len(tokens), [2, 5], True)])[0])
    assert outs[1].dtype == torch.float32
    hf16 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        ref16 = hf16(torch.tensor([tokens])).logits[0, -1].float()
    hf_err = rel_err(ref16, outs[0])
    assert 1e-3 < rel_err(outs[1], outs[0]) < 1.5 * hf_err + 5e-3
