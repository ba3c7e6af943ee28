"""The GLM engine inside the API process: one Engine when AUTOGLM_MODEL_PATH is set, else none
(answers are then extractive). Started and stopped by the FastAPI lifespan."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.settings import settings

log = logging.getLogger(__name__)


class EngineService:
    """Holds the process's engine (or None) and the name it is reported under."""

    def __init__(self) -> None:
        self.engine = None
        self.name: str | None = None
        self.error: str | None = None  # why loading failed (reported by /readyz)
        # how the checkpoint's output carries its reasoning (inference.reasoning); None: it does not reason
        self.reasoning = None
        # how the checkpoint's chat template takes tools (inference.tools); None: it shows none
        self.tools = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.engine is not None

    def start(self) -> None:
        """Load the configured checkpoint (blocking; the lifespan runs it in a thread). No-op without one."""
        with self._lock:
            if self.engine is not None or not settings.model_path:
                return
            import torch

            from inference import Engine, ReasoningFormat, ToolFormat

            path = Path(settings.model_path)
            device = settings.model_device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            try:
                kv = settings.kv_cache_memory_mb * 2**20 or None
                self.engine = Engine.from_pretrained(
                    path,
                    device=device,
                    quantization=settings.model_quantization or None,
                    kv_cache_memory=kv,
                    gpu_memory_utilization=settings.gpu_memory_utilization,
                    batch_invariant=settings.batch_invariant,
                )
            except Exception as e:
                # NOTE: the API still serves (extractively); /readyz reports the engine as failed.
                self.error = f"{type(e).__name__}: {e}"
                log.exception("could not load the model from %s", path)
                return
            self.name = settings.model_name or path.name
            self.error = None
            self.reasoning = ReasoningFormat.detect(self.engine.tokenizer)
            self.tools = ToolFormat.detect(self.engine.tokenizer)
            log.info("engine loaded: %s on %s%s", self.name, device, " (reasoning)" if self.reasoning else "")

    def stop(self) -> None:
        with self._lock:
            if self.engine is not None:
                self.engine.close()
            self.engine, self.name, self.reasoning, self.tools = None, None, None, None

    def stats(self) -> dict[str, float] | None:
        return self.engine.stats() if self.engine is not None else None


service = EngineService()
