"""Fixtures of the fault tests: a private Redis per module, an isolated data dir + SQLite database per test,
the API in-process (TestClient) and `autoglm worker` subprocesses on that Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.models import Role
from tests.app.support import apply_env, base_env, make_user, restore_settings
from tests.faults.support import RedisServer

# Checks every second; a document is stuck after 3 s without a heartbeat (workers beat every 0.6 s).
FAST_RECOVERY = {
    "AUTOGLM_MAINTENANCE_INTERVAL_S": "1",
    "AUTOGLM_STUCK_AFTER_S": "3",
    "AUTOGLM_RESEND_AFTER_S": "1",
    # Searches that check the index must not come back degraded from a busy 2-core CI box.
    "AUTOGLM_RETRIEVAL_DEADLINE_MS": "60000",
}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def open_stack(monkeypatch, tmp_path, redis_url: str, **extra: str):
    """Environment for this test (inherited by the workers it starts); returns (client, admin headers)."""
    apply_env(monkeypatch, {**base_env(tmp_path, redis_url=redis_url), **FAST_RECOVERY, **extra})
    from app.main import create_app

    return TestClient(create_app())


@pytest.fixture
def stack(redis_server, tmp_path, monkeypatch):
    """(client, admin headers, tmp_path) on the module's private Redis."""
    with open_stack(monkeypatch, tmp_path, redis_server.url) as client:
        yield client, make_user(Role.admin), tmp_path
    monkeypatch.undo()
    restore_settings()
