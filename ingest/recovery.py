"""Recovery of documents the queue lost track of, run by every worker on a timer and by `autoglm serve` at
start-up (Celery beat is not needed).

- Stuck: a "processing" document whose heartbeat (updated_at, kept fresh by ingest.pipeline while a worker
  works on it) is older than stuck_after_s lost its worker. It is queued and sent again, or failed with a
  reason once it was started max_attempts times.
- Outbox: a "queued" document that is not in the broker resend_after_s after it was last sent (the enqueue
  failed while the broker was down, or a broker restart without persistence dropped the message) is sent
  again. A broker that cannot be read sends nothing (the send would fail too).

Safe with several workers and API replicas: each document is claimed by a conditional UPDATE of its row
(status and updated_at unchanged since it was read), so exactly one process acts on it. Sending twice is
harmless anyway: the pipeline ignores a delivery of a document that is no longer queued or processing.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import timedelta

from sqlmodel import select, update

from app.db import session_scope
from app.models import DocStatus, Document, utcnow
from app.settings import settings
from ingest import names

log = logging.getLogger(__name__)


def _claim(document_id: int, expected: str, cutoff, **values) -> bool:
    """Apply `values` if the row is still `expected` and untouched since `cutoff`; True if this call did."""
    with session_scope() as s:
        result = s.exec(
            update(Document)
            .where(Document.id == document_id, Document.status == expected, Document.updated_at < cutoff)
            .values(updated_at=utcnow(), **values)
        )
        s.commit()
        return result.rowcount == 1


def recover_stuck() -> tuple[list[int], list[int]]:
    """Re-queue (and send) or fail the processing documents whose heartbeat stopped; (re-queued, failed)."""
    from ingest.tasks import enqueue_document

    cutoff = utcnow() - timedelta(seconds=settings.stuck_after_s)
    with session_scope() as s:
        rows = s.exec(
            select(Document.id, Document.attempts).where(
                Document.status == DocStatus.processing, Document.updated_at < cutoff
            )
        ).all()
    requeued: list[int] = []
    failed: list[int] = []
    for doc_id, attempts in rows:
        if attempts >= settings.max_attempts:
            reason = (
                f"Processing was started {attempts} times and stopped without finishing (its worker sent "
                f"no heartbeat for {settings.stuck_after_s:g} s); gave up."
            )
            # its worker stopped, not its file: Re-index may finish it
            if _claim(
                doc_id, DocStatus.processing, cutoff, status=DocStatus.failed, error=reason, retryable=True
            ):
                failed.append(doc_id)
                log.warning("document %s failed: %s", doc_id, reason)
        elif _claim(
            doc_id, DocStatus.processing, cutoff, status=DocStatus.queued, stage="queued", progress=0.0
        ):
            requeued.append(doc_id)
            log.warning("document %s: its worker stopped (no heartbeat); queued again", doc_id)
            enqueue_document(doc_id)  # a failed send is retried by the outbox
    return requeued, failed


def resend_queued() -> list[int]:
    """Send again the queued documents that are not in the broker resend_after_s after their last send."""
    from ingest.tasks import enqueue_document

    cutoff = utcnow() - timedelta(seconds=settings.resend_after_s)
    with session_scope() as s:
        ids = s.exec(
            select(Document.id)
            .where(Document.status == DocStatus.queued, Document.updated_at < cutoff)
            .order_by(Document.id)
        ).all()
    if not ids:
        return []
    in_broker = broker_document_ids()
    if in_broker is None:
        return []
    sent = []
    for doc_id in ids:
        if doc_id not in in_broker and _claim(doc_id, DocStatus.queued, cutoff) and enqueue_document(doc_id):
            sent.append(doc_id)
    if sent:
        log.warning("sent again %d queued documents the broker did not hold: %s", len(sent), sent)
    return sent


# --- what the broker holds -------------------------------------------------------------------------
def broker_document_ids() -> set[int] | None:
    """Ids of the documents with a process_document message waiting or delivered-but-unacknowledged in the
    ingest queue; None when the broker cannot be read."""
    url = settings.effective_broker_url
    try:
        if url.startswith("sqla+"):
            messages = _sqla_messages(url.removeprefix("sqla+"))
        elif url.startswith(("redis://", "rediss://", "unix://")):
            messages = _redis_messages(url)
        else:
            log.warning("cannot inspect broker %s; the outbox sends nothing", url.split("://", 1)[0])
            return None
    except Exception:  # noqa: BLE001  broker down: nothing can be sent now anyway
        log.warning("could not read the broker's ingest queue", exc_info=True)
        return None
    return {i for i in map(_document_id, messages) if i is not None}


def _redis_messages(url: str) -> list[dict]:
    import redis
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    prefix = settings.broker_key_prefix
    # kombu keeps one list per priority step: the queue name, then name + sep + step for the others.
    keys = [names.QUEUE_INGEST] + [f"{names.QUEUE_INGEST}{Channel.sep}{p}" for p in PRIORITY_STEPS if p]
    try:
        raw = [m for key in keys for m in client.lrange(prefix + key, 0, -1)]
        out = [json.loads(m) for m in raw]
        # Delivered, not yet acknowledged: [message, exchange, routing key] per delivery tag.
        out += [json.loads(v)[0] for v in client.hvals(prefix + Channel.unacked_key)]
    finally:
        client.close()
    return out


_sqla_engines: dict[str, object] = {}


def _sqla_messages(url: str) -> list[dict]:
    from sqlalchemy import create_engine, text

    engine = _sqla_engines.get(url)
    if engine is None:
        engine = _sqla_engines[url] = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
                "WHERE q.name = :name AND m.visible = :visible"
            ),
            {"name": names.QUEUE_INGEST, "visible": True},
        ).all()
    return [json.loads(payload) for (payload,) in rows]


def _document_id(message: dict) -> int | None:
    """The document id of a process_document task message (Celery protocol 2), else None."""
    try:
        if message.get("headers", {}).get("task") != names.PROCESS_DOCUMENT:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# --- the timer -------------------------------------------------------------------------------------
def run_maintenance() -> None:
    """One pass of both checks; errors are logged (the database or broker may be down for a while)."""
    for check in (recover_stuck, resend_queued):
        try:
            check()
        except Exception:  # noqa: BLE001  the next pass tries again
            log.warning("%s failed", check.__name__, exc_info=True)


def start_maintenance() -> threading.Event:
    """Run run_maintenance now and then every maintenance_interval_s on a daemon thread; set() the returned
    event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            run_maintenance()
            if stop.wait(settings.maintenance_interval_s):
                return

    threading.Thread(target=loop, name="ingest-maintenance", daemon=True).start()
    return stop
