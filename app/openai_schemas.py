"""The request bodies of the OpenAI-compatible API (pydantic): chat completions, the sampling fields text
completions share, and embeddings; each checks the options this server cannot honour and refuses them by name
(OpenAIError 400), so a client never gets an answer that silently ignored what it asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.openai_errors import OpenAIError

MAX_STOP = 16  # stop strings a request may give (OpenAI allows 4)
MAX_EMBED_INPUTS = 512  # a request holds one of search's slots while the model reads all of them
MAX_EMBED_CHARS = 20_000  # the model reads ~256 tokens (1-2k characters) of each


class _NullsAreDefaults(BaseModel):
    """OpenAI's optional request fields are nullable ("temperature": null means the default), and clients built
    from its OpenAPI schema send null for what they leave unset: a null field takes its default here."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class ChatMessage(BaseModel):
    """A message; content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None
    # an assistant's calls, and a tool result's call id (app.tool_calls reads them)
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: a string, or its text parts a line each (as vLLM joins them; "".join glued
        "the hotel cap" and "in Munich?" into "capin")."""
        if isinstance(self.content, list):
            return "\n".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""

    def other_part(self) -> str | None:
        """The type of a content part that is not text (an image, audio, a file), if any: this server reads
        text only, and an answer that silently left a picture out would pretend to have seen it."""
        parts = self.content if isinstance(self.content, list) else []
        return next((str(p.get("type")) for p in parts if p.get("type") != "text"), None)

    def textless_part(self) -> int | None:
        """The index of a text part whose `text` is not a string (missing, null, a number), if any."""
        parts = self.content if isinstance(self.content, list) else []
        return next((j for j, p in enumerate(parts) if p.get("type") == "text" and not isinstance(p.get("text"), str)),
                    None)  # fmt: skip


class SamplingRequest(_NullsAreDefaults):
    """The fields OpenAI's chat and text completion requests share: the model, streaming and sampling."""

    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, ge=0, le=1)  # 0: only the likeliest token, i.e. greedy
    n: int = Field(default=1, ge=1)
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  # what torch's generator takes
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    # vLLM's extensions, which several clients send
    top_k: int = Field(default=0, ge=-1)
    repetition_penalty: float = Field(default=1.0, gt=0)

    def options(self) -> dict[str, Any]:
        """The SamplingParams options besides max_tokens/temperature/top_p/logprobs; OpenAIError for what this
        server cannot honour."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP or any(not s for s in stop):
            raise OpenAIError(
                400, f"stop: at most {MAX_STOP} non-empty strings.", "invalid_request", param="stop"
            )
        if self.logit_bias:
            raise OpenAIError(400, "logit_bias is not supported: this server's sampler has no per-token bias.",
                              "unsupported_parameter", param="logit_bias")  # fmt: skip
        if self.n > 1:
            raise OpenAIError(400, f"n={self.n} is not supported: this server returns one choice per request; "
                              "send n requests for n answers.", "unsupported_parameter", param="n")  # fmt: skip
        return {"stop": stop, "seed": self.seed, "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty, "top_k": max(self.top_k, 0),
                "repetition_penalty": self.repetition_penalty}  # fmt: skip

    def temperature_top_p(self) -> tuple[float, float]:
        """top_p 0 keeps only the likeliest token, which is greedy decoding (the sampler wants top_p in (0, 1])."""
        return (0.0, 1.0) if self.top_p == 0 else (self.temperature, self.top_p)

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(SamplingRequest):
    """OpenAI's chat completion request: the fields this server honours or refuses by name (`sampling`); any
    other (`user`, `metadata`, a field of another server) is accepted and has no effect."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    # the deprecated form of tools, which older LangChain and LlamaIndex agents still send
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None

    def sampling(self) -> dict[str, Any]:
        """`options` and logprobs; OpenAIError for what this server cannot honour (a client that asked for JSON
        output must not get plain text silently; tools are app.tool_calls')."""
        if self.top_logprobs and not self.logprobs:
            raise OpenAIError(
                400, "top_logprobs needs logprobs=true.", "invalid_request", param="top_logprobs"
            )
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":  # OpenAI's words for a model without JSON output: LangChain and litellm read them
            raise OpenAIError(400, f"Invalid parameter: 'response_format' of type {kind!r} is not supported with "
                              "this model: this server cannot constrain its output to JSON. A model that calls "
                              "tools fills a schema as a function's arguments: send it as a tool with "
                              "tool_choice naming it (LangChain: with_structured_output(method='function_calling')).",
                              "unsupported_parameter", param="response_format")  # fmt: skip
        if self.audio is not None or any(m != "text" for m in self.modalities or ()):
            raise OpenAIError(400, "Only text output is supported: modalities ['text'], no audio.",
                              "unsupported_parameter", param="audio" if self.audio else "modalities")  # fmt: skip
        return {**self.options(), "logprobs": self.logprobs, "top_logprobs": self.top_logprobs or 0}


class EmbeddingRequest(_NullsAreDefaults):
    """OpenAI's embeddings request: text inputs only (token-id arrays are refused by name), float or base64."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        """The inputs as a list; OpenAIError unless 1 to MAX_EMBED_INPUTS non-empty strings the model can read."""
        texts = [self.input] if isinstance(self.input, str) else self.input
        if any(not isinstance(t, str) for t in texts):  # ids of the client's tokenizer, not of this model's
            raise OpenAIError(400, "input: token ids are not supported: this model reads text (LangChain's "
                              "OpenAIEmbeddings sends tiktoken's ids unless check_embedding_ctx_length=False); "
                              "send the text.", "unsupported_parameter", param="input")  # fmt: skip
        if (
            not texts
            or len(texts) > MAX_EMBED_INPUTS
            or any(not t or len(t) > MAX_EMBED_CHARS for t in texts)
        ):
            raise OpenAIError(400, f"input: 1 to {MAX_EMBED_INPUTS} non-empty strings of at most "
                              f"{MAX_EMBED_CHARS:,} characters.", "invalid_request", param="input")  # fmt: skip
        return texts
