"""Secrets at rest and in logs: API keys stored as sha256, passwords as argon2id, session and CSRF tokens as
sha256; a full request cycle against a live server (real sockets) with every logger at DEBUG (SQL with its
parameters and result rows included) never writes an API key, a password, the session cookie or the CSRF token."""

from __future__ import annotations

import hashlib
import io
import logging
import secrets

import httpx
from sqlmodel import select

from app.db import session_scope
from app.models import ApiKey, Role, User, WebSession
from app.observability import JsonFormatter, RequestIdFilter
from tests.app.ask_support import LiveServer
from tests.app.support import make_user


class _ServerSide(logging.Filter):
    """The test's own HTTP client logs are not the server's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("httpx", "httpcore"))


def _capture() -> tuple[io.StringIO, logging.Handler, list[tuple[logging.Logger, int]]]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(_ServerSide())
    saved = []
    # uvicorn's loggers do not propagate to the root: listen on them too. SQLAlchemy keeps its own at
    # WARNING; an operator debugging SQL turns it up, so it is up here too (statements, parameters, rows).
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error", "sqlalchemy.engine"):
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    return buf, handler, saved


def test_secrets_are_hashed_at_rest_and_never_logged(sec_env):
    tmp = sec_env(AUTOGLM_LOG_LEVEL="DEBUG")
    root = make_user(Role.admin)
    root_key = root["Authorization"].removeprefix("Bearer ")
    password = "pw-" + secrets.token_urlsafe(16)
    wrong_password = "wrong-" + secrets.token_urlsafe(16)
    long_password = "long-" + secrets.token_urlsafe(16) + "x" * 1100  # over the limit: a 422
    buf, handler, saved = _capture()
    server = LiveServer()
    try:
        with httpx.Client(base_url=server.base, timeout=60) as c:
            r = c.post(
                "/api/users", json={"name": "ada", "password": password, "role": "admin"}, headers=root
            )
            assert r.status_code == 201, r.text
            ada_key = r.json()["api_key"]
            bad = c.post("/api/auth/login", json={"username": "ada", "password": wrong_password})
            assert bad.status_code == 401
            assert (
                c.post("/api/auth/login", json={"username": "ada", "password": long_password}).status_code
                == 422
            )
            r = c.post("/api/auth/login", json={"username": "ada", "password": password})
            assert r.status_code == 200, r.text
            session_token, csrf = c.cookies["autoglm_session"], c.cookies["autoglm_csrf"]
            assert r.json()["csrf_token"] == csrf
            assert c.get("/api/me").json()["name"] == "ada"
            assert (
                c.post("/api/ask", json={"question": "hello"}, headers={"X-CSRF-Token": "forged"}).status_code
                == 403
            )
            assert (
                c.post("/api/ask", json={"question": "hello"}, headers={"X-CSRF-Token": csrf}).status_code
                == 200
            )
            r = c.post("/api/keys", json={"name": "bot"}, headers={"X-CSRF-Token": csrf})
            assert r.status_code == 201, r.text
            new_key, new_key_id = r.json()["key"], r.json()["id"]
            auth = {"Authorization": f"Bearer {new_key}"}
            assert httpx.get(f"{server.base}/api/me", headers=auth).status_code == 200
            assert (
                httpx.get(f"{server.base}/api/me", headers={"Authorization": f"Bearer {ada_key}"}).status_code
                == 200
            )
            assert c.delete(f"/api/keys/{new_key_id}", headers={"X-CSRF-Token": csrf}).status_code == 204
            assert httpx.get(f"{server.base}/api/me", headers=auth).status_code == 401
            assert c.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    finally:
        server.stop()
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)

    logs = buf.getvalue()
    # The capture saw the cycle, at DEBUG, with SQL: the test below can fail.
    assert '"msg": "POST /api/auth/login 200"' in logs and '"msg": "POST /api/keys 201"' in logs, logs[-2000:]
    assert '"logger": "sqlalchemy.engine.Engine"' in logs and "web_sessions" in logs
    named = {
        "bootstrap API key": root_key,
        "user API key": ada_key,
        "new API key": new_key,
        "password": password,
        "wrong password": wrong_password,
        "over-long password": long_password[:40],
        "session cookie": session_token,
        "CSRF token": csrf,
    }
    assert not [what for what, value in named.items() if value in logs]

    # At rest: hashes only, and no secret anywhere in the database files.
    with session_scope() as s:
        ada = s.exec(select(User).where(User.name == "ada")).one()
        assert ada.password_hash.startswith("$argon2id$")
        hashes = set(s.exec(select(ApiKey.key_hash)).all())
        assert hashlib.sha256(ada_key.encode()).hexdigest() in hashes
        assert hashlib.sha256(root_key.encode()).hexdigest() in hashes
        assert all(len(h) == 64 for h in hashes)
        assert s.exec(select(WebSession)).all() == []  # signed out: the session row is gone
    raw = b"".join(p.read_bytes() for p in (tmp / "data").glob("autoglm.db*"))
    assert raw, "the SQLite database file was not found"
    assert not [what for what, value in named.items() if value.encode() in raw]
