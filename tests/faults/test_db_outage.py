"""PostgreSQL stopped and started under a running API and worker: requests get 503 + Retry-After with a
stable body while it is down, and succeed again once it is back, with no restart of either process."""

from __future__ import annotations

import signal

import pytest

from app.models import Role
from tests.app.support import make_user, restore_settings, start_worker, wait_for
from tests.faults.conftest import open_stack
from tests.faults.support import LONG_TEXT, PostgresCluster, check_index, check_ready_once, doc, interrupt

pytestmark = pytest.mark.slow
DOWN = {"detail": "database unavailable, retry"}


@pytest.fixture
def postgres():
    cluster = PostgresCluster()
    yield cluster
    cluster.destroy()


def test_database_outage_503_then_recovery(postgres, redis_server, tmp_path, monkeypatch):
    worker = None
    try:
        with open_stack(monkeypatch, tmp_path, redis_server.url, AUTOGLM_DATABASE_URL=postgres.url) as client:
            admin = make_user(Role.admin)
            cid = client.post("/api/collections", json={"name": "pg"}, headers=admin).json()["id"]
            assert client.get("/api/collections", headers=admin).status_code == 200

            worker = start_worker({"AUTOGLM_TEST_PAUSE_AT": "parsing:3"}, log_path=tmp_path / "worker.log")
            up = client.post(f"/api/collections/{cid}/documents", files=[("files", ("backup.txt", LONG_TEXT.encode()))],
                             headers=admin)  # fmt: skip
            doc_id = up.json()["documents"][0]["id"]
            wait_for(lambda: doc(doc_id).stage == "parsing", 120, "the worker to start the document")

            postgres.stop()
            for method, path in (("GET", "/api/collections"), ("GET", f"/api/documents/{doc_id}"),
                                 ("POST", "/api/search")):  # fmt: skip
                r = client.request(
                    method, path, headers=admin, json={"query": "backup"} if method == "POST" else None
                )
                assert (r.status_code, r.json(), r.headers.get("retry-after")) == (503, DOWN, "5"), path
            # OpenAI clients get their own error shape for the same outage
            r = client.get("/v1/models", headers=admin)
            assert (r.status_code, r.json()["error"]["message"], r.headers.get("retry-after")) == (
                503, DOWN["detail"], "5"
            )  # fmt: skip
            assert client.get("/readyz").json()["checks"]["database"]["ok"] is False
            # The worker meets the outage after its pause: its task is retried (Celery's retry with backoff).
            log = tmp_path / "worker.log"
            wait_for(lambda: "retry: Retry in" in log.read_text(), 60, "the worker's task to meet the outage")

            postgres.start()
            # Without restarting anything: the pool replaces the dropped connections.
            r = client.get("/api/collections", headers=admin)
            assert r.status_code == 200 and [c["id"] for c in r.json()] == [cid]
            wait_for(lambda: doc(doc_id).status == "ready", 120, "the document after the outage")
            check_ready_once(doc_id)
            check_index(cid)
            assert worker.poll() is None
    finally:
        if worker is not None:
            interrupt(worker, signal.SIGTERM)
        monkeypatch.undo()
        restore_settings()
