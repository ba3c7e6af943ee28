"""KV pool sizing: how many blocks fit beside the weights, the activation peak and the CUDA graphs.

On CUDA (as vLLM does): run one forward at the step's token budget (max_num_batched_tokens tokens over
max_num_seqs sequences, every one sampled with top-k/top-p/penalties/logprobs) on a throw-away cache,
read the activation peak from torch.cuda.max_memory_allocated, do the same for a decode step at
max_num_seqs (what the graphs' private pool will hold), then give the KV cache what is left of
gpu_memory_utilization x total memory after everything already in use on the device.
"""

from __future__ import annotations

import logging

import torch

from .model import GlmModel
from .runner import ModelRunner, kv_bytes_per_block, prefill_graph_sizes
from .sampling import Sampler, SamplingParams

log = logging.getLogger(__name__)

CPU_KV_BYTES = 1 << 30  # the pool on the CPU when no budget is given
GRAPH_OVERHEAD = 128 << 20


def bytes_per_block(model: GlmModel, block_size: int, kv_cache_dtype: str) -> int:
    elem = torch.tensor([], dtype=model.dtype).element_size()
    return kv_bytes_per_block(model.cfg, block_size, elem, kv_cache_dtype == "int8")


def blocks_for_budget(model: GlmModel, block_size: int, kv_cache_dtype: str, budget: int | None) -> int:
    """Pool size from a byte budget (None: 1 GiB; only the CPU gets here without one)."""
    per_block = bytes_per_block(model, block_size, kv_cache_dtype)
    budget = CPU_KV_BYTES if budget is None else budget
    n = budget // per_block
    if n < 1:
        raise ValueError(f"kv_cache_memory of {budget} bytes is less than one block ({per_block} bytes)")
    return int(n)


def _peak(fn) -> int:
    """Bytes allocated at fn's peak above what was allocated before it (run once to warm up first:
    Triton's autotuning allocates benchmark buffers that are no part of a step)."""
    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@torch.inference_mode()
def profile_kv_budget(
    model: GlmModel,
    block_size: int,
    kv_cache_dtype: str,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    gpu_memory_utilization: float,
    cuda_graphs: bool,
    prefill_graph_tokens: int = 0,
    batch_invariant: bool = False,
) -> int:
    """Bytes the KV pool may take on the model's CUDA device (may be <= 0: nothing fits)."""
    act, graphs = _profile_steps(
        model, block_size, kv_cache_dtype, max_num_batched_tokens, max_num_seqs, cuda_graphs,
        prefill_graph_tokens, batch_invariant,
    )  # fmt: skip
    torch.cuda.empty_cache()  # the throw-away cache and the activations go back to the device
    free, total = torch.cuda.mem_get_info(model.device)
    budget = int(total * gpu_memory_utilization) - (total - free) - act - graphs
    log.info(
        "memory: %.2f GiB total, %.2f GiB in use (weights, context, other processes), activation peak "
        "%.2f GiB, decode graphs ~%.2f GiB; KV cache gets %.2f GiB (gpu_memory_utilization %.2f)",
        total / 2**30, (total - free) / 2**30, act / 2**30, graphs / 2**30, budget / 2**30, gpu_memory_utilization,
    )  # fmt: skip
    return budget


def _profile_steps(
    model: GlmModel, block_size: int, kv_cache_dtype: str, max_num_batched_tokens: int, max_num_seqs: int,
    cuda_graphs: bool, prefill_graph_tokens: int = 0, batch_invariant: bool = False,
) -> tuple[int, int]:  # fmt: skip
    """(activation peak of a full step, memory of the graphs' pool) in bytes."""
    T = max_num_batched_tokens
    B = min(max_num_seqs, T)
    lens = [T // B + (i < T % B) for i in range(B)]
    per_seq = -(-max(lens) // block_size)
    tp = max(prefill_graph_sizes(prefill_graph_tokens), default=0)
    runner = ModelRunner(
        model, max(B * per_seq, max_num_seqs, -(-tp // block_size)), block_size, kv_cache_dtype,
        max_num_seqs=max(B, max_num_seqs), max_num_batched_tokens=T, batch_invariant=batch_invariant,
    )  # fmt: skip
    prefill = [([0] * n, 0, n, list(range(i * per_seq, (i + 1) * per_seq)), True) for i, n in enumerate(lens)]
    worst = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, repetition_penalty=1.1, presence_penalty=0.1,
                           logprobs=True)  # fmt: skip
    sampler = Sampler()

    def step() -> None:
        logits = runner.execute(prefill)
        sampler.sample(logits, [(worst, s[0], [1, 2], None) for s in prefill])

    act = _peak(step)
    if not cuda_graphs:
        return act, 0
    decode = [([0, 0], 1, 1, [i], True) for i in range(max_num_seqs)]
    # the graphs' pool holds about one decode step's activations; the logits buffer is shared by all sizes;
    # GRAPH_OVERHEAD covers what capture itself takes (measured on an H200: estimate + 40 MiB)
    step = _peak(lambda: runner.execute(decode))
    if tp:  # the largest prefill graph's step (one sequence of tp tokens)
        chunk = [([0] * tp, 0, tp, list(range(-(-tp // block_size))), True)]
        step = max(step, _peak(lambda: runner.execute(chunk)))
    return act, step + max_num_seqs * model.cfg.vocab_size * 4 + GRAPH_OVERHEAD
