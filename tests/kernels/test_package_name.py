"""Our top-level `kernels` package and Hugging Face's `kernels` distribution share an import name."""

from __future__ import annotations

from importlib import metadata

import pytest

import kernels


def test_the_hub_kernels_distribution_is_not_installed():
    # transformers >= 5.25 requires it and imports `from kernels import CUDAProperties, ...` on model loads,
    # which reach this package: every transformers model load (the embedder's too) would fail
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("kernels")


def test_a_missing_name_explains_the_clash_when_the_hub_package_is_installed(monkeypatch):
    with pytest.raises(AttributeError):
        kernels.CUDAProperties  # noqa: B018
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "0.19.1" if d == "kernels" else real(d))
    with pytest.raises(ImportError, match="pip uninstall kernels"):
        from kernels import CUDAProperties  # noqa: F401
    assert kernels.rms_norm is not None and not hasattr(kernels, "__wrapped__")


def test_the_product_imports_without_loading_triton():
    # Triton reads TRITON_INTERPRET when it is first imported: if importing the API or the engine loaded it, a
    # CPU test run that imports them before tests/kernels' conftest sets the variable would run every kernel
    # test against a GPU driver that is not there (CI once failed 248 tests that way)
    import subprocess
    import sys

    code = "import sys, app.main, inference.engine, retrieval, ingest.tasks; print('triton' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr
