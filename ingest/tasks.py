"""Celery tasks: thin shims over ingest.pipeline, plus the enqueue helpers (call them after the commit)."""

from __future__ import annotations

import logging

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from app.settings import settings
from ingest import names, pipeline
from ingest.celery_app import app
from ingest.locks import LockTimeout

log = logging.getLogger(__name__)

# Worth another try: the database or broker blinked, or another writer held the collection too long.
TRANSIENT = (
    OperationalError,
    LockTimeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


class DocumentTask(Task):
    """Marks the document failed, with a readable reason, when the task gives up."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        document_id = args[0] if args else kwargs.get("document_id")
        if isinstance(exc, SoftTimeLimitExceeded):
            reason = f"Processing took longer than {settings.task_soft_time_limit} s and was stopped."
        elif isinstance(exc, TRANSIENT):
            reason = (
                f"Processing failed after {self.request.retries + 1} attempts: {type(exc).__name__}: {exc}"
            )
        else:
            reason = f"Processing failed: {type(exc).__name__}: {exc}"
        pipeline.fail_document(document_id, reason)


# Idempotent tasks: acknowledged after they finish (redelivered if the worker dies), transient errors
# retried with exponential backoff and jitter, a bounded number of times.
RELIABLE = dict(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    max_retries=settings.task_max_retries,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
)


@app.task(name=names.PROCESS_DOCUMENT, base=DocumentTask, **RELIABLE)
def process_document_task(document_id: int) -> str:
    return pipeline.process_document(document_id)


@app.task(name=names.COMPACT_COLLECTION, **RELIABLE)
def compact_collection_task(collection_id: int) -> bool:
    return pipeline.compact_collection(collection_id)


def enqueue_document(document_id: int) -> bool:
    """Send the task (after the commit that created the row). False when the broker is unreachable."""
    try:
        process_document_task.apply_async(
            args=[document_id],
            queue=names.QUEUE_INGEST,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.2},
        )
        return True
    except Exception:  # noqa: BLE001  the document stays queued; a restart re-enqueues it
        log.exception("could not enqueue document %s", document_id)
        return False


def enqueue_compaction(collection_id: int) -> None:
    try:
        compact_collection_task.apply_async(args=[collection_id], queue=names.QUEUE_MAINTENANCE)
    except Exception:  # noqa: BLE001  compaction is an optimisation; the next delete schedules it again
        log.exception("could not enqueue compaction of collection %s", collection_id)
