"""Embedding models the tests make from the packaged one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL


def model_copy(tmp_path: Path, name: str, prompts: dict | None = None, card: bool = True) -> Path:
    """The packaged model's files under ``name`` (hard links: no 90 MB copy), with ``prompts`` written into its
    sentence-transformers configuration ("query" its default prompt, as some models ship) and, without
    ``card``, no model card (its name is then the directory's). Another configuration file is another
    embedding space (``Embedder.space``: its files' digest differs), of the packaged model's dimensions."""
    src, dst = Path(DEFAULT_EMBEDDING_MODEL), tmp_path / name
    for f in src.rglob("*"):
        if f.is_file() and (card or f.name != "README.md"):
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dst / f.relative_to(src))
    if prompts is not None:
        cfg = dst / "config_sentence_transformers.json"
        body = json.loads(cfg.read_text())
        cfg.unlink()  # a link to the package's file: write a file of its own
        cfg.write_text(json.dumps({**body, "prompts": prompts, "default_prompt_name": "query"}))
    return dst
