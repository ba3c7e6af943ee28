"""The engine on a CUDA device (skipped without one): float32 greedy parity with transformers, bfloat16
and INT8 close to it, with whichever kernels dispatch picks (AUTOGLM_KERNELS=torch forces references)."""

import pytest
import torch

from inference import Engine, SamplingParams
from inference.runner import ModelRunner
from inference.weights import load_model

from .conftest import hf_model, rel_err
from .test_engine import PROMPTS, hf_greedy

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


@pytest.mark.parametrize("quant,kv", [(None, "auto"), ("int8", "auto"), ("int8", "int8")])
def test_cuda_bf16_and_int8_logits_close(checkpoints, quant, kv):
    path = checkpoints["glm4"]
    tokens = [(i * 31 + 7) % 560 for i in range(40)]
    with torch.no_grad():
        ref = hf_model(path)(torch.tensor([tokens])).logits[0, -1]
    model = load_model(path, device="cuda", dtype="bfloat16", quantization=quant)
    runner = ModelRunner(model, num_blocks=8, block_size=16, kv_cache_dtype=kv)
    runner.execute([(tokens, 0, 30, [3, 1, 6], False)])
    out = runner.execute([(tokens, 30, 10, [3, 1, 6], True)])[0].cpu()
    assert rel_err(out, ref) < (0.05 if quant is None else 0.15)
