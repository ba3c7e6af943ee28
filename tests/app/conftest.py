"""Fixtures: `env` = a fresh data dir + database (SQLite, and PostgreSQL where a test asks for `db_env`)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.app.support import apply_env, base_env, env, postgres_database, restore_settings  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request, tmp_path, monkeypatch):
    """The same test on SQLite and on a throwaway PostgreSQL database (dropped afterwards)."""
    drop = None
    url = ""
    if request.param == "postgresql":
        url, drop = postgres_database()
    apply_env(monkeypatch, base_env(tmp_path, database_url=url))
    yield request.param
    monkeypatch.undo()
    restore_settings()
    if drop is not None:
        drop()


@pytest.fixture
def client():
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c
