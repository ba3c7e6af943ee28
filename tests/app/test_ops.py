"""/healthz, /readyz, /metrics, request ids and JSON logs."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from app.observability import JsonFormatter
from tests.app.ask_support import ask_env
from tests.app.support import REDIS_URL, redis_or_skip, restore_settings


def _client(monkeypatch, tmp_path, **extra):
    ask_env(monkeypatch, tmp_path, **extra)
    from app.main import create_app

    return TestClient(create_app())


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    yield
    monkeypatch.undo()
    restore_settings()


def test_health_and_ready(tmp_path, monkeypatch):
    with _client(monkeypatch, tmp_path) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        checks = r.json()["checks"]
        assert set(checks) == {"database", "redis", "index", "engine"}
        assert checks["redis"] == {"ok": True, "detail": "not configured"}
        assert checks["engine"]["detail"] == "no generator configured (answers are extractive)"


def test_ready_reports_what_is_down(tmp_path, monkeypatch):
    with _client(monkeypatch, tmp_path, AUTOGLM_REDIS_URL="redis://127.0.0.1:1/0") as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        assert r.json()["checks"]["redis"]["ok"] is False
        assert r.json()["checks"]["database"] == {"ok": True}


def test_ready_with_real_redis(tmp_path, monkeypatch):
    redis_or_skip()
    with _client(monkeypatch, tmp_path, AUTOGLM_REDIS_URL=REDIS_URL) as c:
        assert c.get("/readyz").json()["checks"]["redis"] == {"ok": True}


def test_request_id_metrics_and_json_log(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="app.access")
    with _client(monkeypatch, tmp_path) as c:
        r = c.get("/healthz", headers={"X-Request-ID": "req-42"})
        assert r.headers["x-request-id"] == "req-42"
        generated = c.get("/healthz").headers["x-request-id"]
        assert len(generated) == 32 and generated != "req-42"
        assert c.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"
        assert c.get("/api/collections").status_code == 401
        r = c.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
    assert 'autoglm_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/api/collections",status="401"' in text
    assert 'autoglm_ingestion_documents{status="failed"} 0.0' in text
    assert "autoglm_ingestion_failures_total 0.0" in text
    record = next(r for r in caplog.records if getattr(r, "request_id", None) == "req-42")
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-42" and line["route"] == "/healthz" and line["status"] == 200
    assert line["msg"] == "GET /healthz 200" and line["level"] == "INFO"


def test_metrics_token_guards_metrics_when_set(tmp_path, monkeypatch):
    with _client(monkeypatch, tmp_path, AUTOGLM_METRICS_TOKEN="scrape-8c1f") as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-8c1f"}):
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
            assert "autoglm_" not in r.text
        r = c.get("/metrics", headers={"Authorization": "Bearer scrape-8c1f"})
        assert r.status_code == 200 and "autoglm_" in r.text
        assert c.get("/readyz").status_code == 200  # load balancers still probe without a token
