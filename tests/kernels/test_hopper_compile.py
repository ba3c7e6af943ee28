"""The kernels' GPU-only variants (inline PTX, programmatic dependent launch, fused epilogues at GPU tile sizes)
compile for sm_90 here, without a GPU: the CPU interpreter never traces them (``tests/kernels/hopper_compile.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.kernels.hopper_compile import VARIANTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="on a GPU the kernel tests compile and run these variants"
)
def test_gpu_only_variants_compile_for_hopper():
    # a process of its own: the kernels read TRITON_INTERPRET when imported, and this one runs without it
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "tests.kernels.hopper_compile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0 and "ptxas" in done.stdout + done.stderr and " ok " not in done.stdout:
        pytest.skip(
            f"SKIPPED LOUDLY: this Triton cannot assemble for sm_90 here (no ptxas?): {done.stdout[-500:]}"
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # every variant reported, each with the PTX it must contain
    assert [line.split(" ok ")[0] for line in lines] == list(VARIANTS), lines
