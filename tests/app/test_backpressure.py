"""Back-pressure against the real server (`autoglm serve` in a subprocess, one search and one ask slot):
requests past a work class's slots and queue get 503 with Retry-After at once (OpenAI's error shape
under /v1/), a queued request is served when a slot frees or refused when its wait runs out, the
server answers normally afterwards, and thousands of refusals do not grow the API process's memory.
A full engine queue (EngineOverloaded) is a 503 with Retry-After too.

The slots are held by slow clients: a request whose body arrives only when the test says so (the gate
is taken before the body is read, so a slow client holds its slot like a slow search would).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.backpressure import busy_detail, work_class
from tests.app.ask_support import ask_env, build_world, free_port, glm_checkpoint, parse_sse  # noqa: F401
from tests.app.support import ROOT, restore_settings, wait_for

psutil = pytest.importorskip("psutil")
# A queued search waits for the flood of refusals and the holder's search: generous on a busy CI box.
QUEUE_TIMEOUT_S = 6.0
SEARCH = {"query": "How many days of paid leave do employees get?", "k": 3}
ASK = {"question": "How many days of paid leave do employees get?"}


class SlowBody:
    """A request body whose last bytes are sent only after release(): a slow client holding its slot."""

    def __init__(self, payload: dict | bytes) -> None:
        self.data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.released = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[:3]
        self.released.wait(60)
        yield self.data[3:]


class Server:
    """`autoglm serve --no-worker` on a free loopback port, over the test's data directory."""

    def __init__(self, log_path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AUTOGLM_LOG_JSON": "false", "AUTOGLM_LOG_LEVEL": "WARNING"}
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            assert self.proc.poll() is None, f"server exited; see {log_path}"
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 120, "the server to start")

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def gauge(self, name: str, cls: str) -> float:
        for line in httpx.get(f"{self.base}/metrics").text.splitlines():
            if line.startswith(f'{name}{{cls="{cls}"}}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backpressure")
    with pytest.MonkeyPatch.context() as mp:
        ask_env(mp, tmp, AUTOGLM_MAX_CONCURRENT_SEARCH="1", AUTOGLM_MAX_QUEUED_SEARCH="1",
                AUTOGLM_MAX_CONCURRENT_ASK="1", AUTOGLM_MAX_QUEUED_ASK="0",
                AUTOGLM_MAX_CONCURRENT_UPLOAD="1", AUTOGLM_MAX_QUEUED_UPLOAD="0",
                AUTOGLM_BUSY_QUEUE_TIMEOUT_S=str(QUEUE_TIMEOUT_S))  # fmt: skip
        server = Server(tmp / "server.log")
        try:
            with httpx.Client(base_url=server.base, timeout=120) as http:
                world = build_world(http)
                # Warm (embedder, BM25 sidecars) so a held search finishes well inside the queue wait.
                assert http.post("/api/search", json=SEARCH, headers=world.member).status_code == 200
            yield server, world
        finally:
            server.stop()
    restore_settings()


def _send_slow(pool: ThreadPoolExecutor, server: Server, path: str, body: SlowBody, headers: dict):
    headers = {**headers, "Content-Type": "application/json"}
    return pool.submit(httpx.post, f"{server.base}{path}", content=iter(body), headers=headers, timeout=120)


def _timed(fn) -> tuple[httpx.Response, float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def _assert_busy(r: httpx.Response, cls: str, openai: bool = False) -> None:
    assert r.status_code == 503, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    if openai:
        err = r.json()["error"]
        assert (err["message"], err["type"], err["code"]) == (busy_detail(cls), "server_error", "server_busy")
    else:
        assert r.json() == {"detail": busy_detail(cls)}


def test_search_sheds_past_slot_and_queue_then_serves(live):
    server, w = live
    with ThreadPoolExecutor(4) as pool, httpx.Client(base_url=server.base, timeout=60) as http:
        holder, queued = SlowBody(SEARCH), SlowBody(SEARCH)
        held = _send_slow(pool, server, "/api/search", holder, w.member)
        wait_for(lambda: server.gauge("autoglm_backpressure_in_flight", "search") == 1, 30, "the slot held")
        waiting = _send_slow(pool, server, "/api/search", queued, w.member)
        wait_for(lambda: server.gauge("autoglm_backpressure_queued", "search") == 1, 30, "one queued")
        queued.released.set()  # its body is ready: it only waits for the slot

        refused = list(pool.map(lambda _: _timed(lambda: http.post("/api/search", json=SEARCH,
                                                                     headers=w.member)), range(12)))  # fmt: skip
        for r, took in refused:
            _assert_busy(r, "search")
            assert took < QUEUE_TIMEOUT_S / 2, f"a refusal took {took:.2f} s: it waited instead"

        holder.released.set()
        for fut in (held, waiting):
            r = fut.result(60)
            assert r.status_code == 200, r.text
            assert [h["document_title"] for h in r.json()["hits"]][:1] == ["Vacation policy"]
        assert http.post("/api/search", json=SEARCH, headers=w.member).status_code == 200

        # A queued request whose wait runs out is refused too (no slot freed in time).
        holder = SlowBody(SEARCH)
        held = _send_slow(pool, server, "/api/search", holder, w.member)
        wait_for(lambda: server.gauge("autoglm_backpressure_in_flight", "search") == 1, 30, "the slot held")
        r, took = _timed(lambda: http.post("/api/search", json=SEARCH, headers=w.member))
        _assert_busy(r, "search")
        assert QUEUE_TIMEOUT_S - 0.2 <= took < QUEUE_TIMEOUT_S + 2, took
        holder.released.set()
        assert held.result(60).status_code == 200
    assert server.gauge("autoglm_backpressure_queued", "search") == 0
    assert server.gauge("autoglm_backpressure_in_flight", "search") == 0


def test_ask_refusals_are_fast_and_do_not_grow_memory(live):
    server, w = live
    member_key = w.member["Authorization"].split()[1]
    openai_headers = {"Authorization": f"Bearer {member_key}"}
    chat = {"model": "rag:handbook", "messages": [{"role": "user", "content": ASK["question"]}]}
    with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=server.base, timeout=60) as http:
        holder = SlowBody(ASK)
        held = _send_slow(pool, server, "/api/ask", holder, w.member)
        wait_for(lambda: server.gauge("autoglm_backpressure_in_flight", "ask") == 1, 30, "the slot held")

        def one(i: int) -> tuple[httpx.Response, float, bool]:
            if i % 3 == 2:
                r, took = _timed(lambda: http.post("/v1/chat/completions", json=chat, headers=openai_headers))
                return r, took, True
            body = {**ASK, "stream": bool(i % 3)}
            return (*_timed(lambda: http.post("/api/ask", json=body, headers=w.member)), False)

        warm = list(pool.map(one, range(300)))
        before = server.rss()
        rest = list(pool.map(one, range(300, 3000)))
        after = server.rss()
        for r, _, openai in warm + rest:
            _assert_busy(r, "ask", openai)
        took = sorted(t for _, t, _ in rest)
        assert took[int(0.99 * len(took))] < 1.0, f"p99 of refusals {took[int(0.99 * len(took))]:.2f} s"
        # 2,700 refusals: anything kept per refused request (a waiter, a body, a log record) shows here.
        assert after - before < 8 * 2**20, f"API RSS grew {(after - before) / 2**20:.1f} MiB"

        holder.released.set()
        r = held.result(60)
        assert r.status_code == 200 and r.json()["sources"], r.text
    # The slot frees once the response is sent; with no queue, a request in that instant would be refused.
    wait_for(lambda: server.gauge("autoglm_backpressure_in_flight", "ask") == 0, 30, "the slot freed")
    with httpx.Client(base_url=server.base, timeout=60) as http:
        events = parse_sse(http.post("/api/ask", json={**ASK, "stream": True}, headers=w.member).text)
        assert [e for e, _ in events][-1] == "done"
        wait_for(lambda: server.gauge("autoglm_backpressure_in_flight", "ask") == 0, 30, "the slot freed")
        assert http.post("/v1/chat/completions", json=chat, headers=openai_headers).status_code == 200
    metrics = httpx.get(f"{server.base}/metrics").text
    assert 'autoglm_backpressure_rejected_total{cls="ask",reason="queue_full"} 3000.0' in metrics


def test_a_slow_upload_holds_no_slot_while_it_is_sent(live):
    """Uploads take their slot once the body has arrived: a large file on a slow link does not block others."""
    server, w = live
    url = f"{server.base}/api/collections/{w.handbook}/documents"
    req = httpx.Request("POST", url, files=[("files", ("slow.md", b"# Slow\n\nSent over a slow link.\n"))])
    slow = SlowBody(req.read())
    headers = {**w.admin, "Content-Type": req.headers["Content-Type"]}
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(httpx.post, url, content=iter(slow), headers=headers, timeout=60)
        time.sleep(1.0)  # the slow request is on the server, its body half sent
        assert server.gauge("autoglm_backpressure_in_flight", "upload") == 0
        quick = httpx.post(
            url, files=[("files", ("quick.md", b"# Quick\n\nSent at once.\n"))], headers=w.admin
        )
        assert quick.status_code == 202, (
            quick.text
        )  # one slot, no queue: it would be a 503 if the slot were held
        # the quick upload frees its slot once its response is sent: the slow body must not finish before that
        wait_for(lambda: server.gauge("autoglm_backpressure_in_flight", "upload") == 0, 30, "the slot freed")
        slow.released.set()
        r = sending.result(60)
    assert r.status_code == 202 and [d["filename"] for d in r.json()["documents"]] == ["slow.md"], r.text


def test_text_completions_are_ask_work():
    # a text completion runs the same retrieval and generation as a chat one: the same slots and queue
    assert [work_class("POST", p) for p in ("/v1/completions", "/v1/chat/completions/", "/v1/embeddings")] == [
        "ask", "ask", "search"]  # fmt: skip
    assert work_class("GET", "/v1/completions") is None


def test_full_engine_queue_is_503_with_retry_after(tmp_path, monkeypatch, glm_checkpoint):  # noqa: F811
    from fastapi.testclient import TestClient

    from app.engine_service import service
    from app.main import create_app
    from app.routes.ask import BUSY

    ask_env(monkeypatch, tmp_path, AUTOGLM_MODEL_PATH=str(glm_checkpoint), AUTOGLM_ANSWER_MAX_TOKENS="8",
            AUTOGLM_KV_CACHE_MEMORY_MB="32")  # fmt: skip
    try:
        with TestClient(create_app()) as client:
            w = build_world(client)
            service.engine.max_waiting = 0  # the engine's queue takes no request: every submit overflows
            r = client.post("/api/ask", json=ASK, headers=w.member)
            assert (r.status_code, r.json()) == (503, {"detail": BUSY}) and int(r.headers["Retry-After"]) >= 1
            events = parse_sse(client.post("/api/ask", json={**ASK, "stream": True}, headers=w.member).text)
            assert events[-1][0] == "error" and events[-1][1]["detail"] == BUSY
            assert events[-1][1]["retry_after"] >= 1
            chat = {"model": "tiny-glm", "messages": [{"role": "user", "content": "hello"}]}
            for path, body in (
                ("/v1/chat/completions", chat),
                ("/v1/completions", {"model": "tiny-glm", "prompt": "hello"}),
            ):
                r = client.post(path, json=body, headers=w.member)
                assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded", r.text
                assert int(r.headers["Retry-After"]) >= 1
    finally:
        monkeypatch.undo()
        restore_settings()
