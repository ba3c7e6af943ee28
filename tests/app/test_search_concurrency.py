"""Many concurrent searches against a real server: each request hands its database connection back
before retrieval, so the pool (5 + 10 connections) never deadlocks when more requests than connections
are in flight (before the fix, 32 concurrent searches timed out with 500s after 30 s)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.app.ask_support import LiveServer, ask_env, build_world
from tests.app.support import restore_settings


def test_thirty_two_concurrent_searches_all_answer(tmp_path, monkeypatch):
    ask_env(monkeypatch, tmp_path)
    server = LiveServer()
    try:
        with httpx.Client(base_url=server.base, timeout=120) as http:
            world = build_world(http)

            def one(i: int) -> tuple[int, list[str]]:
                r = http.post(
                    "/api/search", json={"query": f"paid leave days {i}", "k": 3}, headers=world.member
                )
                return r.status_code, [h["document_title"] for h in r.json().get("hits", [])]

            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(one, range(32)))
    finally:
        server.stop()
        monkeypatch.undo()
        restore_settings()
    assert [code for code, _ in results] == [200] * 32
    # Every answer found the member's document, and none leaked the other group's.
    assert all(titles and set(titles) == {"Vacation policy"} for _, titles in results)
