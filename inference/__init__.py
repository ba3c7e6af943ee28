"""The in-process GLM-4 engine: model, checkpoint and tokenizer loading, paged KV cache with radix
prefix reuse, continuous batching scheduler, sampler.

    from inference import Engine, SamplingParams
"""

from .engine import Completion, Engine, EngineOverloaded, Timings, TokenEvent, Usage
from .reasoning import ReasoningFormat, ReasoningSplitter
from .sampling import SamplingParams
from .tokenizer import Chat
from .tools import ToolCall, ToolCallSplitter, ToolFormat

__all__ = ["Chat", "Completion", "Engine", "EngineOverloaded", "ReasoningFormat", "ReasoningSplitter",
           "SamplingParams", "Timings", "TokenEvent", "ToolCall", "ToolCallSplitter", "ToolFormat", "Usage"]  # fmt: skip
