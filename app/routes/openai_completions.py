"""POST /v1/completions: OpenAI's legacy text completions, which LangChain's `OpenAI` and LlamaIndex's
`OpenAILike` (without is_chat_model=True) call.

The generator's model continues the raw prompt (no chat template: that is what a text completion is); a
`rag:<collection>` model reads the prompt as a question and answers it from the collection with its sources,
as /v1/chat/completions does. Auth, the questions-per-minute limit, back-pressure, errors and access control
are the chat route's (openai_compat.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from app import answer as ans
from app.deps import CurrentUser
from app.routes.openai_compat import (
    RAG_PREFIX,
    OpenAIError,
    SamplingRequest,
    finish_reason,
    plain_pieces,
    provenance,
    rag_collection,
    rag_pieces,
    result,
    sse,
    start,
    usage,
)
from app.security import count_question

router = APIRouter(prefix="/v1", tags=["openai"])


class CompletionRequest(SamplingRequest):
    """OpenAI's text completion request: one prompt; `suffix`, `best_of` above 1 and `logprobs` are refused by
    name (`sampling`); any other field (`user`, a field of another server) is accepted and has no effect."""

    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)

    def text(self) -> str:
        """The one prompt (a string, or a list of one string)."""
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1:
            raise OpenAIError(400, f"prompt: a string or a list of one string (got a list of {len(prompts)}): this "
                              "server answers one prompt per request; send one request per prompt.",
                              "unsupported_parameter" if prompts else "invalid_request", param="prompt")  # fmt: skip
        return prompts[0]

    def sampling(self) -> dict[str, Any]:
        """`options`; OpenAIError for what this server cannot honour."""
        if self.suffix:
            raise OpenAIError(400, "suffix is not supported: this server continues the prompt; it does not fill "
                              "in text before a suffix.", "unsupported_parameter", param="suffix")  # fmt: skip
        if self.best_of is not None and self.best_of > 1:
            raise OpenAIError(400, f"best_of={self.best_of} is not supported: this server generates one "
                              "completion per request.", "unsupported_parameter", param="best_of")  # fmt: skip
        if self.logprobs is not None:
            raise OpenAIError(400, "logprobs is not supported by /v1/completions: /v1/chat/completions with "
                              "logprobs=true gives each chosen token's log-probability.", "unsupported_parameter",
                              param="logprobs")  # fmt: skip
        return self.options()


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, user: CurrentUser):
    """Text completion (JSON or `data:` chunks ending in [DONE])."""
    count_question(request, user)  # only now: a body refused as malformed (400) asked nothing
    prompt, options = body.text(), body.sampling()
    if body.model.startswith(RAG_PREFIX):
        col = await rag_collection(body.model, user)
        if not prompt.strip():
            raise OpenAIError(
                400, "prompt: the question must not be empty.", "invalid_request", param="prompt"
            )
        pieces, sources = await rag_pieces(col, body, prompt, options, body.max_tokens)
    else:
        pieces, sources = plain_pieces(body, prompt, options, body.max_tokens)
    pieces = await start(pieces)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": body.model}  # fmt: skip
    echo = prompt if body.echo else ""

    def choice(text: str, finish: str | None = None, **more) -> dict:
        return {
            **head,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            **more,
        }

    if not body.stream:
        r = await result(pieces)
        return {**choice(echo + r.answer, finish_reason(r)), "usage": usage(r), **provenance(sources, r)}

    async def chunks() -> AsyncIterator[dict]:
        if echo or sources is not None:
            yield choice(echo, **provenance(sources))
        async for piece in pieces:
            if isinstance(piece, ans.Result):
                yield choice(
                    "", finish_reason(piece), **({"cited": piece.cited} if sources is not None else {})
                )
                if body.include_usage():
                    yield {**head, "choices": [], "usage": usage(piece)}
            elif piece:
                yield choice(str(piece))

    return sse(chunks(), "text completion")
