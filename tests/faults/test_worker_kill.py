"""A worker SIGKILLed while parsing, embedding, or between writing a segment file and committing it: the
document ends ready exactly once, with no orphaned or duplicated chunks and no unlisted or half-written
segment file; a document whose worker died is found by the heartbeat check, not left "processing"."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

from app.db import session_scope
from app.models import Document, utcnow
from ingest.pipeline import collection_dir, load_manifest, process_document
from tests.app.support import start_worker, wait_for
from tests.faults.support import LONG_TEXT, check_index, check_ready_once, doc, interrupt

pytestmark = pytest.mark.slow


def _upload(client, admin, cid: int, name: str, text: str) -> int:
    r = client.post(f"/api/collections/{cid}/documents", files=[("files", (name, text.encode()))], headers=admin)
    assert r.status_code == 202, r.text
    return r.json()["documents"][0]["id"]


def _unlisted_segment(cid: int) -> bool:
    with session_scope() as s:
        listed = set(load_manifest(s, cid).segments)
    cdir = collection_dir(cid)
    return cdir.is_dir() and any(p.suffix == ".faiss" and p.name not in listed for p in cdir.iterdir())


@pytest.mark.parametrize("stage", ["parsing", "embedding", "segment_written"])
def test_worker_killed_mid_stage_ingests_once(stack, stage):
    client, admin, tmp = stack
    cid = client.post("/api/collections", json={"name": f"kill-{stage}"}, headers=admin).json()["id"]
    # A document already indexed (here, in-process): the crash must leave its segment and chunks alone.
    before = _upload(client, admin, cid, "before.txt", "The cafeteria opens at eight on weekdays.")
    assert process_document(before) == "ready"

    victim = start_worker({"AUTOGLM_TEST_PAUSE_AT": f"{stage}:600"}, log_path=tmp / "worker-1.log")
    second = None
    try:
        doc_id = _upload(client, admin, cid, "backup.txt", LONG_TEXT)
        if stage == "segment_written":
            # The new segment file is on disk, its chunk rows are flushed but not committed.
            wait_for(lambda: _unlisted_segment(cid), 120, "the segment file to be written")
        else:
            wait_for(lambda: doc(doc_id).stage == stage, 120, f"the worker to reach {stage}")
        assert interrupt(victim) == -signal.SIGKILL
        assert doc(doc_id).status == "processing"

        second = start_worker(log_path=tmp / "worker-2.log")
        wait_for(lambda: doc(doc_id).status == "ready", 120, "the redelivered task to finish")
        d = check_ready_once(doc_id)
        assert d.attempts == 2
        chunk_ids = check_index(cid)  # the orphaned segment of the killed writer is gone too
        assert len(chunk_ids) == d.chunk_count + doc(before).chunk_count

        r = client.post("/api/search", json={"query": "nightly snapshots of database cluster 33", "collection_ids": [cid],
                                             "k": 50}, headers=admin)  # fmt: skip
        ids = [h["chunk_id"] for h in r.json()["hits"] if h["document_id"] == doc_id]
        assert len(ids) == len(set(ids)) == d.chunk_count  # every chunk of it found, none twice
    finally:
        interrupt(victim)
        if second is not None:
            interrupt(second, signal.SIGTERM)


def test_stuck_document_is_requeued_by_heartbeat_check(stack, monkeypatch):
    """The broker does not redeliver here (visibility timeout of an hour): only the heartbeat check can."""
    client, admin, tmp = stack
    monkeypatch.setenv("AUTOGLM_BROKER_VISIBILITY_TIMEOUT", "3600")
    cid = client.post("/api/collections", json={"name": "stuck"}, headers=admin).json()["id"]
    victim = start_worker({"AUTOGLM_TEST_PAUSE_AT": "embedding:600"}, log_path=tmp / "worker-1.log")
    rescuer = None
    try:
        doc_id = _upload(client, admin, cid, "backup.txt", LONG_TEXT)
        wait_for(lambda: doc(doc_id).stage == "embedding", 120, "the worker to reach embedding")
        # A live worker keeps the heartbeat fresh, however long it takes: not stuck.
        beat = doc(doc_id).updated_at
        wait_for(lambda: doc(doc_id).updated_at > beat, 10, "a heartbeat")
        interrupt(victim)

        rescuer = start_worker(log_path=tmp / "worker-2.log")
        wait_for(lambda: doc(doc_id).status == "ready", 120, "the stuck document to be re-queued and finished")
        assert check_ready_once(doc_id).attempts == 2
        check_index(cid)
        assert "its worker stopped (no heartbeat); queued again" in (tmp / "worker-2.log").read_text()

        # Out of attempts: failed with a reason instead of another try.
        with session_scope() as s:
            d = s.get(Document, doc_id)
            stale = Document(collection_id=cid, filename="late.txt", sha256=d.sha256, status="processing",
                             stage="embedding", attempts=8, updated_at=utcnow() - timedelta(seconds=30))  # fmt: skip
            s.add(stale)
            s.commit()
            stale_id = stale.id
        wait_for(lambda: doc(stale_id).status == "failed", 30, "the exhausted document to fail")
        assert doc(stale_id).error == (
            "Processing was started 8 times and stopped without finishing (its worker sent no heartbeat "
            "for 3 s); gave up."
        )
    finally:
        interrupt(victim)
        if rescuer is not None:
            interrupt(rescuer, signal.SIGTERM)
