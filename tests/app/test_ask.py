"""POST /api/ask without a model (extractive answers), SSE events, conversations, feedback, source
preview, and the ACL on all of them (a member never sees a forbidden collection's titles or counts)."""

from __future__ import annotations

import pytest

from app.answer import NO_GENERATOR, NOTHING_FOUND, cut_extractive
from app.deps import EMPTY_COLLECTIONS
from app.search import _embedder
from app.settings import settings
from tests.app.ask_support import ask_client, build_world, parse_sse


@pytest.fixture
def client(tmp_path, monkeypatch):
    with ask_client(monkeypatch, tmp_path) as c:
        yield c


def test_extractive_answer_cites_and_highlights(client):
    w = build_world(client)
    r = client.post(
        "/api/ask", json={"question": "How many days of paid leave do employees get?"}, headers=w.member
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["extractive"] is True and body["generator"] is None
    assert body["answer"].startswith(NO_GENERATOR)
    assert "“Employees receive twenty-eight days of paid leave per year.” [1]" in body["answer"]
    assert body["degraded"] is False and body["timed_out"] == []
    # Only the member's collection: the board document never appears.
    assert {s["title"] for s in body["sources"]} == {"Vacation policy"}
    assert "Falcon" not in r.text and "Merger" not in r.text
    first = body["sources"][0]
    assert first["n"] == 1 and first["cited"] is True and 1 in body["cited"]
    (a, b), *_ = first["highlight"]
    assert first["text"][a:b] == "Employees receive twenty-eight days of paid leave per year."
    assert set(body["timings"]["retrieval_ms"]) == {"embed", "dense", "bm25", "rerank", "total"}
    assert body["timings"]["retrieval_ms"]["total"] > 0
    # no prompt was read; the answer's tokens are the embedding model's (no GLM tokenizer without a model)
    tokens = len(_embedder().tokenizer(body["answer"], add_special_tokens=False)["input_ids"])
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": tokens, "prefix_hit_tokens": 0}
    assert tokens > 20

    # A question no document answers: no quote, no citation, and the answer says so.
    r = client.post("/api/ask", json={"question": "What is the capital of France?"}, headers=w.member)
    assert (r.json()["answer"], r.json()["cited"]) == (NOTHING_FOUND, [])
    # Nor does one answered only in a collection the member may not read (the handbook's sentences share no
    # word of it: they were quoted, as near it as the embedding puts them).
    r = client.post(
        "/api/ask", json={"question": "Which acquisition did the board approve?"}, headers=w.member
    )
    assert (r.json()["answer"], r.json()["cited"]) == (NOTHING_FOUND, [])

    # Nor one that the handbook's lines share only common words with ("leave", "policy": every chunk of the
    # collection holds them): parental leave is what it asks about, and no chunk holds "parental" (its IDF,
    # from the BM25 sidecars, weighs most). "Requests go through the HR portal." was quoted.
    r = client.post("/api/ask", json={"question": "What is the parental leave policy?"}, headers=w.member)
    assert (r.json()["answer"], r.json()["cited"]) == (NOTHING_FOUND, [])

    # Forbidden and absent collections get the same answer.
    for cid in (w.board, 9999):
        r = client.post("/api/ask", json={"question": "merger", "collection_ids": [cid]}, headers=w.member)
        assert (r.status_code, r.json()) == (404, {"detail": "Collection not found"})
    # The admin reads both.
    r = client.post(
        "/api/ask", json={"question": "Which acquisition did the board approve?"}, headers=w.admin
    )
    assert "Northwind" in r.json()["answer"]


@pytest.mark.parametrize("blank", ["   ", "\n\n", "\t \u3000"])
def test_a_blank_question_is_refused_like_an_empty_one(client, blank):
    # "   " passed min_length=1 and the conversation's title (its first line) raised IndexError: a 500
    w = build_world(client)
    for stream in (False, True):
        r = client.post("/api/ask", json={"question": blank, "stream": stream}, headers=w.member)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["msg"] == "String should have at least 1 character"
    r = client.post("/api/search", json={"query": blank}, headers=w.member)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "query"]
    # a question after blank lines is the question
    r = client.post("/api/ask", json={"question": "\n\nHow many days of paid leave?"}, headers=w.member)
    assert r.status_code == 200 and "twenty-eight days" in r.json()["answer"]


def test_an_empty_collection_list_is_refused_and_a_missing_one_means_all(client):
    # "collection_ids": [] searched nothing and answered "nothing found" with a 200: a client that built the
    # list from an empty selection could not tell it from a question no document answers.
    w = build_world(client)
    refused = (422, {"detail": EMPTY_COLLECTIONS})
    for stream in (False, True):
        body = {"question": "How many days of paid leave?", "collection_ids": [], "stream": stream}
        r = client.post("/api/ask", json=body, headers=w.member)
        assert (r.status_code, r.json()) == refused
    r = client.post("/api/search", json={"query": "paid leave", "collection_ids": []}, headers=w.member)
    assert (r.status_code, r.json()) == refused
    assert client.get("/api/conversations", headers=w.member).json() == []  # no turn was stored
    # Left out: every collection the caller may read.
    r = client.post("/api/ask", json={"question": "How many days of paid leave?"}, headers=w.member)
    assert r.status_code == 200 and "twenty-eight days" in r.json()["answer"]
    r = client.post("/api/search", json={"query": "paid leave"}, headers=w.member)
    assert r.status_code == 200 and r.json()["hits"][0]["document_title"] == "Vacation policy"


def test_stream_events_conversation_and_feedback(client):
    w = build_world(client)
    r = client.post(
        "/api/ask", json={"question": "How many unused days carry over?", "stream": True}, headers=w.member
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    names = [e for e, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and set(names[1:-1]) == {"token"}
    sources, done = events[0][1], events[-1][1]
    streamed = "".join(d["text"] for e, d in events if e == "token")
    assert "Unused leave of up to five days carries over into the next calendar year." in streamed
    assert "answer" not in done
    # done repeats the sources with their final flags: which were cited, and where the quotes sit.
    quoted = [s for s in done["sources"] if s["cited"]]
    assert quoted and all(s["highlight"] for s in quoted)
    a, b = quoted[0]["highlight"][0]
    assert quoted[0]["text"][a:b] in streamed
    assert done["conversation_id"] == sources["conversation_id"]
    assert done["message_id"] == sources["message_id"] and done["extractive"] is True
    conv, msg = sources["conversation_id"], sources["message_id"]

    # A follow-up in the same conversation; the history lists it once, newest first.
    r = client.post("/api/ask", json={"question": "And how many days per year?", "conversation_id": conv},
                    headers=w.member)  # fmt: skip
    assert r.json()["conversation_id"] == conv
    assert "twenty-eight days" in r.json()["answer"]
    listed = client.get("/api/conversations", headers=w.member).json()
    assert [c["id"] for c in listed] == [conv] and listed[0]["title"] == "How many unused days carry over?"
    full = client.get(f"/api/conversations/{conv}", headers=w.member).json()
    assert [m["role"] for m in full["messages"]] == ["user", "assistant", "user", "assistant"]
    assert full["messages"][1]["content"] == streamed and full["messages"][1]["sources"][0]["cited"] is True

    # Feedback: stored, replaced, shown; other users cannot see or rate the conversation.
    for rating in ("down", "up"):
        r = client.post(f"/api/messages/{msg}/feedback", json={"rating": rating, "comment": "clear"},
                        headers=w.member)  # fmt: skip
        assert r.status_code == 200, r.text
    full = client.get(f"/api/conversations/{conv}", headers=w.member).json()
    assert full["messages"][1]["feedback"] == {"rating": "up", "comment": "clear"}
    assert (
        client.post(f"/api/messages/{msg}/feedback", json={"rating": "meh"}, headers=w.member).status_code
        == 422
    )
    r = client.post(f"/api/messages/{msg}/feedback", json={"rating": "up"}, headers=w.admin)
    assert (r.status_code, r.json()) == (404, {"detail": "Message not found"})
    r = client.get(f"/api/conversations/{conv}", headers=w.admin)
    assert (r.status_code, r.json()) == (404, {"detail": "Conversation not found"})
    r = client.post(
        "/api/ask", json={"question": "x", "conversation_id": conv, "stream": True}, headers=w.admin
    )
    assert (r.status_code, r.json()) == (404, {"detail": "Conversation not found"})
    assert client.get("/api/conversations", headers=w.admin).json() == []


def test_preview_window_and_acl(client):
    w = build_world(client)
    hits = client.post("/api/search", json={"query": "leave", "k": 20}, headers=w.admin).json()["hits"]
    own = next(h for h in hits if h["collection_id"] == w.handbook)
    other = next(h for h in hits if h["collection_id"] == w.board)
    r = client.get(f"/api/chunks/{own['chunk_id']}/preview", headers=w.member)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["text"][p["highlight_start"] : p["highlight_end"]] == own["text"]
    assert p["title"] == "Vacation policy" and p["document_id"] == own["document_id"]
    for chunk_id in (other["chunk_id"], 10**6):
        r = client.get(f"/api/chunks/{chunk_id}/preview", headers=w.member)
        assert (r.status_code, r.json()) == (404, {"detail": "Chunk not found"})
    assert client.get(f"/api/chunks/{other['chunk_id']}/preview", headers=w.admin).status_code == 200


def test_slides_are_cited_as_slides_and_old_passages_as_pages(client):
    # A deck's passages were cited "p. 2" in the prompt, the sources list and the preview. The kind of number
    # now comes with every source (`page_kind`, added beside `page`): "slide" for a presentation, "page" for a
    # PDF, and null for a passage indexed before it was kept, which is still cited as a page.
    from sqlmodel import update

    from app.answer import Source, _passage
    from app.db import session_scope
    from app.models import Chunk
    from ingest.pipeline import process_document
    from retrieval.context import passage_header
    from tests.app.support import make_pdf
    from tests.ingest.parser_fixtures import make_pptx

    w = build_world(client)
    files = [("files", ("roadmap.pptx", make_pptx())),
             ("files", ("audit.pdf", make_pdf(["Audit 2025", "The auditors signed off the accounts in May."])))]  # fmt: skip
    r = client.post(f"/api/collections/{w.handbook}/documents", files=files, headers=w.admin)
    assert r.status_code == 202, r.text
    docs = {d["filename"]: d["id"] for d in r.json()["documents"]}
    for doc_id in docs.values():
        assert process_document(doc_id) == "ready"

    def source(question: str, document_id: int) -> dict:
        r = client.post("/api/ask", json={"question": question}, headers=w.member)
        assert r.status_code == 200, r.text
        return next(s for s in r.json()["sources"] if s["document_id"] == document_id)

    slide = source("Who approved the budget?", docs["roadmap.pptx"])
    assert (slide["page"], slide["page_kind"]) == (2, "slide")
    assert passage_header(1, _passage(Source(**slide))) == "[1] Roadmap 2025 › Budget (slide 2)"
    r = client.get(f"/api/chunks/{slide['chunk_id']}/preview", headers=w.member)
    assert (r.json()["page"], r.json()["page_kind"]) == (2, "slide")
    r = client.post("/api/search", json={"query": "budget approved", "k": 20}, headers=w.member)
    deck = {(h["page"], h["page_kind"]) for h in r.json()["hits"] if h["document_id"] == docs["roadmap.pptx"]}
    assert (2, "slide") in deck and {kind for _, kind in deck} == {"slide"}
    page = source("When did the auditors sign off the accounts?", docs["audit.pdf"])
    assert (page["page"], page["page_kind"]) == (2, "page")
    assert passage_header(1, _passage(Source(**page))).endswith("(p. 2)")

    # a deck indexed before the kind was kept: its rows have none, and its passages read as pages as they did
    with session_scope() as s:
        s.exec(update(Chunk).where(Chunk.document_id == docs["roadmap.pptx"]).values(page_kind=None))
        s.commit()
    old = source("Who approved the budget?", docs["roadmap.pptx"])
    assert (old["page"], old["page_kind"]) == (2, None)
    assert passage_header(1, _passage(Source(**old))) == "[1] Roadmap 2025 › Budget (p. 2)"


def test_retrieval_deadline_degrades(client, monkeypatch):
    w = build_world(client)
    monkeypatch.setattr(settings, "retrieval_deadline_ms", 1)
    r = client.post("/api/ask", json={"question": "paid leave days"}, headers=w.member)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is True and body["timed_out"], body
    assert set(body["timed_out"]) <= {"embed", "dense", "bm25", "rerank"}
    metrics = client.get("/metrics").text
    assert 'autoglm_retrieval_timeouts_total{stage="' in metrics
    assert (
        'autoglm_http_request_duration_seconds_count{method="POST",route="/api/ask",status="200"}' in metrics
    )


def test_search_reports_deadline_overrun(client, monkeypatch):
    """POST /api/search says when a stage was abandoned, and which, instead of silently returning less."""
    w = build_world(client)
    r = client.post("/api/search", json={"query": "paid leave days"}, headers=w.member)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] is False and r.json()["timings_ms"]["total"] > 0
    monkeypatch.setattr(settings, "retrieval_deadline_ms", 1)
    body = client.post("/api/search", json={"query": "paid leave days"}, headers=w.member).json()
    assert body["degraded"] is True
    assert body["timed_out"] and set(body["timed_out"]) <= {"embed", "dense", "bm25", "rerank"}


def test_an_extractive_cut_keeps_a_prefix_of_at_most_max_tokens_tokens():
    # cut where usage counts: the embedding model's word pieces, on cased, Chinese and split words alike
    tok = _embedder().tokenizer
    for text in ("Unaffable pkgProblemResolver tarballs, “quoted” [1]", "员工的假期是二十八天。 [2]"):
        n = len(tok(text, add_special_tokens=False)["input_ids"])
        assert cut_extractive(text, n) == (text, n, "stop") and cut_extractive(text) == (text, n, "stop")
        for k in range(1, n):
            cut, tokens, finish = cut_extractive(text, k)
            assert text.startswith(cut) and finish == "length", (text, k)
            assert tokens == len(tok(cut, add_special_tokens=False)["input_ids"]) <= k
    assert cut_extractive("Hello   world\n\nagain", 2) == ("Hello   world", 2, "length")
    assert cut_extractive("a [1] b [2]", 10, ["[2]", "b"]) == ("a [1] ", 4, "stop")  # a [ 1 ]
