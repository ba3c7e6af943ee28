"""The GPU engine benchmark's code path, on the CPU with a tiny model (`benchmarks/engine.py --tiny`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "engine.py"),
            "--tiny",
            "--json",
            str(out),
            "--variants",
            "hf-eager,hf-compile,bf16,int8kv,int8",
        ],  # every section of every variant
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    w = result["workload"]
    variants = result["variants"]
    assert list(variants) == ["hf-eager", "bf16", "int8", "int8kv", "hf-compile"]
    for name, v in variants.items():
        errors = {k: s["error"] for k, s in v.items() if isinstance(s, dict) and "error" in s}
        assert not errors, (name, errors)
        assert v["decode"]["tok_s"] > 0 and v["ttft"]["ttft_ms"] > 0
        assert 0 < v["decode"]["frac_roofline"]
    for name in ("bf16", "int8kv", "int8"):
        v = variants[name]
        # the warm request reused the whole shared prefix (whole blocks of it) and gave the cold tokens
        assert v["prefix"]["prefix_hit_tokens"] == [w["prefix_len"] // 16 * 16] * w["prefix_reps"]
        assert v["prefix"]["identical"], v["prefix"]
        assert v["rag"]["on"]["prefix_hit_tokens"] > 0 and v["rag"]["off"]["prefix_hit_tokens"] == 0
        assert v["throughput"]["steady"]["tok_s"] > 0
    assert variants["int8kv"]["capacity"]["tokens"] > 1.9 * variants["bf16"]["capacity"]["tokens"]
    assert variants["int8"]["weight_bytes"] < 0.6 * variants["bf16"]["weight_bytes"]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("| bf16 batch-1 decode >= 85% of roofline |"), last
