"""Database engine, sessions and migrations. A leaf module (settings + models only), importable by ingest/."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from app.settings import settings

log = logging.getLogger(__name__)
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
DB_UNAVAILABLE = "database unavailable, retry"
DB_RETRY_AFTER_S = 5


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while a worker writes; the busy timeout waits out the other writer.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    """One engine per database URL per process (settings may change in tests and CLI)."""
    url = url or settings.db_url
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
                event.listen(eng, "connect", _sqlite_pragmas)
            else:
                # pre-ping: a connection the server dropped (restart, failover) is replaced at checkout,
                # so the API recovers from an outage without a restart.
                eng = create_engine(url, pool_pre_ping=True)
            _engines[url] = eng
        return eng


def dispose_engines() -> None:
    """Close every pooled connection (after fork, and before dropping a test database)."""
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for plain functions (workers, CLI); the caller commits."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def get_session() -> Iterator[Session]:
    """FastAPI dependency."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def release_connection(session: Session) -> None:
    """End the session's transaction so its pooled connection goes back before long work (retrieval,
    generation). NOTE: a request that held its connection while retrieval opened a second one deadlocked the
    pool under concurrency. Loaded objects stay usable (expire_on_commit=False); a later query opens a new
    transaction."""
    session.commit()


def database_unavailable(exc: OperationalError) -> HTTPException:
    """The database cannot be reached (stopped, restarting, refusing connections): the 503 with Retry-After
    to answer with (main.py shapes it per API); the next request tries again on a fresh connection."""
    log.warning("database unavailable: %s", str(exc.orig or exc).strip().splitlines()[0])
    return HTTPException(503, DB_UNAVAILABLE, headers={"Retry-After": str(DB_RETRY_AFTER_S)})


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url or settings.db_url
    return cfg


def migrate(url: str | None = None) -> None:
    """Bring the schema to the newest revision (idempotent; run on every start-up)."""
    from alembic import command

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
