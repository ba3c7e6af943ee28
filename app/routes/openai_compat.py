"""OpenAI-compatible API routes: GET /v1/models, POST /v1/chat/completions (streaming and not), POST
/v1/embeddings; POST /v1/completions is openai_completions.py.

Model names: the loaded generator's name = plain chat, with tool calling where its chat template takes tools
(app.tool_calls); `rag:<collection name>` = answer from that collection (under the caller's ACL) with numbered
sources, like /api/ask, and no tools. What the routes share lives beside app.tool_calls: the request bodies
(app.openai_schemas), from a request to the answer's pieces (app.openai_generate), the response bodies and
streams (app.openai_responses), and OpenAI's error shape {"error": {"message", "type", "param", "code"}} that
every error under /v1 uses (app.openai_errors; the middlewares' 413 and 503 build the same).
"""

from __future__ import annotations

import base64
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app.deps import CurrentUser
from app.engine_service import service
from app.openai_errors import OpenAIError, no_model
from app.openai_generate import RAG_PREFIX, chat_pieces, readable_collections
from app.openai_responses import chat_chunks, chat_completion, result, sse, start
from app.openai_schemas import ChatRequest, EmbeddingRequest
from app.security import count_question

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models")
async def list_models(user: CurrentUser) -> dict:
    """The generator (when loaded) and one `rag:<collection>` model per readable collection."""
    created = int(time.time())
    data = []
    if service.loaded:
        data.append({"id": service.name, "object": "model", "created": created, "owned_by": "autoglm"})
    for c in await run_in_threadpool(readable_collections, user):
        data.append({"id": RAG_PREFIX + c.name, "object": "model", "created": int(c.created_at.timestamp()),
                     "owned_by": "autoglm"})  # fmt: skip
    return {"object": "list", "data": data}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, user: CurrentUser) -> dict:
    """One entry of GET /v1/models; 404 for a model the caller cannot see. `/v1/models/` is the list (clients
    that join a base URL ending in `/` with `models/` ask for it so; it was a 404 for the model ``)."""
    if not model_id:
        return await list_models(user)
    for m in (await list_models(user))["data"]:
        if m["id"] == model_id:
            return m
    raise no_model(model_id)


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, user: CurrentUser) -> dict:
    """Vectors of the embedding model the search uses (L2-normalized; text past the model's window is
    truncated, as in indexing). Not cached, and not counted against the questions-per-minute limit."""
    from app.search import _embedder

    emb = await run_in_threadpool(_embedder)
    if body.model != emb.name:
        raise no_model(body.model)
    texts = body.texts()
    if body.dimensions is not None and body.dimensions != emb.dim:
        raise OpenAIError(
            400, f"dimensions: this model gives {emb.dim}.", "unsupported_parameter", param="dimensions"
        )
    vecs, tokens = await run_in_threadpool(lambda: (emb.encode(texts), emb.count_tokens(texts)))
    if body.encoding_format == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vecs]
    else:
        data = [v.tolist() for v in vecs]
    return {"object": "list", "model": emb.name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": d} for i, d in enumerate(data)]}  # fmt: skip


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request, user: CurrentUser):
    """Chat completion (JSON or `data:` chunks ending in [DONE])."""
    count_question(request, user)  # only now: a body refused as malformed (400) asked nothing
    (pieces, sources), offer = await chat_pieces(body, user)
    legacy = offer is not None and offer.legacy
    pieces = await start(pieces)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": body.model}  # fmt: skip
    if not body.stream:
        return chat_completion(body, head, await result(pieces), sources, legacy)
    return sse(chat_chunks(body, head, pieces, sources, legacy), "chat completion")
