"""The API process stopped (SIGTERM) or killed (SIGKILL) while it streams an answer: the client's stream ends
with an error (no `done` event) instead of hanging, the answer turn is stored as incomplete (empty, meta
{"incomplete": true}) rather than half-saved, and the next start-up is clean and continues the conversation."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from app.db import session_scope
from app.models import Collection, Message, Role
from app.uploads import add_document
from ingest.pipeline import process_document
from tests.app.ask_support import GUIDE
from tests.app.support import apply_env, base_env, make_user, restore_settings
from tests.faults.support import ServeProcess, interrupt

pytestmark = pytest.mark.slow
QUESTION = "How many days of paid leave do employees get?"


class Server(ServeProcess):
    """`autoglm serve --no-worker` in its own process group on a free port."""

    def __init__(self, log, **env: str) -> None:
        super().__init__(log, "--no-worker", **env)


def _stream_until_killed(server: Server, headers: dict, sig: int, conversation_id: int | None = None):
    """Ask with stream=True, signal the server after the first answer piece, read on; returns (events, error)."""
    events: list[tuple[str, dict]] = []
    body = {"question": QUESTION, "stream": True, "conversation_id": conversation_id}
    error = None
    t0 = None
    with httpx.stream("POST", f"{server.base}/api/ask", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        name = None
        try:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, json.loads(line.removeprefix("data: "))))
                    if name == "token" and t0 is None:
                        t0 = time.monotonic()
                        os.killpg(server.proc.pid, sig)  # the answer is paused before its next piece
        except httpx.TransportError as e:
            error = e
    assert t0 is not None, events
    assert time.monotonic() - t0 < 20, "the stream outlived the server"
    return events, error


def _turns(conversation_id: int) -> list[tuple[str, str, dict | None]]:
    with session_scope() as s:
        rows = s.exec(select_messages(conversation_id)).all()
    return [(m.role, m.content, m.meta) for m in rows]


def select_messages(conversation_id: int):
    from sqlmodel import select

    return select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)


def test_api_killed_while_streaming(tmp_path, monkeypatch):
    apply_env(monkeypatch, {**base_env(tmp_path), "AUTOGLM_RETRIEVAL_DEADLINE_MS": "60000",
                            "AUTOGLM_SHUTDOWN_GRACE_S": "1", "AUTOGLM_LOG_JSON": "false"})  # fmt: skip
    servers: list[Server] = []
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115
    try:
        admin = make_user(Role.admin)
        with session_scope() as s:
            coll = Collection(name="handbook")
            s.add(coll)
            s.flush()
            d, _ = add_document(s, coll.id, "vacation.md", GUIDE, None)
            s.commit()
        assert process_document(d.id) == "ready"
        paused = {"AUTOGLM_TEST_PAUSE_AT": "answer:60"}

        # SIGTERM: the stream is given the grace period, then closed; the process exits cleanly.
        servers.append(Server(log, **paused))
        events, error = _stream_until_killed(servers[-1], admin, signal.SIGTERM)
        assert [e for e, _ in events] == ["sources", "token"] and error is not None
        # uvicorn re-raises the signal once it has shut down (lifespan shutdown ran, then the default action).
        assert servers[-1].proc.wait(30) == -signal.SIGTERM
        assert b"Application shutdown complete." in (tmp_path / "server.log").read_bytes()
        conv = events[0][1]["conversation_id"]
        assert _turns(conv) == [("user", QUESTION, None), ("assistant", "", {"incomplete": True})]

        # SIGKILL: the connection drops at once.
        servers.append(Server(log, **paused))
        events, error = _stream_until_killed(servers[-1], admin, signal.SIGKILL, conv)
        assert [e for e, _ in events] == ["sources", "token"] and error is not None
        assert servers[-1].proc.wait(30) == -signal.SIGKILL
        assert _turns(conv)[2:] == [("user", QUESTION, None), ("assistant", "", {"incomplete": True})]

        # The next start-up is clean and the conversation goes on.
        servers.append(Server(log))
        http = httpx.Client(base_url=servers[-1].base, headers=admin, timeout=60)
        assert http.get("/readyz").json()["checks"]["database"] == {"ok": True}
        shown = http.get(f"/api/conversations/{conv}").json()["messages"]
        assert [m["meta"] for m in shown if m["role"] == "assistant"] == [{"incomplete": True}] * 2
        r = http.post("/api/ask", json={"question": QUESTION, "conversation_id": conv})
        assert r.status_code == 200 and "twenty-eight days" in r.json()["answer"]
        role, content, meta = _turns(conv)[-1]
        assert role == "assistant" and "twenty-eight days" in content and "incomplete" not in meta
        assert len(_turns(conv)) == 6
    finally:
        for server in servers:
            interrupt(server.proc, signal.SIGKILL)
        log.close()
        monkeypatch.undo()
        restore_settings()
