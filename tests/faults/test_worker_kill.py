"""A worker SIGKILLed while parsing, while embedding, and between writing a segment file and committing it:
the document ends ready exactly once, with no orphaned or duplicated chunks and no unlisted or half-written
segment file. The broker does not redeliver here (visibility timeout of an hour): the heartbeat check of
the next worker finds each abandoned document, so none stays "processing".

(Redelivery by the broker itself, acks_late + visibility timeout, is tests/ingest/test_celery_worker.py.)
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

from app.db import session_scope
from app.models import Document, utcnow
from ingest.pipeline import collection_dir, load_manifest, process_document
from ingest.recovery import recover_stuck
from tests.app.support import start_worker, wait_for
from tests.faults.support import LONG_TEXT, check_index, check_ready_once, doc, interrupt, upload_text

pytestmark = pytest.mark.slow


def _unlisted_segment(cid: int) -> bool:
    with session_scope() as s:
        listed = set(load_manifest(s, cid).segments)
    cdir = collection_dir(cid)
    return cdir.is_dir() and any(p.suffix == ".faiss" and p.name not in listed for p in cdir.iterdir())


def test_worker_killed_at_each_stage_then_ready_once(stack, monkeypatch):
    client, admin, tmp = stack
    monkeypatch.setenv("AUTOGLM_BROKER_VISIBILITY_TIMEOUT", "3600")  # for the workers started below
    cid = client.post("/api/collections", json={"name": "crash"}, headers=admin).json()["id"]
    # A document indexed before (here, in-process): the crashes must leave its segment and chunks alone.
    before = upload_text(client, admin, cid, "before.txt", "The cafeteria opens at eight on weekdays.")
    assert process_document(before) == "ready"
    doc_id = upload_text(client, admin, cid, "backup.txt", LONG_TEXT)

    # One worker after the other, each killed at its stage, each picking up what the previous one left.
    for attempt, stage in enumerate(["parsing", "embedding", "segment_written"], 1):
        victim = start_worker({"AUTOGLM_TEST_PAUSE_AT": f"{stage}:600"}, log_path=tmp / f"worker-{stage}.log")
        try:
            if stage == "segment_written":
                # The segment file is on disk; its chunk rows and manifest entry are not committed.
                wait_for(lambda: _unlisted_segment(cid), 120, "the segment file to be written")
            else:
                wait_for(lambda: doc(doc_id).stage == stage, 120, f"the worker to reach {stage}")  # noqa: B023
            d = doc(doc_id)
            assert (d.status, d.attempts) == ("processing", attempt)
            if attempt == 1:  # a live worker keeps the heartbeat fresh however long it takes: not stuck
                beat = d.updated_at
                wait_for(lambda: doc(doc_id).updated_at > beat, 10, "a heartbeat")  # noqa: B023
        finally:
            assert interrupt(victim) == -signal.SIGKILL
        assert doc(doc_id).status == "processing"

    rescuer = start_worker(log_path=tmp / "worker-rescuer.log")
    try:
        wait_for(
            lambda: doc(doc_id).status == "ready", 120, "the abandoned document to be re-queued and finished"
        )
    finally:
        interrupt(rescuer, signal.SIGTERM)
    d = check_ready_once(doc_id)
    assert d.attempts == 4
    assert "its worker stopped (no heartbeat); queued again" in (tmp / "worker-rescuer.log").read_text()
    chunk_ids = check_index(cid)  # the segment file of the writer killed before its commit is gone too
    assert len(chunk_ids) == d.chunk_count + doc(before).chunk_count

    r = client.post("/api/search", json={"query": "nightly snapshots of database cluster 33", "collection_ids": [cid],
                                         "k": 50}, headers=admin)  # fmt: skip
    ids = [h["chunk_id"] for h in r.json()["hits"] if h["document_id"] == doc_id]
    assert len(ids) == len(set(ids)) == d.chunk_count  # every chunk of it found, none twice


def test_stuck_document_out_of_attempts_fails_with_reason(stack):
    """The same check, run here in-process: a document abandoned max_attempts times is failed, not retried."""
    client, admin, _ = stack
    cid = client.post("/api/collections", json={"name": "stuck"}, headers=admin).json()["id"]
    stale = utcnow() - timedelta(seconds=30)
    with session_scope() as s:
        rows = [
            Document(
                collection_id=cid,
                filename=f"{n}.txt",
                sha256="0" * 64,
                status="processing",
                stage="embedding",
                attempts=n,
                updated_at=stale,
            )  # fmt: skip
            for n in (7, 8)
        ]
        fresh = Document(
            collection_id=cid, filename="alive.txt", sha256="0" * 64, status="processing", attempts=1
        )
        s.add_all([*rows, fresh])
        s.commit()
        retry, exhausted, alive = rows[0].id, rows[1].id, fresh.id
    assert recover_stuck() == ([retry], [exhausted])
    assert recover_stuck() == ([], [])  # claimed once: a second checker finds nothing
    assert (doc(retry).status, doc(retry).attempts) == ("queued", 7)
    assert doc(exhausted).status == "failed" and doc(exhausted).error == (
        "Processing was started 8 times and stopped without finishing (its worker sent no heartbeat for 3 s); "
        "gave up."
    )
    assert doc(alive).status == "processing"
