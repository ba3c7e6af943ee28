"""Admin management: group members decide what a member reads, user listing, collection deletion (rows,
index files and blobs), document re-indexing (failed: retried in place; ready: replaced when the new
copy is ready), and /v1 without a generator (extractive rag: answers)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.answer import NO_GENERATOR
from app.db import session_scope
from app.models import Chunk, Document, Role, User
from app.routes.conversations import WITHHELD
from ingest import storage
from ingest.pipeline import collection_dir, fail_document, process_document
from tests.app.ask_support import GUIDE, ask_client, build_world
from tests.app.support import make_user


@pytest.fixture
def client(tmp_path, monkeypatch):
    with ask_client(monkeypatch, tmp_path) as c:
        yield c


def test_group_members_users_and_collection_delete(client):
    w = build_world(client)
    outsider = make_user(Role.member, name="outsider")
    assert client.get("/api/collections", headers=outsider).json() == []
    users = {u["name"]: u for u in client.get("/api/users", headers=w.admin).json()}
    r = client.put(
        f"/api/groups/{w.group}/members", json={"user_ids": [users["outsider"]["id"]]}, headers=w.admin
    )
    assert r.json() == {"user_ids": [users["outsider"]["id"]]}
    assert [c["name"] for c in client.get("/api/collections", headers=outsider).json()] == ["handbook"]
    assert client.get("/api/collections", headers=w.member).json() == []  # replaced, not added
    r = client.put(f"/api/groups/{w.group}/members", json={"user_ids": [999]}, headers=w.admin)
    assert (r.status_code, r.json()) == (422, {"detail": "User 999 not found"})
    assert (
        client.put(f"/api/groups/{w.group}/members", json={"user_ids": []}, headers=outsider).status_code
        == 403
    )

    with session_scope() as s:
        (doc,) = s.exec(select(Document).where(Document.collection_id == w.board)).all()
    assert collection_dir(w.board).is_dir() and storage.blob_path(doc.sha256).is_file()
    assert client.delete(f"/api/collections/{w.board}", headers=outsider).status_code == 403
    assert client.delete(f"/api/collections/{w.board}", headers=w.admin).status_code == 204
    assert client.delete(f"/api/collections/{w.board}", headers=w.admin).json() == {
        "detail": "Collection not found"
    }
    assert not collection_dir(w.board).exists() and not storage.blob_path(doc.sha256).exists()
    with session_scope() as s:
        assert s.exec(select(Chunk).where(Chunk.document_id == doc.id)).all() == []
    r = client.post(
        "/api/ask", json={"question": "Which acquisition did the board approve?"}, headers=w.admin
    )
    assert "Northwind" not in r.text
    # Stored answers keep their sources only while the caller may read them.
    r = client.post("/api/ask", json={"question": "How many days of paid leave?"}, headers=outsider)
    conv = r.json()["conversation_id"]
    assert client.get(f"/api/conversations/{conv}", headers=outsider).json()["messages"][1]["sources"]
    assert (
        client.put(f"/api/groups/{w.group}/members", json={"user_ids": []}, headers=w.admin).status_code
        == 200
    )
    assert client.get(f"/api/conversations/{conv}", headers=outsider).json()["messages"][1]["sources"] == []


def test_deleting_a_user_ends_their_keys_and_sessions(client):
    # An employee who left kept working keys and browser sessions: no route removed a user (not even an
    # admin), and an admin can revoke only their own keys
    w = build_world(client)
    r = client.post("/api/users", json={"name": "leaver", "role": "admin", "password": "leaver-pass-1"},
                    headers=w.admin)  # fmt: skip
    leaver, key = r.json()["id"], {"Authorization": f"Bearer {r.json()['api_key']}"}
    signed_in = TestClient(client.app)
    r = signed_in.post("/api/auth/login", json={"username": "leaver", "password": "leaver-pass-1"})
    assert r.status_code == 200, r.text
    r = client.post("/api/ask", json={"question": "How many days of paid leave?"}, headers=key)
    assert r.status_code == 200, r.text
    assert client.delete(f"/api/users/{leaver}", headers=w.member).status_code == 403
    assert client.delete(f"/api/users/{leaver}", headers=w.admin).status_code == 204
    assert client.get("/api/me", headers=key).status_code == 401
    assert signed_in.get("/api/me").status_code == 401
    assert "leaver" not in [u["name"] for u in client.get("/api/users", headers=w.admin).json()]
    r = client.delete(f"/api/users/{leaver}", headers=w.admin)
    assert (r.status_code, r.json()) == (404, {"detail": "User not found"})
    me = client.get("/api/me", headers=w.admin).json()["id"]
    r = client.delete(f"/api/users/{me}", headers=w.admin)  # the last way back in would go with it
    assert (r.status_code, r.json()) == (409, {"detail": "You cannot delete yourself"})
    with session_scope() as s:  # their uploads stay, no longer attributed
        assert s.exec(select(Document).where(Document.filename == "vacation.md")).one().status == "ready"


def test_an_admin_sets_a_users_password_and_their_old_sessions_end(client):
    # A user who forgot their password (or was created with none, by REST) could never sign in again: no route
    # set a password after creation
    w = build_world(client)
    r = client.post("/api/users", json={"name": "erin"}, headers=w.admin)
    erin = r.json()["id"]
    login = {"username": "erin", "password": "erin-new-pass"}
    assert client.post("/api/auth/login", json=login).status_code == 401
    r = client.put(f"/api/users/{erin}/password", json={"password": "erin-new-pass"}, headers=w.admin)
    assert r.status_code == 204, r.text
    old = TestClient(client.app)
    assert old.post("/api/auth/login", json=login).status_code == 200
    r = client.put(f"/api/users/{erin}/password", json={"password": "erin-newer-pass"}, headers=w.admin)
    assert r.status_code == 204
    assert old.get("/api/me").status_code == 401  # a session opened with the old password ends
    assert client.post("/api/auth/login", json=login).status_code == 401
    assert client.post("/api/auth/login", json={**login, "password": "erin-newer-pass"}).status_code == 200
    assert {u["name"]: u["has_password"] for u in client.get("/api/users", headers=w.admin).json()}["erin"]
    r = client.put(f"/api/users/{erin}/password", json={"password": "short"}, headers=w.admin)
    assert r.status_code == 422
    r = client.put(f"/api/users/{erin}/password", json={"password": "x" * 12}, headers=w.member)
    assert r.status_code == 403
    r = client.put("/api/users/424242/password", json={"password": "x" * 12}, headers=w.admin)
    assert (r.status_code, r.json()) == (404, {"detail": "User not found"})


def test_users_change_their_own_password(client):
    # A password an admin chose (and knows) could never be changed by its user: no route for it
    w = build_world(client)
    client.post("/api/users", json={"name": "fay", "password": "chosen-by-admin"}, headers=w.admin)
    mine, other = TestClient(client.app), TestClient(client.app)
    for c in (mine, other):
        r = c.post("/api/auth/login", json={"username": "fay", "password": "chosen-by-admin"})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    r = mine.put("/api/me/password", json={"current_password": "wrong-guess", "password": "fay-own-pass"})
    assert (r.status_code, r.json()) == (400, {"detail": "Current password is incorrect"})
    r = mine.put("/api/me/password", json={"current_password": "chosen-by-admin", "password": "short"})
    assert r.status_code == 422
    r = mine.put("/api/me/password", json={"current_password": "chosen-by-admin", "password": "fay-own-pass"})
    assert r.status_code == 204, r.text
    assert mine.get("/api/me").json()["name"] == "fay"  # this session goes on
    assert other.get("/api/me").status_code == 401  # any other ends
    login = {"username": "fay", "password": "chosen-by-admin"}
    assert client.post("/api/auth/login", json=login).status_code == 401
    assert client.post("/api/auth/login", json={**login, "password": "fay-own-pass"}).status_code == 200
    # with an API key, and no password yet: the key's holder sets one
    r = client.put("/api/me/password", json={"password": "member-pass-1"}, headers=w.member)
    assert r.status_code == 204, r.text
    r = client.put("/api/me/password", json={"password": "member-pass-2"}, headers=w.member)
    assert (r.status_code, r.json()) == (400, {"detail": "Current password is incorrect"})


def test_deleting_a_group_takes_away_what_it_granted(client):
    # A group made by mistake ("finanse") stayed in every picker for good: no route removed a group
    w = build_world(client)
    assert [c["name"] for c in client.get("/api/collections", headers=w.member).json()] == ["handbook"]
    assert client.delete(f"/api/groups/{w.group}", headers=w.member).status_code == 403
    assert client.delete(f"/api/groups/{w.group}", headers=w.admin).status_code == 204
    assert client.get("/api/groups", headers=w.admin).json() == []
    assert client.get("/api/collections", headers=w.member).json() == []  # its access went with it
    hits = client.post("/api/search", json={"query": "paid leave"}, headers=w.member).json()["hits"]
    assert hits == []
    (handbook,) = [
        c for c in client.get("/api/collections", headers=w.admin).json() if c["name"] == "handbook"
    ]
    assert handbook["group_ids"] == [] and handbook["document_count"] == 1  # the collection stays
    r = client.delete(f"/api/groups/{w.group}", headers=w.admin)
    assert (r.status_code, r.json()) == (404, {"detail": "Group not found"})


def test_an_answer_from_documents_no_longer_readable_is_withheld(client):
    # Removed from the group, a member still read the quoted passages in their old answers (only the sources
    # were hidden), and follow-up questions carried them on as history
    from app.routes.ask import _open_turn

    w = build_world(client)
    r = client.post("/api/ask", json={"question": "How many days of paid leave?"}, headers=w.member)
    conv = r.json()["conversation_id"]
    assert "twenty-eight days" in r.json()["answer"]
    r = client.put(f"/api/collections/{w.handbook}/groups", json={"group_ids": []}, headers=w.admin)
    assert r.status_code == 200
    turns = client.get(f"/api/conversations/{conv}", headers=w.member).json()["messages"]
    assert turns[0]["content"] == "How many days of paid leave?"  # the member's own words stay
    assert turns[1]["content"] == WITHHELD and turns[1]["sources"] == []
    with session_scope() as s:
        member = s.exec(select(User).where(User.role == "member")).one()
    _, _, history = _open_turn(member, "And carry-over?", conv)
    assert "twenty-eight" not in str(history)
    # A document replaced or deleted since takes nothing away: the answer was read when it was readable
    client.put(f"/api/collections/{w.handbook}/groups", json={"group_ids": [w.group]}, headers=w.admin)
    r = client.post("/api/ask", json={"question": "How many days of paid leave?"}, headers=w.member)
    conv = r.json()["conversation_id"]
    (doc,) = {src["document_id"] for src in r.json()["sources"]}
    assert client.delete(f"/api/documents/{doc}", headers=w.admin).status_code == 204
    assert "twenty-eight days" in client.get(f"/api/conversations/{conv}", headers=w.member).text


def test_reindex_failed_in_place_and_ready_by_replacement(client):
    w = build_world(client)
    r = client.post(f"/api/collections/{w.handbook}/documents", files=[("files", ("notes.md", b"# Notes\n\nBadges are blue."))],
                    headers=w.admin)  # fmt: skip
    failed = r.json()["documents"][0]["id"]
    r = client.post(f"/api/documents/{failed}/reindex", headers=w.admin)
    assert (r.status_code, r.json()) == (409, {"detail": "Document is already being processed"})
    fail_document(failed, "The parser crashed.")
    got = client.get(f"/api/documents/{failed}", headers=w.admin).json()
    assert (got["status"], got["error"], got["retryable"]) == ("failed", "The parser crashed.", True)
    r = client.post(f"/api/documents/{failed}/reindex", headers=w.admin)
    assert r.status_code == 202, r.text
    assert (r.json()["id"], r.json()["status"], r.json()["error"], r.json()["retryable"]) == (
        failed, "queued", None, None,
    )  # fmt: skip
    assert process_document(failed) == "ready"

    with session_scope() as s:
        (old,) = s.exec(select(Document.id).where(Document.filename == "vacation.md")).all()
    r = client.post(f"/api/documents/{old}/reindex", headers=w.admin)
    new = r.json()["id"]
    assert r.status_code == 202 and new != old and r.json()["status"] == "queued"
    assert client.get(f"/api/documents/{old}", headers=w.member).json()["status"] == "ready"  # still served
    assert process_document(new) == "ready"
    assert client.get(f"/api/documents/{old}", headers=w.member).status_code == 404
    hits = client.post("/api/search", json={"query": "paid leave"}, headers=w.member).json()["hits"]
    assert hits and {h["document_id"] for h in hits} <= {new, failed}
    assert client.post(f"/api/documents/{new}/reindex", headers=w.member).status_code == 403
    assert client.post("/api/documents/424242/reindex", headers=w.admin).status_code == 404


def test_a_file_that_cannot_be_read_fails_for_good_and_is_replaced_by_uploading_it_again(client):
    # A cut-off PDF fails again however often it is re-indexed: the failure says so (retryable false, in the
    # listing and the document), and the complete file uploaded under the same name replaces it once ready.
    from tests.ingest import parser_fixtures as F

    w = build_world(client)
    pdf = F.make_pdf(["Parking permits are renewed every March.", "The garage closes at midnight."])

    def upload(data: bytes):
        files = [("files", ("parking.pdf", data))]
        return client.post(f"/api/collections/{w.handbook}/documents", files=files, headers=w.admin)

    cut = upload(pdf[: len(pdf) // 2]).json()["documents"][0]["id"]
    assert process_document(cut) == "failed"
    got = client.get(f"/api/documents/{cut}", headers=w.member).json()
    assert got["retryable"] is False
    assert got["error"].startswith("The PDF could not be read: the file ends early")
    docs = client.get(f"/api/collections/{w.handbook}/documents", headers=w.admin).json()
    listed = {d["id"]: d for d in docs}
    assert listed[cut]["retryable"] is False
    assert all(d["retryable"] is None for i, d in listed.items() if i != cut)  # ready ones have no answer

    r = upload(pdf)
    new = r.json()["documents"][0]
    assert (r.status_code, new["replaces_id"], new["retryable"]) == (202, cut, None)
    assert process_document(new["id"]) == "ready"
    assert client.get(f"/api/documents/{cut}", headers=w.admin).status_code == 404  # replaced
    r = client.post("/api/search", json={"query": "parking permits renewed"}, headers=w.admin)
    assert r.json()["hits"][0]["document_id"] == new["id"]


def test_an_earlier_answer_s_citations_still_open_after_a_reindex(client):
    # QA: after Re-index (a new copy replaces the document) every earlier answer citing it lost its sources: the
    # [n] markers turned to plain text in the history, though the passages were the same
    w = build_world(client)
    r = client.post("/api/ask", json={"question": "How many days of paid leave?"}, headers=w.member)
    conv, before = r.json()["conversation_id"], r.json()["sources"]
    with session_scope() as s:
        (old,) = s.exec(select(Document.id).where(Document.filename == "vacation.md")).all()
    cited = [src for src in before if src["document_id"] == old]
    assert cited
    new = client.post(f"/api/documents/{old}/reindex", headers=w.admin).json()["id"]
    assert process_document(new) == "ready"
    (answer,) = [m for m in client.get(f"/api/conversations/{conv}", headers=w.member).json()["messages"]
                 if m["role"] == "assistant"]  # fmt: skip
    moved = [src for src in answer["sources"] if src["document_id"] == new]
    assert [(src["n"], src["text"]) for src in moved] == [(src["n"], src["text"]) for src in cited]
    for src in moved:
        preview = client.get(f"/api/chunks/{src['chunk_id']}/preview", headers=w.member)
        assert preview.status_code == 200 and src["text"] in preview.json()["text"]
    # a new version whose passage changed: that source is gone, as for a deleted document
    changed = b"# Vacation\n\nEmployees get thirty days of paid leave per calendar year."
    r = client.post(f"/api/collections/{w.handbook}/documents", files=[("files", ("vacation.md", changed))],
                    headers=w.admin)  # fmt: skip
    assert process_document(r.json()["documents"][0]["id"]) == "ready"
    (answer,) = [m for m in client.get(f"/api/conversations/{conv}", headers=w.member).json()["messages"]
                 if m["role"] == "assistant"]  # fmt: skip
    assert "twenty-eight days" in answer["content"]
    assert all(
        src["document_id"] not in (old, new) and "twenty-eight" not in src["text"]
        for src in answer["sources"]
    )


def test_reindex_twice_while_the_new_copy_is_pending_is_refused(client):
    # A second Re-index (a double click; the admin page never knew which row was the pending copy) queued
    # another copy: both became ready, the document was listed twice and every search hit came back twice.
    w = build_world(client)
    with session_scope() as s:
        (old,) = s.exec(select(Document.id).where(Document.filename == "vacation.md")).all()
    r = client.post(f"/api/documents/{old}/reindex", headers=w.admin)
    assert r.status_code == 202 and r.json()["replaces_id"] == old
    new = r.json()["id"]
    listed = client.get(f"/api/collections/{w.handbook}/documents", headers=w.admin).json()
    assert [(d["id"], d["replaces_id"]) for d in listed] == [(old, None), (new, old)]
    r = client.post(f"/api/documents/{old}/reindex", headers=w.admin)
    assert (r.status_code, r.json()) == (409, {"detail": "Document is already being re-indexed"})
    assert process_document(new) == "ready"
    listed = client.get(f"/api/collections/{w.handbook}/documents", headers=w.admin).json()
    assert [(d["id"], d["filename"]) for d in listed] == [(new, "vacation.md")]
    hits = client.post("/api/search", json={"query": "paid leave", "k": 10}, headers=w.member).json()["hits"]
    assert {h["document_id"] for h in hits} == {new}
    assert client.post(f"/api/documents/{new}/reindex", headers=w.admin).status_code == 202  # done: again


def test_v1_without_generator_answers_extractively(client):
    w = build_world(client)
    assert [m["id"] for m in client.get("/v1/models", headers=w.member).json()["data"]] == ["rag:handbook"]
    body = {
        "model": "rag:handbook",
        "messages": [{"role": "user", "content": "How many days of paid leave?"}],
    }
    r = client.post("/v1/chat/completions", json=body, headers=w.member)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["message"]["content"].startswith(NO_GENERATOR)
    assert "twenty-eight days" in out["choices"][0]["message"]["content"] and 1 in out["cited"]
    assert out["usage"]["total_tokens"] == out["usage"]["completion_tokens"] > 0
    assert out["sources"][0]["highlight"]
    r = client.post("/v1/chat/completions", json={**body, "model": "tiny-glm"}, headers=w.member)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert GUIDE  # the handbook's document
