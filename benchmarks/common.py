"""Pieces shared by the benchmarks that drive the real product: the `autoglm` CLI, a server on a free
loopback port, the Python-docs corpus and its labelled questions, percentiles."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "benchmarks" / "data" / "python_docs_questions.jsonl"
DOC_DIRS = [
    "/usr/share/doc/python3/html",
    "/usr/share/doc/python3.11/html",
    "/usr/share/doc/python3-doc/html",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of xs; NaN for none."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def product_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a product process over `data_dir` (offline, plain logs)."""
    env = {
        **os.environ,
        "AUTOGLM_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "AUTOGLM_LOG_JSON": "false",
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def autoglm(env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess:
    """Run `autoglm <args>` to completion (raises on failure)."""
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, check=True, **kw)


def start_server(env: dict[str, str], *args: str, log=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """`autoglm serve <args>` on a free loopback port; returns (process, base URL) once /healthz answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def docs_dir(arg: str | None) -> Path:
    """--docs, else Debian's python3-doc HTML root; exits with the fix when there is none."""
    found = Path(arg) if arg else next((Path(d) for d in DOC_DIRS if Path(d).is_dir()), None)
    if found is None or not (found / "library").is_dir():
        raise SystemExit("no documents: apt-get install -y python3-doc, or pass --docs DIR")
    return found


def load_questions() -> list[dict]:
    """The labelled questions: {"question", "page"} (page relative to the docs root)."""
    return [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]


def create_collection(name: str) -> int:
    """A new collection in the product's database (AUTOGLM_DATA_DIR set before the first app import); its id."""
    from app.db import migrate, session_scope
    from app.models import Collection

    migrate()
    with session_scope() as s:
        coll = Collection(name=name)
        s.add(coll)
        s.commit()
        return coll.id
