"""The FastAPI application."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import retrieve, security
from app.asgi import ApiCorsMiddleware, openai_path
from app.backpressure import BackpressureMiddleware
from app.db import database_unavailable, migrate
from app.engine_service import service
from app.observability import RequestContextMiddleware, configure_logging
from app.openai_errors import openai_error_handler
from app.routes import (
    ask,
    auth_web,
    collections,
    conversations,
    documents,
    manage,
    openai_compat,
    openai_completions,
    ops,
    search,
    users,
)
from app.settings import settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_: FastAPI):
    configure_logging(settings.log_level, settings.log_json)
    migrate()  # idempotent: a no-op at head
    threading.Thread(target=retrieve.warm, name="warm-retrieval", daemon=True).start()
    await asyncio.to_thread(service.start)  # no-op without AUTOGLM_MODEL_PATH
    try:
        yield
    finally:
        await asyncio.to_thread(service.stop)


def create_app() -> FastAPI:
    api = FastAPI(title="Open-AutoGLM", version="0.1.0", lifespan=lifespan)
    for module in (
        collections,
        documents,
        search,
        users,
        manage,
        ask,
        conversations,
        auth_web,
        openai_compat,
        openai_completions,
        ops,
    ):
        api.include_router(module.router)
    auth_web.mount_static(api)
    api.add_middleware(BackpressureMiddleware)  # busy work classes: 503 + Retry-After (backpressure.py)
    security.install(api)  # headers, body limits, question rate limit (SECURITY.md)
    if settings.cors_origin_list:
        # outside auth, limits and back-pressure: a preflight is answered here, and a refusal (401, 429, 503)
        # carries the CORS headers, so the browser app can read why
        api.add_middleware(ApiCorsMiddleware, origins=settings.cors_origin_list)
    api.add_middleware(RequestContextMiddleware)

    # Starlette's HTTPException, not only FastAPI's: the router raises it for a path or method that does not
    # exist, and under /v1 that 404 or 405 is OpenAI's error too ({"detail"} stays under /api).
    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if openai_path(request.url.path):
            return openai_error_handler(request, exc)
        return await http_exception_handler(request, exc)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        if openai_path(request.url.path):
            return openai_error_handler(request, exc)
        return await request_validation_exception_handler(request, exc)

    @api.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):
        # Unhandled (logged by the server as before): under /v1 OpenAI's shape, elsewhere Starlette's text.
        if openai_path(request.url.path):
            return openai_error_handler(request, exc)
        return PlainTextResponse("Internal Server Error", 500)

    @api.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, exc: OperationalError):
        # The database stopped or restarting: 503 + Retry-After, recovered without a restart (db.py);
        # {"detail"} under /api, OpenAI's error shape under /v1/.
        return await _http_error(request, database_unavailable(exc))

    @api.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness (no authentication)."""
        return {"status": "ok"}

    return api


app = create_app()
