"""AUTOGLM_CORS_ORIGINS: browser apps on the listed origins may call /api and /v1 with an API key (preflight
included); other origins, other paths and the default (no setting) get no CORS headers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.models import Role
from app.settings import Settings
from tests.app.ask_support import ask_client
from tests.app.support import make_user

APP = "https://tools.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def _preflight(c, path: str, origin: str):
    return c.options(path, headers={"Origin": origin, **PREFLIGHT})


def test_listed_origins_may_call_api_and_v1(tmp_path, monkeypatch):
    with ask_client(monkeypatch, tmp_path, AUTOGLM_CORS_ORIGINS=f"{APP}, http://localhost:5173") as c:
        member = make_user(Role.member)
        for path in ("/v1/chat/completions", "/v1/completions", "/api/search"):
            r = _preflight(c, path, APP)
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == APP
            assert "POST" in r.headers["access-control-allow-methods"]
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in r.headers  # API keys, never the session cookie
        r = c.get("/v1/models", headers={"Origin": "http://localhost:5173", **member})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()
        r = c.get("/api/collections", headers={"Origin": APP, **member})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
        r = c.get("/v1/models", headers={"Origin": APP})  # a refusal the page must be able to read
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP

        evil = "https://evil.example.com"
        assert "access-control-allow-origin" not in _preflight(c, "/v1/chat/completions", evil).headers
        r = c.get("/v1/models", headers={"Origin": evil, **member})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        # the product's own pages and probes stay same-origin
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": APP}).headers


def test_no_cors_headers_by_default(tmp_path, monkeypatch):
    with ask_client(monkeypatch, tmp_path) as c:
        member = make_user(Role.member)
        r = _preflight(c, "/v1/chat/completions", APP)
        assert r.status_code == 405 and not any(h.startswith("access-control-") for h in r.headers)
        r = c.get("/v1/models", headers={"Origin": APP, **member})
        assert r.status_code == 200 and not any(h.startswith("access-control-") for h in r.headers)


@pytest.mark.parametrize(
    "bad", ["https://tools.example.com/", "tools.example.com", "https://x.example.com/app"]
)
def test_an_origin_with_a_path_or_no_scheme_fails_at_start(bad):
    # a browser's Origin has neither: such an entry would never match, and the app would fail silently
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=f"http://localhost:5173,{bad}")
