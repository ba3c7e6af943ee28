"""Operations: /healthz (liveness), /readyz (database, Redis, index, engine), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app import metrics
from app.engine_service import service
from app.settings import settings

router = APIRouter(tags=["ops"])


def _database() -> dict:
    from sqlalchemy import text

    from app.db import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"ok": True}


def _redis() -> dict:
    if not settings.redis_url:
        return {"ok": True, "detail": "not configured"}
    import redis

    redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
    return {"ok": True}


def _index() -> dict:
    d = settings.index_dir
    d.mkdir(parents=True, exist_ok=True)
    probe = d / ".readyz"
    probe.write_bytes(b"")  # the index volume must be writable for workers and readable for us
    probe.unlink()
    return {"ok": True}


def _engine() -> dict:
    if service.loaded:
        return {"ok": True, "model": service.name}
    if service.error:
        return {"ok": False, "detail": service.error}
    if settings.model_path:
        return {"ok": False, "detail": "loading"}
    return {"ok": True, "detail": "no generator configured (answers are extractive)"}


async def _check(fn) -> dict:
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn), timeout=5)
    except TimeoutError:
        return {"ok": False, "detail": "timed out"}
    except Exception as e:
        return {"ok": False, "detail": f"{type(e).__name__}: {e}"[:300]}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz() -> JSONResponse:
    """Ready to serve: 200 when every dependency answers, else 503 naming what failed."""
    names = ("database", "redis", "index", "engine")
    results = await asyncio.gather(*(_check(f) for f in (_database, _redis, _index, _engine)))
    checks = dict(zip(names, results, strict=True))
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


@router.get("/metrics")
async def metrics_route(request: Request) -> Response:
    """Prometheus text format; with AUTOGLM_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    if settings.metrics_token:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            sent.strip().encode(), settings.metrics_token.encode()
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "Metrics need the metrics token (Authorization: Bearer <AUTOGLM_METRICS_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
