"""The dispatch table names real Triton launchers, and CPU tensors never reach them."""

from __future__ import annotations

import inspect

import torch

from kernels import dispatch


def test_every_table_entry_loads_a_launcher_with_the_ops_signature():
    ops = {"linear_int8": dispatch.linear, "linear": dispatch.linear}
    for op, target in dispatch.TRITON_KERNELS.items():
        launcher = dispatch._load(target)
        public = ops[op] if op in ops else getattr(dispatch, op)
        # `invariant` picks the launcher (or its configuration) in dispatch; launchers do not take it
        want = [p for p in inspect.signature(public).parameters if p not in dispatch.DISPATCH_OPTIONS]
        got = list(inspect.signature(launcher).parameters)
        assert got[: len(want)] == want, f"{op}: {got} vs {want}"
    assert set(dispatch.TRITON_KERNELS) == {
        "rms_norm",
        "rotary_and_cache",
        "paged_attention",
        "silu_and_mul",
        "linear_int8",
        "linear",
        "qkv_rotary_cache",
        "gate_up_silu",
    }


def test_cpu_tensors_use_the_reference():
    x = torch.randn(3, 8)
    assert dispatch._pick("rms_norm", dispatch.rms_norm_ref, x) is dispatch.rms_norm_ref


def test_invariant_linear_gives_each_row_the_same_bits_whatever_the_batch():
    """A row's result does not depend on how many rows come with it or where it sits (batch-invariant mode):
    300 rows at once, their last 50 alone, and one of them among 3 give identical bits, close to F.linear."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 96, generator=g)
    w, b = torch.randn(40, 96, generator=g), torch.randn(40, generator=g)
    full = dispatch.linear(x, w, b, invariant=True)
    assert torch.equal(dispatch.linear(x[250:], w, b, invariant=True), full[250:])
    assert torch.equal(dispatch.linear(x[259:262], w, b, invariant=True)[1], full[260])
    torch.testing.assert_close(full, torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-4)


def test_invariant_prefill_attention_gives_each_query_the_same_bits_however_it_is_chunked():
    """Batch-invariant attention (the launcher dispatch picks for invariant=True): a sequence's last 10
    queries computed as the end of a 60-query chunk and as a 10-query chunk after a cached prefix give
    identical outputs, close to the reference."""
    from kernels.flash_prefill import flash_prefill_invariant
    from tests.kernels.conftest import DEVICE, assert_close
    from tests.kernels.test_triton_attention import GLM, _batch, _reference

    torch.manual_seed(0)
    args = _batch([60], [150], GLM, torch.bfloat16, quant=False)
    long = flash_prefill_invariant(**args)
    short_args = dict(args, q=args["q"][50:].contiguous(), max_seqlen_q=10)
    short_args["cu_seqlens_q"] = torch.tensor([0, 10], dtype=torch.int32, device=DEVICE)
    assert torch.equal(long[50:], flash_prefill_invariant(**short_args))
    assert_close(long, _reference(args), torch.bfloat16)
