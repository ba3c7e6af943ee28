"""Shared pieces of the app/ingest tests: an isolated data dir per test, a throwaway PostgreSQL database,
worker subprocesses, and small fixture documents generated on the fly."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app import auth
from app.db import dispose_engines, migrate, session_scope
from app.models import Role
from app.settings import reload_settings, settings

PG_ADMIN_DSN = os.environ.get("AUTOGLM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AUTOGLM_TEST_REDIS", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]


def apply_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """Point settings, the DB engine and the Celery app at a fresh environment."""
    from ingest.celery_app import configure

    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    reload_settings()
    configure()
    migrate()


def base_env(tmp_path: Path, database_url: str = "", redis_url: str = "") -> dict[str, str]:
    return {
        "AUTOGLM_DATA_DIR": str(tmp_path / "data"),
        "AUTOGLM_DATABASE_URL": database_url,
        "AUTOGLM_REDIS_URL": redis_url,
        "AUTOGLM_BROKER_URL": "",
        "AUTOGLM_BROKER_KEY_PREFIX": f"autoglm-test-{uuid.uuid4().hex[:8]}:" if redis_url else "",
        "AUTOGLM_BROKER_VISIBILITY_TIMEOUT": "4",
        "AUTOGLM_INDEX_ROOT": "",
        "AUTOGLM_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    }


@pytest.fixture
def env(tmp_path, monkeypatch):
    """SQLite in tmp_path, embedded broker (nothing consumes it: tests run the pipeline in-process)."""
    apply_env(monkeypatch, base_env(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    restore_settings()


def restore_settings() -> None:
    """Back to the process environment; frees the test's embedder (one model copy per cache path)."""
    from ingest.celery_app import configure
    from retrieval import embeddings

    cache = str(settings.embed_cache_path)
    with embeddings._instances_lock:
        for key in [k for k in embeddings._instances if k[1] == cache]:
            del embeddings._instances[key]
    reload_settings()
    configure()


def postgres_database() -> tuple[str, Callable[[], None]]:
    """Create a throwaway database; returns (SQLAlchemy URL, drop function). Skips loudly without a server."""
    psycopg = pytest.importorskip("psycopg")
    name = f"autoglm_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {e}")

    def drop() -> None:
        dispose_engines()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", drop


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as e:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {e}")


def make_user(role: Role, name: str | None = None, group_ids: list[int] = ()) -> dict[str, str]:
    """A user with an API key; returns the Authorization header."""
    with session_scope() as s:
        _, key = auth.create_user(s, name or f"{role}-{uuid.uuid4().hex[:6]}", role, list(group_ids))
        s.commit()
    return {"Authorization": f"Bearer {key}"}


def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- worker subprocesses ---------------------------------------------------------------------------
def start_worker(extra_env: dict[str, str] | None = None, log_path: Path | None = None) -> subprocess.Popen:
    """`autoglm worker` in its own process group (so a test can SIGKILL it with its pool children)."""
    env = {k: v for k, v in os.environ.items()}
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--name", f"test-{uuid.uuid4().hex[:8]}@%h"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_worker(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- fixture documents -----------------------------------------------------------------------------
def make_pdf(pages: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return buf.getvalue()


def make_encrypted_pdf(text: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def make_docx(paragraphs: list[tuple[str, str]]) -> bytes:
    """paragraphs: (style, text) with style 'h1', 'h2' or 'p'."""
    import docx

    d = docx.Document()
    for style, text in paragraphs:
        if style.startswith("h"):
            d.add_heading(text, level=int(style[1:]))
        else:
            d.add_paragraph(text)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def make_zip_bomb_docx(inflated_mb: int = 40) -> bytes:
    """A DOCX whose document.xml inflates to tens of MB from a few KB (ratio far over any real file)."""
    src = zipfile.ZipFile(io.BytesIO(make_docx([("p", "hello")])))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml":
                data = data.replace(b"hello", b"hello" + b" " * (inflated_mb * 1024 * 1024))
            z.writestr(item.filename, data)
    return buf.getvalue()


BINARY_JUNK = bytes(range(256)) * 64 + b"\x00\x01\x02\xff" * 512
