"""The in-process GLM-4 engine: model, checkpoint and tokenizer loading, paged KV cache with radix
prefix reuse, continuous batching scheduler, sampler.

    from inference import Engine, SamplingParams
"""

from .engine import Completion, Engine, EngineOverloaded, Timings, TokenEvent, Usage
from .reasoning import ReasoningFormat, ReasoningSplitter
from .sampling import SamplingParams

__all__ = ["Completion", "Engine", "EngineOverloaded", "ReasoningFormat", "ReasoningSplitter", "SamplingParams",
           "Timings", "TokenEvent", "Usage"]  # fmt: skip
