"""Shared setup of the ask, OpenAI and sign-in tests: collections with ingested documents, SSE parsing,
a tiny random GLM-4 checkpoint, and a uvicorn server on a free loopback port (with that world built in it,
and the `openai` client pointed at it)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.models import Role
from ingest.pipeline import process_document
from tests.app.support import apply_env, base_env, make_user, restore_settings

GUIDE = b"""# Vacation policy

Employees receive twenty-eight days of paid leave per year. Requests go through the HR portal.

## Carry-over

Unused leave of up to five days carries over into the next calendar year.
"""
SECRET = b"""# Merger plans

Project Falcon: the board approved the acquisition of Northwind for ninety million euros.
"""


def ask_env(monkeypatch, tmp_path: Path, **extra: str) -> None:
    """A fresh data dir and database; retrieval deadline and back-pressure queue wait generous enough for
    a busy 2-core CI box (32 concurrent searches queue behind 8 slots)."""
    values = base_env(tmp_path)
    values.update({"AUTOGLM_RETRIEVAL_DEADLINE_MS": "60000", "AUTOGLM_BUSY_QUEUE_TIMEOUT_S": "120",
                   "AUTOGLM_MODEL_PATH": "", **extra})  # fmt: skip
    apply_env(monkeypatch, values)


@contextmanager
def ask_client(monkeypatch, tmp_path: Path, **extra: str) -> Iterator[TestClient]:
    """A TestClient on a fresh app over `ask_env`; the environment and settings are restored afterwards."""
    ask_env(monkeypatch, tmp_path, **extra)
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c
    monkeypatch.undo()
    restore_settings()


@dataclass
class World:
    """admin and member headers; collection `handbook` readable by the member's group, `board` not."""

    admin: dict[str, str]
    member: dict[str, str]
    handbook: int
    board: int
    group: int


def build_world(client) -> World:
    admin = make_user(Role.admin)
    r = client.post("/api/groups", json={"name": "staff"}, headers=admin)
    assert r.status_code == 201, r.text
    group = r.json()["id"]
    member = make_user(Role.member, group_ids=[group])
    ids = {}
    for name, groups, filename, data in (
        ("handbook", [group], "vacation.md", GUIDE),
        ("board", [], "merger.md", SECRET),
    ):
        r = client.post("/api/collections", json={"name": name, "group_ids": groups}, headers=admin)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        r = client.post(
            f"/api/collections/{cid}/documents", files=[("files", (filename, data))], headers=admin
        )
        assert r.status_code == 202, r.text
        for d in r.json()["documents"]:
            assert process_document(d["id"]) == "ready"
        ids[name] = cid
    return World(admin, member, ids["handbook"], ids["board"], group)


def parse_sse(body: str) -> list[tuple[str, dict]]:
    """[(event, data)] of a text/event-stream body."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture(scope="session")
def glm_checkpoint(tmp_path_factory) -> Path:
    """A tiny random GLM-4 (GlmForCausalLM) checkpoint with a small trained tokenizer."""
    from tests.inference.conftest import build_checkpoint, build_tokenizer

    root = tmp_path_factory.mktemp("glm")
    tok = root / "tok"
    tok.mkdir()
    build_tokenizer(tok)
    build_checkpoint(root / "tiny-glm", "glm", tok)
    return root / "tiny-glm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app under uvicorn in a thread (real sockets, real lifespan); stop() shuts it down."""

    def __init__(self) -> None:
        import uvicorn

        from app.main import create_app

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


@contextmanager
def live_world(tmp_path: Path, **extra: str) -> Iterator[tuple[LiveServer, World]]:
    """A LiveServer over `ask_env` with `build_world` in it; the environment and settings are restored
    afterwards. NOTE: one at a time: the servers of a process share its settings and engine."""
    with pytest.MonkeyPatch.context() as mp:
        ask_env(mp, tmp_path, **extra)
        server = LiveServer()
        try:
            with httpx.Client(base_url=server.base, timeout=120) as http:
                world = build_world(http)
            yield server, world
        finally:
            server.stop()
    restore_settings()


def sdk(server: LiveServer, headers: dict[str, str]):
    """The official `openai` client on the server's /v1 with the key in `headers`; no retries, so a 429 or
    503 is raised at once."""
    import openai

    key = headers["Authorization"].split()[1]
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0)
