"""Optional cross-encoder re-ranker (sentence-transformers CrossEncoder from a local directory).

A cross-encoder reads query and passage together, so it ranks better than either first-stage retriever,
at a cost per (query, passage) pair: it only re-orders the head of the fused list.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class Reranker:
    """Scores (query, passage) pairs; higher is more relevant. Deterministic (eval mode, no sampling)."""

    def __init__(
        self, model_path: str | Path, device: str = "cpu", batch_size: int = 32, max_length: int = 512
    ):
        from sentence_transformers import CrossEncoder

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ValueError(f"reranker path {str(path)!r} is not a model directory (no config.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model = CrossEncoder(str(path), device=device, max_length=max_length, local_files_only=True)
        self.batch_size = batch_size
        self.model_path = str(path)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """(len(passages),) float32 relevance scores."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict(
            [(query, p) for p in passages],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(passages))

    def rerank(self, query: str, items: Sequence[tuple[int, str]]) -> list[tuple[int, float]]:
        """(chunk_id, text) pairs -> (chunk_id, score) best first; ties keep the input order."""
        scores = self.score(query, [t for _, t in items])
        order = sorted(range(len(items)), key=lambda i: (-float(scores[i]), i))
        return [(items[i][0], float(scores[i])) for i in order]


_instances: dict[str, Reranker] = {}
_lock = threading.Lock()


def get_reranker(model_path: str | Path | None) -> Reranker | None:
    """The process-wide Reranker for this path, or None when none is configured (empty path)."""
    if not model_path:
        return None
    key = str(model_path)
    with _lock:
        r = _instances.get(key)
        if r is None:
            r = _instances[key] = Reranker(key)
        return r
