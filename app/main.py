"""The FastAPI application."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.db import migrate
from app.routes import collections, documents, search, users

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_: FastAPI):
    migrate()  # idempotent: a no-op at head
    yield


def create_app() -> FastAPI:
    api = FastAPI(title="Open-AutoGLM", version="0.1.0", lifespan=lifespan)
    for module in (collections, documents, search, users):
        api.include_router(module.router)

    @api.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness (no authentication)."""
        return {"status": "ok"}

    return api


app = create_app()
