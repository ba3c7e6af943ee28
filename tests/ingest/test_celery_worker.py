"""The whole path through a real Redis and real Celery worker subprocesses (`autoglm worker`)."""

from __future__ import annotations

import signal

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.db import session_scope
from app.models import Chunk, Document, Role
from app.settings import settings
from tests.app.support import (
    REDIS_URL,
    apply_env,
    base_env,
    kill_worker,
    make_user,
    redis_or_skip,
    restore_settings,
    start_worker,
    wait_for,
)
from tests.app.test_bad_input import bad_batch, check_batch_response, check_failures
from tests.ingest.test_messy_files import check_messy, messy_batch

pytestmark = pytest.mark.slow
LONG_TEXT = "\n\n".join(
    f"Section {i}. The backup policy requires nightly snapshots of database cluster {i} kept for {i + 7} days."
    for i in range(60)
).replace(
    "Section 33.",
    "The disaster recovery drill takes place in the Frankfurt data center every October. Section 33.",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    redis_or_skip()
    tmp = tmp_path_factory.mktemp("redis-stack")
    mp = pytest.MonkeyPatch()
    apply_env(mp, base_env(tmp, redis_url=REDIS_URL))  # workers inherit this environment
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield tmp, client, make_user(Role.admin)
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(f"{settings.broker_key_prefix}*"):
        r.delete(key)
    mp.undo()
    restore_settings()


def _doc(doc_id: int) -> Document | None:
    with session_scope() as s:
        return s.get(Document, doc_id)


def _settled(ids) -> bool:
    return all((d := _doc(i)) is None or d.status in ("ready", "failed") for i in ids)


def _search(client, admin, query, cid):
    r = client.post("/api/search", json={"query": query, "collection_ids": [cid], "k": 20}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def test_upload_ready_search_delete_and_bad_batch_through_worker(stack):
    tmp, client, admin = stack
    worker = start_worker(log_path=tmp / "worker-e2e.log")
    try:
        cid = client.post("/api/collections", json={"name": "ops"}, headers=admin).json()["id"]
        r = client.post(
            f"/api/collections/{cid}/documents", files=[("files", f) for f in bad_batch()], headers=admin
        )
        assert r.status_code == 202, r.text
        ids = check_batch_response(r.json())
        wait_for(lambda: _settled(ids.values()), 180, "the batch to settle")
        check_failures(lambda name: client.get(f"/api/documents/{ids[name]}", headers=admin).json())
        assert worker.poll() is None, "the worker died on bad input"

        up = client.post(f"/api/collections/{cid}/documents", files=[("files", ("backup.txt", LONG_TEXT.encode()))],
                         headers=admin).json()  # fmt: skip
        doc_id = up["documents"][0]["id"]
        wait_for(lambda: _doc(doc_id).status == "ready", 120, "backup.txt to be ready")
        hits = _search(client, admin, "Where is the disaster recovery drill held?", cid)
        assert hits and hits[0]["document_id"] == doc_id and "Frankfurt" in hits[0]["text"]

        assert client.delete(f"/api/documents/{doc_id}", headers=admin).status_code == 204
        assert doc_id not in {h["document_id"] for h in _search(client, admin, "nightly snapshots", cid)}
        assert worker.poll() is None
    finally:
        kill_worker(worker, signal.SIGTERM)


def test_worker_killed_mid_document_is_redelivered_and_ingests_once(stack):
    tmp, client, admin = stack
    first = start_worker({"AUTOGLM_TEST_PAUSE_AT": "embedding:600"}, log_path=tmp / "worker-killed.log")
    second = None
    try:
        cid = client.post("/api/collections", json={"name": "crash"}, headers=admin).json()["id"]
        up = client.post(f"/api/collections/{cid}/documents", files=[("files", ("backup.txt", LONG_TEXT.encode()))],
                         headers=admin).json()  # fmt: skip
        doc_id = up["documents"][0]["id"]
        wait_for(lambda: _doc(doc_id).stage == "embedding", 120, "the worker to reach the embedding stage")
        mid = client.get(f"/api/documents/{doc_id}", headers=admin).json()  # progress while it works
        assert mid["status"] == "processing" and mid["chunks_total"] > 1 and 0 < mid["progress"] < 1
        kill_worker(first, signal.SIGKILL)
        assert _doc(doc_id).status == "processing"

        second = start_worker(log_path=tmp / "worker-second.log")
        wait_for(lambda: _doc(doc_id).status == "ready", 150, "the redelivered task to finish")
        doc = _doc(doc_id)
        assert doc.attempts == 2
        with session_scope() as s:
            ordinals = s.exec(select(Chunk.ordinal).where(Chunk.document_id == doc_id)).all()
            chunk_ids = set(s.exec(select(Chunk.id).where(Chunk.document_id == doc_id)).all())
        assert sorted(ordinals) == list(range(doc.chunk_count)) and doc.chunk_count > 1
        hits = _search(client, admin, "backup policy nightly snapshots database cluster", cid)
        assert len(hits) == min(20, doc.chunk_count)
        assert len({h["chunk_id"] for h in hits}) == len(hits) and {h["chunk_id"] for h in hits} <= chunk_ids
    finally:
        kill_worker(first, signal.SIGKILL)
        if second is not None:
            kill_worker(second, signal.SIGTERM)


def test_messy_files_through_the_upload_api_and_a_worker(stack):
    tmp, client, admin = stack
    worker = start_worker(log_path=tmp / "worker-messy.log")
    try:
        cid = client.post("/api/collections", json={"name": "messy"}, headers=admin).json()["id"]
        r = client.post(
            f"/api/collections/{cid}/documents", files=[("files", f) for f in messy_batch()], headers=admin
        )
        assert r.status_code == 202 and r.json()["rejected"] == [], r.text
        ids = {d["filename"]: d["id"] for d in r.json()["documents"]}
        wait_for(lambda: _settled(ids.values()), 180, "the messy batch to settle")
        check_messy(lambda i: client.get(f"/api/documents/{i}", headers=admin).json(), ids)
        assert worker.poll() is None, "the worker died on a messy file"
    finally:
        kill_worker(worker, signal.SIGTERM)


def test_cuda_is_left_to_the_pool_child_that_embeds(stack):
    """The prefork parent never loads torch (so it never initializes CUDA before it forks); the child that
    embeds does, and its log says where the model runs: on the GPU where torch sees one (auto)."""
    import re
    from pathlib import Path

    import torch

    tmp, client, admin = stack
    log = tmp / "worker-device.log"
    worker = start_worker(log_path=log)
    try:
        cid = client.post("/api/collections", json={"name": "device"}, headers=admin).json()["id"]
        up = client.post(f"/api/collections/{cid}/documents", files=[("files", ("backup.txt", LONG_TEXT.encode()))],
                         headers=admin).json()  # fmt: skip
        doc_id = up["documents"][0]["id"]
        wait_for(lambda: _doc(doc_id).status == "ready", 120, "backup.txt to be ready")
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        assert len(children) == 1, children  # --concurrency 1: one pool child
        parent = Path(f"/proc/{worker.pid}/maps").read_text()
        assert "libtorch" not in parent and "libcuda" not in parent
        assert "libtorch" in Path(f"/proc/{children[0]}/maps").read_text()
        want = "cuda:0" if torch.cuda.is_available() else "cpu"
        lines = [ln for ln in log.read_text().splitlines() if "embedding model" in ln]
        assert len(lines) == 1 and re.search(rf"ForkPoolWorker-1.* on {want} \(batch", lines[0]), lines
    finally:
        kill_worker(worker, signal.SIGTERM)
