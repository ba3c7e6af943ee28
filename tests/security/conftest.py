"""Fixtures of the security tests: a fresh data dir and database per test (`sec_env`), the app in-process."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.sessions import login_limiter
from tests.app.ask_support import ask_env
from tests.app.support import restore_settings


@pytest.fixture
def sec_env(tmp_path, monkeypatch):
    """Call `sec_env(AUTOGLM_X="...")`: a fresh data dir and database with those settings."""

    def setup(**extra: str):
        ask_env(monkeypatch, tmp_path, **extra)
        login_limiter.reset()
        return tmp_path

    yield setup
    login_limiter.reset()
    monkeypatch.undo()
    restore_settings()


@pytest.fixture
def app_client(sec_env):
    """A TestClient on a fresh app; `app_client(**env)` applies AUTOGLM_* overrides first."""
    clients: list[TestClient] = []

    def make(base_url: str = "http://testserver", **extra: str) -> TestClient:
        from app.main import create_app

        sec_env(**extra)
        c = TestClient(create_app(), base_url=base_url)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)
