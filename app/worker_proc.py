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
# Niceness of the embedded worker unless AUTOGLM_WORKER_NICE says otherwise: it shares the cores with the API,
# whose searches must not wait behind its embedding batches (benchmarks/RESULTS.md "Searches while the embedded
# worker ingests"). A nice-10 process gets about a tenth of a core that a nice-0 one wants, and all of an idle one.
EMBEDDED_WORKER_NICE = 10
# Seconds `autoglm serve` waits for its worker to stop before killing it (it normally takes well under one:
# a running document goes back to the queue, ingest.celery_app).
WORKER_STOP_TIMEOUT_S = 5.0


def worker_nice(embedded: bool) -> int:
    """The niceness a worker runs at: AUTOGLM_WORKER_NICE, else EMBEDDED_WORKER_NICE for the embedded worker and
    0 (the caller's) for `autoglm worker`."""
    if settings.worker_nice is not None:
        return settings.worker_nice
    return EMBEDDED_WORKER_NICE if embedded else 0


def lower_priority(nice: int) -> None:
    """Raise this process's niceness to `nice` (never lowers it: that takes privileges). Call it before any
    thread starts: on Linux a thread inherits the value of the thread that creates it, and only that."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


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


def _child_setup(nice: int):
    """What the worker child does between fork and exec: lower its priority (inherited by every thread it
    starts); on Linux get SIGTERM when `autoglm serve` dies, even by SIGKILL (no orphaned worker)."""

    def setup() -> None:
        lower_priority(nice)
        if _prctl is not None:
            _prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG

    return setup


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
        nice = worker_nice(embedded=True)
        self.proc = subprocess.Popen(
            worker_argv(name=f"embedded-{os.getpid()}@{socket.gethostname()}"),
            preexec_fn=_child_setup(nice),
            # NOTE: a process group of its own, so that a terminal's Ctrl-C reaches `serve` alone, which stops the
            # worker once the API has stopped; a worker that stopped by itself meanwhile was restarted by _run.
            process_group=0,
        )
        log.info(
            "started embedded Celery worker (pid %s, nice %d) on %s",
            self.proc.pid,
            nice,
            settings.effective_broker_url,
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

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            # The worker stops at once: a document it was processing goes back to the queue (ingest.celery_app).
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # killed, its document is still sent again: requeue_pending at the next start
                log.warning("embedded worker did not stop within %.0f s; killing it", timeout)
                self.proc.kill()
                self.proc.wait()
