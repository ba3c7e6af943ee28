"""The Celery worker yields the CPU to the API (its niceness) and stops at once: Ctrl-C on `autoglm serve` ends
it within seconds, and the document its worker was embedding is queued again and finished after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.db import session_scope
from app.models import Collection, DocStatus, Document, Role
from app.settings import Settings
from app.worker_proc import EMBEDDED_WORKER_NICE
from tests.app.support import ROOT, apply_env, base_env, make_user, restore_settings, wait_for
from tests.faults.support import LONG_TEXT, ServeProcess

# Bound on a stop that used to wait for the document being embedded (here a 60 s pause before each embedding
# batch); it takes 1-2 s on a loaded 2-core machine.
STOP_BOUND_S = 10


def _nice(pid: int, tid: int | None = None) -> int:
    """The niceness of a process (its main thread) or of one of its threads, from /proc."""
    stat = Path(f"/proc/{pid}/task/{tid or pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def _threads_nice(pid: int) -> set[int]:
    return {_nice(pid, int(t.name)) for t in Path(f"/proc/{pid}/task").iterdir()}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def data(tmp_path, monkeypatch):
    # searches that check the index must not come back degraded from a busy 2-core CI box
    apply_env(
        monkeypatch,
        {**base_env(tmp_path), "AUTOGLM_LOG_JSON": "false", "AUTOGLM_RETRIEVAL_DEADLINE_MS": "60000"},
    )
    yield tmp_path
    monkeypatch.undo()
    restore_settings()


def test_worker_nice_must_be_a_lower_priority():
    assert Settings(worker_nice=19).worker_nice == 19
    for bad in (-5, 20):
        with pytest.raises(ValueError, match="worker_nice must be within 0..19"):
            Settings(worker_nice=bad)


@pytest.mark.slow
def test_autoglm_worker_runs_at_the_configured_niceness_and_stops_at_once(data):
    log = data / "worker.log"
    env = {**os.environ, "AUTOGLM_WORKER_NICE": "7", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: b" ready." in log.read_bytes(), 120, "the worker to be ready")
        # every thread (Celery's, the maintenance timer, torch's) runs at it: set before exec, inherited
        assert _threads_nice(worker.pid) == {max(7, os.nice(0))}
        t0 = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert time.monotonic() - t0 < STOP_BOUND_S, log.read_text()[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


class Serve(ServeProcess):
    """`autoglm serve` (API + embedded worker) in its own process group, as a terminal runs it."""

    def worker_pid(self) -> int:
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(kids) == 1, kids
        return int(kids[0])

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _document(doc_id: int) -> Document:
    with session_scope() as s:
        return s.get(Document, doc_id)


@pytest.mark.slow
def test_ctrl_c_stops_serve_at_once_and_the_interrupted_document_is_finished_after_restart(data):
    admin = make_user(Role.admin)
    with session_scope() as s:
        coll = Collection(name="ops")
        s.add(coll)
        s.commit()
        cid = coll.id
    log = open(data / "serve.log", "ab")  # noqa: SIM115
    servers: list[Serve] = []
    try:
        # The worker holds before each embedding batch: Celery's warm shutdown would wait all of it.
        servers.append(Serve(log, AUTOGLM_TEST_PAUSE_AT="embed_batch:60"))
        server = servers[-1]
        worker = server.worker_pid()
        assert _nice(worker) == max(EMBEDDED_WORKER_NICE, os.nice(0))  # the default of the embedded worker
        assert _nice(server.proc.pid) == os.nice(0)  # the API keeps its priority
        r = httpx.post(f"{server.base}/api/collections/{cid}/documents", headers=admin, timeout=30,
                       files=[("files", ("backups.txt", LONG_TEXT.encode()))])  # fmt: skip
        assert r.status_code == 202, r.text
        doc_id = r.json()["documents"][0]["id"]
        wait_for(lambda: _document(doc_id).stage == "embedding", 120, "the worker to embed the document")
        assert _document(doc_id).attempts == 1

        t0 = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        server.proc.wait(60)
        stopped = time.monotonic() - t0
        wait_for(lambda: not _alive(worker), 10, "the worker to be gone")
        assert stopped < STOP_BOUND_S, (data / "serve.log").read_text()[-3000:]
        assert "did not stop" not in (data / "serve.log").read_text()  # it stopped by itself, not killed
        doc = _document(doc_id)
        # queued again, the interrupted start not counted, nothing indexed
        assert (doc.status, doc.stage, doc.attempts, doc.chunk_count) == (DocStatus.queued, "queued", 0, 0)

        servers.append(Serve(log))
        server = servers[-1]
        wait_for(lambda: _document(doc_id).status == DocStatus.ready, 120, "the document to be ready")
        assert _document(doc_id).attempts == 1
        hits = httpx.post(f"{server.base}/api/search", headers=admin, timeout=30,
                          json={"query": "nightly snapshots of database cluster 12"}).json()["hits"]  # fmt: skip
        assert hits and hits[0]["document_id"] == doc_id
    finally:
        for s in servers:
            s.kill()
        log.close()
