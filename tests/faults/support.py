"""Private servers the fault tests may kill (never the shared Redis/PostgreSQL), and the index invariants a
crash must not break."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlmodel import select

from app.db import session_scope
from app.models import Chunk, Document
from tests.app.ask_support import free_port

LONG_TEXT = "\n\n".join(
    f"Section {i}. The backup policy requires nightly snapshots of database cluster {i} kept for {i + 7} days."
    for i in range(60)
)


class ServeProcess:
    """`autoglm serve` (plus `args`, e.g. --no-worker) on a free port in its own process group, as a terminal
    runs it; up once /api/health answers ok."""

    def __init__(self, log, *args: str, **env: str) -> None:
        import httpx

        from tests.app.support import ROOT, wait_for

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", *args, "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            assert self.proc.poll() is None, "the server exited during start-up"
            try:
                return httpx.get(f"{self.base}/api/health", timeout=1).json() == {"status": "ok"}
            except httpx.TransportError:
                return False

        wait_for(up, 120, "the server to start")


def _wait_port(port: int, up: bool, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if (s.connect_ex(("127.0.0.1", port)) == 0) == up:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not go {'up' if up else 'down'} in {timeout} s")


class RedisServer:
    """A private redis-server on a free port; stop() kills it (SIGKILL: what was not persisted is lost)."""

    def __init__(self, workdir: Path, appendonly: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (Debian package redis-server): fault tests need one")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes" if self.appendonly else "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        _wait_port(self.port, up=False)


class PostgresCluster:
    """A private PostgreSQL cluster (initdb in a temporary directory) on a free port, stopped and started
    at will. Runs as the `postgres` user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            pytest.skip(
                "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: cannot stop one"
            )
        self.bin = bins[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="autoglm-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open connections are terminated, new ones refused."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal a process started with start_new_session=True and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def upload_text(client, headers: dict, collection_id: int, name: str, text: str) -> int:
    """Upload one text file through the API; the new document's id (202 expected)."""
    r = client.post(
        f"/api/collections/{collection_id}/documents",
        files=[("files", (name, text.encode()))],
        headers=headers,
    )
    assert r.status_code == 202, r.text
    return r.json()["documents"][0]["id"]


def doc(doc_id: int) -> Document | None:
    with session_scope() as s:
        return s.get(Document, doc_id)


def check_index(collection_id: int) -> set[int]:
    """The invariants a crashed writer must not break, for one collection; returns its chunk ids.

    Every live segment file exists and no temporary or unlisted segment file is left in the directory; the
    vectors of the live segments (less tombstones) are exactly the collection's chunk rows, each once.
    """
    from ingest.pipeline import collection_dir, load_manifest
    from retrieval.index import read_segment, segment_vectors
    from retrieval.lexical import SIDECAR_SUFFIX, sidecar_path

    with session_scope() as s:
        manifest = load_manifest(s, collection_id)
        chunk_ids = set(
            s.exec(select(Chunk.id).join(Document).where(Document.collection_id == collection_id)).all()
        )
    cdir = collection_dir(collection_id)
    files = {p.name for p in cdir.iterdir()} if cdir.is_dir() else set()
    # (A reader may be building a BM25 sidecar right now: hidden temporaries of sidecars are not checked.)
    assert not [f for f in files if f.endswith(".faiss.tmp")], f"temporary segment files left: {files}"
    segment_files = {f for f in files if f.endswith(".faiss")}
    assert segment_files == set(manifest.segments), f"{segment_files=} {manifest.segments=}"
    # a writer writes a segment's sidecar before its commit: every live segment has one, an orphan none
    sidecars = {f for f in files if f.endswith(SIDECAR_SUFFIX) and not f.startswith(".")}
    assert sidecars == {sidecar_path(cdir, n).name for n in manifest.segments}, (
        f"{sidecars=} {manifest.segments=}"
    )
    vector_ids: list[int] = []
    for name in manifest.segments:
        ids, _ = segment_vectors(read_segment(cdir / name))
        vector_ids += [i for i in ids.tolist() if i not in manifest.tombstones]
    assert len(vector_ids) == len(set(vector_ids)), "a chunk is indexed twice"
    assert set(vector_ids) == chunk_ids, f"orphans: {set(vector_ids) ^ chunk_ids}"
    return chunk_ids


def check_ready_once(doc_id: int) -> Document:
    """The document is ready with one row per chunk ordinal (nothing duplicated by a re-run)."""
    d = doc(doc_id)
    assert d is not None and d.status == "ready", d
    with session_scope() as s:
        ordinals = s.exec(select(Chunk.ordinal).where(Chunk.document_id == doc_id)).all()
    assert sorted(ordinals) == list(range(d.chunk_count)) and d.chunk_count == d.chunks_total > 0
    return d


def interrupt(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
    """Signal a process group and wait for it; returns the exit status."""
    kill_group(proc, sig)
    return proc.wait(timeout)
