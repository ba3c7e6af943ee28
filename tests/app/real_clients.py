"""The third-party client libraries the real-client tests drive (tests/app/test_openai_real_clients*.py; the dev
extra installs them), imported once: a test module that imports them from here is skipped, saying why, where
one is missing. litellm is told to read its bundled model list, and `no_tiktoken` (autouse where imported) fails
a test whose client would download tiktoken's encodings: nothing may reach the internet."""

from __future__ import annotations

import os

import pytest

WHY = (
    "the real-client tests need the dev extra's langchain-openai, llama-index-llms-openai-like, "
    "llama-index-embeddings-openai and litellm (pip install -e '.[dev]')"
)
openai = pytest.importorskip("openai", reason=WHY)
langchain_openai = pytest.importorskip("langchain_openai", reason=WHY)
openai_like = pytest.importorskip("llama_index.llms.openai_like", reason=WHY)
li_embeddings = pytest.importorskip("llama_index.embeddings.openai", reason=WHY)
# NOTE: litellm fetches its model price list from GitHub at import unless told to read its bundled copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm", reason=WHY)


@pytest.fixture(autouse=True)
def no_tiktoken(monkeypatch):
    """What the clients do in a test must not need tiktoken's encodings, which it would download at run time."""
    import tiktoken

    def download(*args, **kwargs):
        raise AssertionError("tiktoken was asked for an encoding it would download")

    monkeypatch.setattr(tiktoken, "get_encoding", download)
    monkeypatch.setattr(tiktoken, "encoding_for_model", download)
