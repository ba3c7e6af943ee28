"""Questions in a conversation without a model: what of the earlier questions a follow-up is searched and
answered with, and that a new topic is searched as asked."""

from __future__ import annotations

import pytest

from app.answer import NOTHING_FOUND
from tests.app.ask_support import ask_client, build_world

MIME = b"""# Shared MIME-info database

## Glob patterns

The globs2 file contains the MIME type glob patterns, one per line, each with its weight and type.

## Magic rules

The magic file contains the MIME type magic rules that match a file by its contents, not by its name.

## Aliases

The aliases file lists the MIME type aliases, one alias and its canonical type per line.
"""
SSH = b"""# ssh manual

## Options

The -p option of ssh sets the port to connect to on the remote host. By default ssh connects to port 22.
"""


@pytest.fixture
def client(tmp_path, monkeypatch):
    # one passage per question: in a large collection, a long document's many passages crowd another's out of the
    # eight (all eight were the MIME specification's)
    with ask_client(monkeypatch, tmp_path, AUTOGLM_ASK_TOP_K="1") as c:
        yield c


def _upload(client, w, files) -> None:
    from ingest.pipeline import process_document

    r = client.post(f"/api/collections/{w.handbook}/documents", files=files, headers=w.admin)
    assert r.status_code == 202, r.text
    for d in r.json()["documents"]:
        assert process_document(d["id"]) == "ready"


def _ask(client, w, question: str, conv: int | None = None) -> dict:
    r = client.post("/api/ask", json={"question": question, "conversation_id": conv}, headers=w.member)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_new_topic_in_a_conversation_is_searched_as_asked_and_a_follow_up_with_the_earlier_words(client):
    w = build_world(client)
    _upload(client, w, [("files", ("mime.md", MIME)), ("files", ("ssh.md", SSH))])
    first = _ask(client, w, "Which file contains the MIME type glob patterns?")
    assert "“The globs2 file contains the MIME type glob patterns" in first["answer"]
    conv = first["conversation_id"]
    # searched with "file contains MIME type glob patterns" too, the passage was the MIME database's and the
    # answer that nothing answers it; in a new conversation it found the ssh manual
    ssh = _ask(client, w, "What does the -p option of ssh do?", conv)
    assert ssh["conversation_id"] == conv
    assert "ssh manual" in {s["title"] for s in ssh["sources"]}
    assert "“The -p option of ssh sets the port to connect to on the remote host.”" in ssh["answer"]
    # a question that refers back is still searched with the earlier question's words
    port = _ask(client, w, "Which port does it connect to by default?", conv)
    assert [s["title"] for s in port["sources"] if s["cited"]] == ["ssh manual"]
    assert "By default ssh connects to port 22." in port["answer"]
    assert port["answer"] != NOTHING_FOUND


def test_a_follow_up_is_answered_from_the_passage_its_search_found(tmp_path, monkeypatch):
    with ask_client(monkeypatch, tmp_path) as client:
        w = build_world(client)
        first = _ask(client, w, "How many days of paid leave do employees get?")
        conv = first["conversation_id"]
        assert "“Employees receive twenty-eight days of paid leave per year.”" in first["answer"]
        # retrieval found the carry-over passage, but the answerer read "And how many of them carry over?" alone:
        # not an amount question ("And ..."), "many" a rare word no sentence holds, "carry over" half of its terms
        # -> "no source passage matches"; "How many days carry over?" was answered
        more = _ask(client, w, "And how many of them carry over?", conv)
        assert "“Unused leave of up to five days carries over into the next calendar year.”" in more["answer"]
        # what the earlier question lends only helps a sentence that answers this one: one holding only the earlier
        # words ("days of paid leave") answers nothing of a follow-up on what no document holds
        for off_topic in ("And what about parental leave?", "And how many of them can I sell back?"):
            r = _ask(client, w, off_topic, conv)
            assert (r["answer"], r["cited"]) == (NOTHING_FOUND, []), off_topic
