"""An admin cancels ingestions through the API while a real worker runs them: a processing document stops
between embedding batches, a queued one is never started, nothing of either reaches the index, the worker
goes on with the next document, and a cancelled document can be re-indexed later."""

from __future__ import annotations

import signal
import sqlite3

import pytest

from app.models import Role
from app.settings import settings
from tests.app.support import make_user, start_worker, wait_for
from tests.faults.support import LONG_TEXT, check_index, check_ready_once, doc, interrupt, upload_text

pytestmark = pytest.mark.slow


def _embedded_texts() -> int:
    """Chunk texts the workers have embedded so far (the embedding cache keeps one row per text)."""
    with sqlite3.connect(settings.embed_cache_path) as db:
        return db.execute("SELECT count(*) FROM embeddings").fetchone()[0]


def test_cancel_stops_the_worker_and_indexes_nothing(stack, monkeypatch):
    client, admin, tmp = stack
    # Small chunks in batches of 4, one second before each batch: a long, observable embedding stage.
    for k, v in {"AUTOGLM_CHUNK_TOKENS": "48", "AUTOGLM_CHUNK_OVERLAP_TOKENS": "0",
                 "AUTOGLM_PROGRESS_EVERY_CHUNKS": "4"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    cid = client.post("/api/collections", json={"name": "cancel"}, headers=admin).json()["id"]
    worker = start_worker({"AUTOGLM_TEST_PAUSE_AT": "embed_batch:1"}, log_path=tmp / "worker.log")
    try:
        big = upload_text(client, admin, cid, "backup.txt", LONG_TEXT)
        queued = upload_text(client, admin, cid, "queued.txt", "Visitors sign in at the front desk.")
        wait_for(lambda: doc(big).chunks_embedded >= 4, 120, "the first embedding batch")
        total = doc(big).chunks_total
        assert total >= 12 and doc(queued).status == "queued"

        member = make_user(Role.member)
        assert client.post(f"/api/documents/{big}/cancel", headers=member).status_code == 403
        assert client.post("/api/documents/999999/cancel", headers=admin).status_code == 404
        for doc_id in (big, queued):
            r = client.post(f"/api/documents/{doc_id}/cancel", headers=admin)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "cancelled" and r.json()["error"].startswith("Cancelled by admin-")
        r = client.post(f"/api/documents/{big}/cancel", headers=admin)
        assert (r.status_code, r.json()) == (409, {"detail": "Document is not being processed"})

        # The worker is free again: the next upload is processed (after the cancelled queued one is skipped).
        after = upload_text(client, admin, cid, "after.txt", "The library closes at six.")
        wait_for(lambda: doc(after).status == "ready", 120, "the next document")
        log = (tmp / "worker.log").read_text()
        assert f"document {big} stopped while processing: it is cancelled now" in log
        # It stopped within a batch of the cancel instead of embedding the rest of the document.
        assert _embedded_texts() < total
        for doc_id in (big, queued):
            d = doc(doc_id)
            assert (d.status, d.chunk_count) == ("cancelled", 0)
        assert doc(queued).attempts == 0  # never started
        check_index(cid)  # only after.txt's chunks are indexed

        def found(query: str) -> set[int]:
            r = client.post("/api/search", json={"query": query, "collection_ids": [cid]}, headers=admin)
            return {h["document_id"] for h in r.json()["hits"]}

        assert not found("nightly snapshots of database cluster") & {big, queued}
        assert found("When does the library close?") == {after}

        # Re-indexed later, it is processed from the start.
        r = client.post(f"/api/documents/{queued}/reindex", headers=admin)
        assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["error"] is None
        wait_for(lambda: doc(queued).status == "ready", 120, "the re-indexed document")
        check_ready_once(queued)
        check_index(cid)
    finally:
        interrupt(worker, signal.SIGTERM)
