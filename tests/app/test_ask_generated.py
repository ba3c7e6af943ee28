"""POST /api/ask with a real (tiny, random) GLM-4 checkpoint loaded by the API process: tokens stream
through SSE from the engine, usage and timings are the engine's, and a repeated question reuses the
cached prefix (system prompt + sources come first in the prompt)."""

from __future__ import annotations

import pytest

from app.answer import parse_citations
from tests.app.ask_support import ask_client, build_world, glm_checkpoint, parse_sse  # noqa: F401

MAX_TOKENS = 12


@pytest.fixture
def client(tmp_path, monkeypatch, glm_checkpoint):  # noqa: F811
    with ask_client(monkeypatch, tmp_path, AUTOGLM_MODEL_PATH=str(glm_checkpoint),
                    AUTOGLM_ANSWER_MAX_TOKENS=str(MAX_TOKENS), AUTOGLM_KV_CACHE_MEMORY_MB="32",
                    AUTOGLM_BATCH_INVARIANT="1") as c:  # fmt: skip
        yield c


def _ttft_count(metrics: str) -> float:
    line = next(
        (x for x in metrics.splitlines() if x.startswith("autoglm_generation_ttft_seconds_count ")), None
    )
    return float(line.split()[1]) if line else 0.0


def test_generated_answer_streams_engine_tokens(client):
    from app.engine_service import service

    assert service.loaded and service.name == "tiny-glm" and service.engine.runner.batch_invariant
    ttft_before = _ttft_count(client.get("/metrics").text)  # the registry is per process, not per app
    assert client.get("/readyz").json()["checks"]["engine"] == {"ok": True, "model": "tiny-glm"}
    w = build_world(client)
    question = {"question": "How many days of paid leave do employees get?", "stream": True}
    events = parse_sse(client.post("/api/ask", json=question, headers=w.member).text)
    names = [e for e, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and names.count("token") >= 1, names
    sources, done = events[0][1], events[-1][1]
    assert [s["title"] for s in sources["sources"]] == ["Vacation policy"] * len(sources["sources"])
    text = "".join(d["text"] for e, d in events if e == "token")
    assert done["extractive"] is False and done["generator"] == "tiny-glm"
    usage = done["usage"]
    assert 1 <= usage["completion_tokens"] <= MAX_TOKENS and usage["prompt_tokens"] > 50
    assert done["timings"]["ttft_ms"] > 0 and done["timings"]["total_ms"] >= done["timings"]["ttft_ms"]
    assert done["cited"] == parse_citations(text, len(sources["sources"]))
    conv = client.get(f"/api/conversations/{done['conversation_id']}", headers=w.member).json()
    assert conv["messages"][1]["content"] == text and conv["messages"][1]["meta"]["usage"] == usage

    # The same question again (JSON this time): the system prompt and sources come from the prefix cache,
    # and (batch-invariant prefill) greedy decoding writes the same answer.
    again = client.post("/api/ask", json={**question, "stream": False}, headers=w.member).json()
    assert again["usage"]["prefix_hit_tokens"] >= usage["prompt_tokens"] // 2, again["usage"]
    assert again["answer"] == text and again["usage"]["prompt_tokens"] == usage["prompt_tokens"]

    metrics = client.get("/metrics").text
    assert 'autoglm_engine_queue_depth{state="waiting"} 0.0' in metrics
    assert _ttft_count(metrics) == ttft_before + 2  # both answers' first tokens observed
    assert "autoglm_engine_prefix_hit_rate" in metrics
