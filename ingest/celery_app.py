"""The Celery app. Configured from app.settings; the same tasks run on Redis and on the embedded broker.

Embedded broker: kombu's SQLAlchemy transport on a SQLite file in the data directory (worker --pool=solo).

Stopping a solo-pool worker (the embedded one, SIGTERM from `autoglm serve`, Ctrl-C): Celery's warm shutdown
waits for the running task, which is the whole document being embedded (tens of seconds), and an idle worker
only notices the request after its broker poll (2-3 s). Here the first SIGTERM or SIGINT also raises
WorkerShutdown in the worker's main thread, where the solo pool runs tasks: a document being processed goes
back to "queued" (ingest.pipeline.requeue_interrupted), its unacknowledged message returns to the broker
when the worker's channel closes, and the worker exits within a second. A prefork worker (Redis, `autoglm
worker`) keeps Celery's warm shutdown: its tasks run in pool processes and finish.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from celery import Celery
from celery.concurrency.solo import TaskPool as SoloPool
from celery.exceptions import WorkerShutdown
from celery.signals import worker_ready, worker_shutdown

from app.settings import settings
from ingest import names

app = Celery("autoglm", include=["ingest.tasks"])


def _drop_connections() -> None:
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


def configure() -> Celery:
    """(Re)apply settings to the Celery app; drops pooled broker connections so a new URL takes effect."""
    url = settings.effective_broker_url
    if url.startswith("sqla+"):
        # NOTE: the SQLAlchemy transport passes its options to create_engine(); give it none.
        transport_options: dict = {}
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    else:
        transport_options = {"visibility_timeout": settings.broker_visibility_timeout}
        if settings.broker_visibility_timeout < 60:
            # Look for unacked tasks of dead workers often enough for a short timeout to matter.
            transport_options["unacked_restore_interval"] = max(1, settings.broker_visibility_timeout // 2)
        if settings.broker_key_prefix:
            transport_options["global_keyprefix"] = settings.broker_key_prefix
    _drop_connections()
    app.conf.update(
        broker_url=url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # A broker restart (or a long outage) must not end the worker: reconnect until it is back.
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=names.QUEUE_INGEST,
        task_routes={
            names.PROCESS_DOCUMENT: {"queue": names.QUEUE_INGEST},
            names.COMPACT_COLLECTION: {"queue": names.QUEUE_MAINTENANCE},
        },
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_hijack_root_logger=False,
    )
    return app


configure()


_maintenance = None


@worker_ready.connect
def _start_maintenance(sender=None, **_) -> None:
    """Every worker looks for stuck and unsent documents on a timer (ingest.recovery)."""
    global _maintenance
    from ingest.recovery import start_maintenance

    _maintenance = start_maintenance()
    if isinstance(getattr(sender, "pool", None), SoloPool):
        for sig in (signal.SIGTERM, signal.SIGINT):
            _stop_promptly(sig)


_stopping = False


def _stop_promptly(sig: int) -> None:
    """Wrap Celery's handler of `sig` (installed by now): it records the shutdown as before, then the first such
    signal raises WorkerShutdown in the main thread, out of the running task or the idle broker poll (Celery's
    own hard shutdown raises WorkerTerminate the same way)."""
    celery_handler = signal.getsignal(sig)

    def handler(signum, frame) -> None:
        global _stopping
        if callable(celery_handler):
            celery_handler(signum, frame)
        if not _stopping:
            _stopping = True
            from celery.worker import state

            raise WorkerShutdown(state.should_stop or 0)

    signal.signal(sig, handler)


@worker_shutdown.connect
def _stop_maintenance(sender=None, **_) -> None:
    if _maintenance is not None:
        _maintenance.set()
    if _stopping:
        # NOTE: Celery has stopped by now (the broker's messages restored, connections closed) and every write is
        # committed; the interpreter's own teardown of torch and the rest took 1.5-2 s more of a Ctrl-C.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(getattr(sender, "exitcode", 0) or 0)
