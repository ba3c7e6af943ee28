"""Citations of an answer the engine writes, through the API: a real GLM-4 checkpoint (tiny, its weights set so
that greedy decoding writes a fixed Chinese answer with the markers GLM-4 uses: 【1】 split over three tokens,
［来源：2］, a year [2024], a list (3), code `days[3]`) loaded by the API process. The sources it cites are
`cited` in /api/ask (streamed and not), in the stored conversation and in the /v1 endpoints' fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.pipeline import process_document
from tests.app.ask_support import ask_client, build_world, parse_sse
from tests.inference.conftest import build_scripted_checkpoint

# the answer, one token a piece; the marker 【1】 comes as three tokens, so three `token` events
PIECES = ["员工每年有二十八天带薪假", "【", "1", "】", "，未用完的最多五天可结转", "［来源：2］", "。2024 年的规定",
          "[2024]", "见清单 (3) 与代码 ", "`days[3]`", "。"]  # fmt: skip
ANSWER = "".join(PIECES)
EXTRA = b"""# Leave requests

## Portal

Requests for leave go through the HR portal and are approved by the team lead.

## Sick leave

Sick leave needs a doctor's note from the third day of absence.
"""


@pytest.fixture(scope="module")
def scripted_checkpoint(tmp_path_factory) -> Path:
    return build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "scripted-glm", PIECES)


@pytest.fixture
def client(tmp_path, monkeypatch, scripted_checkpoint):
    with ask_client(monkeypatch, tmp_path, AUTOGLM_MODEL_PATH=str(scripted_checkpoint),
                    AUTOGLM_ANSWER_MAX_TOKENS="32", AUTOGLM_KV_CACHE_MEMORY_MB="32") as c:  # fmt: skip
        yield c


def _v1_chunks(body: str) -> list[dict]:
    lines = [x.removeprefix("data: ") for x in body.split("\n\n") if x.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines[-1]
    return [json.loads(x) for x in lines[:-1]]


def test_glm4_citation_forms_are_cited_through_the_api(client):
    w = build_world(client)
    r = client.post(f"/api/collections/{w.handbook}/documents", files=[("files", ("leave.md", EXTRA))],
                    headers=w.admin)  # fmt: skip
    assert r.status_code == 202, r.text
    assert all(process_document(d["id"]) == "ready" for d in r.json()["documents"])
    # four passages, numbered in document order: [1] [2] the vacation policy's, [3] [4] the leave requests'
    expect_cited, expect_flags = [1, 2], [True, True, False, False]

    question = {"question": "员工每年有多少天带薪假？", "stream": True}
    events = parse_sse(client.post("/api/ask", json=question, headers=w.member).text)
    names = [e for e, _ in events]
    assert names == ["sources", *["token"] * len(PIECES), "done"], names
    tokens = [d["text"] for e, d in events if e == "token"]
    assert tokens == PIECES  # 【1】 arrived as "【", "1", "】": the marker split across three deltas
    sources, done = events[0][1]["sources"], events[-1][1]
    assert [(s["n"], s["heading_path"][-1]) for s in sources] == [
        (1, "Vacation policy"), (2, "Carry-over"), (3, "Portal"), (4, "Sick leave")
    ]  # fmt: skip
    assert done["generator"] == "scripted-glm" and done["extractive"] is False
    # 【1】 and ［来源：2］ cite; the year [2024], the list item (3) and the code `days[3]` do not
    assert done["cited"] == expect_cited
    assert [s["cited"] for s in done["sources"]] == expect_flags
    stored = client.get(f"/api/conversations/{done['conversation_id']}", headers=w.member).json()["messages"][
        1
    ]
    assert stored["content"] == ANSWER and stored["meta"]["cited"] == expect_cited
    assert [s["cited"] for s in stored["sources"]] == expect_flags

    got = client.post("/api/ask", json={**question, "stream": False}, headers=w.member).json()
    assert got["answer"] == ANSWER and got["cited"] == expect_cited
    assert [s["cited"] for s in got["sources"]] == expect_flags

    # the OpenAI-compatible endpoints: `cited` beside the choices, and on the chunk that finishes the stream
    chat = {"model": "rag:handbook", "messages": [{"role": "user", "content": question["question"]}]}
    r = client.post("/v1/chat/completions", json=chat, headers=w.member).json()
    assert r["choices"][0]["message"]["content"] == ANSWER and r["cited"] == expect_cited
    assert [s["cited"] for s in r["sources"]] == expect_flags
    r = client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=w.member)
    chunks = _v1_chunks(r.text)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ANSWER
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["cited"] == expect_cited
    completion = {"model": "rag:handbook", "prompt": question["question"]}
    r = client.post("/v1/completions", json=completion, headers=w.member).json()
    assert r["choices"][0]["text"] == ANSWER and r["cited"] == expect_cited
    r = client.post("/v1/completions", json={**completion, "stream": True}, headers=w.member)
    assert [c["cited"] for c in _v1_chunks(r.text) if "cited" in c] == [expect_cited]
