"""The dispatch table names real Triton launchers, and CPU tensors never reach them."""

from __future__ import annotations

import inspect

import torch

from kernels import dispatch


def test_every_table_entry_loads_a_launcher_with_the_ops_signature():
    ops = {"linear_int8": dispatch.linear}
    for op, target in dispatch.TRITON_KERNELS.items():
        launcher = dispatch._load(target)
        public = ops[op] if op in ops else getattr(dispatch, op)
        want = list(inspect.signature(public).parameters)
        got = list(inspect.signature(launcher).parameters)
        assert got[: len(want)] == want, f"{op}: {got} vs {want}"
    assert set(dispatch.TRITON_KERNELS) == {
        "rms_norm",
        "rotary_and_cache",
        "paged_attention",
        "silu_and_mul",
        "linear_int8",
    }


def test_cpu_tensors_use_the_reference():
    x = torch.randn(3, 8)
    assert dispatch._pick("rms_norm", dispatch.rms_norm_ref, x) is dispatch.rms_norm_ref
