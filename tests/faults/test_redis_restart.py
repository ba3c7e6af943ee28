"""Redis (the broker) restarted without persistence while uploads are queued, and down during an upload:
no upload is lost (the outbox sends again what the broker does not hold), and a running worker reconnects by
itself."""

from __future__ import annotations

import signal
import time

import pytest

from app.models import Role
from ingest.recovery import broker_document_ids
from tests.app.support import make_user, restore_settings, start_worker, wait_for
from tests.faults.conftest import open_stack
from tests.faults.support import RedisServer, check_index, check_ready_once, doc, interrupt, upload_text

pytestmark = pytest.mark.slow


def test_redis_restart_loses_no_upload(tmp_path, monkeypatch):
    redis = RedisServer(tmp_path, appendonly=False)
    worker = None
    try:
        with open_stack(monkeypatch, tmp_path, redis.url) as client:
            admin = make_user(Role.admin)
            cid = client.post("/api/collections", json={"name": "outbox"}, headers=admin).json()["id"]

            def upload(name: str, text: str) -> int:
                return upload_text(client, admin, cid, name, text)

            # Sent while no worker runs; then Redis restarts empty: the message is gone.
            lost = upload("lost.txt", "The parking garage closes at midnight.")
            assert broker_document_ids() == {lost}
            redis.stop()
            # Uploaded while Redis is down: accepted, kept queued in the database, the send failed.
            t0 = time.monotonic()
            unsent = upload("unsent.txt", "Expense reports are due on the fifth of each month.")
            assert time.monotonic() - t0 < 30
            assert broker_document_ids() is None  # the outbox sends nothing while it cannot see the broker
            redis.start()
            assert broker_document_ids() == set()
            assert doc(lost).status == doc(unsent).status == "queued"

            # A worker's first check sends both again.
            worker = start_worker(log_path=tmp_path / "worker.log")
            wait_for(lambda: doc(lost).status == doc(unsent).status == "ready", 120, "the lost uploads")
            assert "sent again 2 queued documents" in (tmp_path / "worker.log").read_text()

            # Redis restarts under the running worker: it reconnects and takes the next upload.
            redis.stop()
            redis.start()
            after = upload("after.txt", "The gym on the third floor opens at six.")
            wait_for(lambda: doc(after).status == "ready", 120, "the upload after the restart")
            assert worker.poll() is None
            for doc_id in (lost, unsent, after):
                assert check_ready_once(doc_id).attempts == 1
            check_index(cid)
    finally:
        if worker is not None:
            interrupt(worker, signal.SIGTERM)
        monkeypatch.undo()
        restore_settings()
        redis.stop()
