"""The Celery worker as a child process (`autoglm serve`) or in the foreground (`autoglm worker`)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from app.settings import settings
from ingest.names import ALL_QUEUES

log = logging.getLogger(__name__)


def worker_argv(concurrency: int | None = None, name: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "ingest.celery_app:app", "worker"]
    argv += ["-Q", ",".join(ALL_QUEUES), "--loglevel", settings.log_level]
    argv += ["-n", name or "autoglm@%h"]
    if settings.embedded_broker:
        # NOTE: the SQLite broker file takes one consumer; the solo pool runs tasks in the worker process.
        argv += ["--pool=solo"]
    else:
        argv += ["--pool=prefork", "--concurrency", str(concurrency or 1)]
    return argv


def requeue_pending() -> int:
    """Send again every document left queued/processing (the embedded broker drops in-flight tasks of a
    killed worker; tasks are idempotent, so a duplicate is harmless)."""
    from ingest.pipeline import pending_documents
    from ingest.tasks import enqueue_document

    ids = pending_documents()
    for doc_id in ids:
        enqueue_document(doc_id)
    if ids:
        log.info("re-enqueued %d pending documents", len(ids))
    return len(ids)


try:  # resolved before any fork: the child between fork and exec must not import anything
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when `autoglm serve` dies, even by SIGKILL (no orphaned worker)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class WorkerSupervisor:
    """Runs the embedded worker child and restarts it if it dies (until stop())."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            worker_argv(name=f"embedded-{os.getpid()}@{socket.gethostname()}"), preexec_fn=_die_with_parent
        )
        log.info(
            "started embedded Celery worker (pid %s) on %s", self.proc.pid, settings.effective_broker_url
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.proc is not None and self.proc.poll() is not None and not self._stop.is_set():
                log.warning("embedded worker exited with %s; restarting", self.proc.returncode)
                time.sleep(2)
                if self._stop.is_set():
                    break
                self._spawn()
                if settings.embedded_broker:
                    requeue_pending()
            self._stop.wait(1.0)

    def stop(self, timeout: float = 20) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # warm shutdown: the running task finishes or is redelivered
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
