"""The REST API on SQLite and PostgreSQL, with the ingestion pipeline run in-process (no broker consumer)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from app.db import session_scope
from app.models import Chunk, Document, Role, title_from_filename
from ingest.pipeline import process_document
from tests.app.ask_support import LiveServer
from tests.app.support import make_user

GUIDE = """# Vacation policy

Employees receive twenty-eight days of paid leave per year. Requests go through the HR portal.

## Carry-over

Unused leave of up to five days carries over into the next calendar year.
"""
NOTES = "The cafeteria on the third floor serves a vegetarian lunch every Thursday."


def _collection(client, admin, name, group_ids=()):
    r = client.post("/api/collections", json={"name": name, "group_ids": list(group_ids)}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _upload(client, admin, cid, files):
    return client.post(
        f"/api/collections/{cid}/documents", files=[("files", f) for f in files], headers=admin
    )


def _ingest(client, admin, cid, files) -> list[int]:
    r = _upload(client, admin, cid, files)
    assert r.status_code == 202, r.text
    ids = [d["id"] for d in r.json()["documents"]]
    for doc_id in ids:
        process_document(doc_id)
    return ids


def _search(client, headers, query, **kw):
    return client.post("/api/search", json={"query": query, **kw}, headers=headers)


def test_authentication_and_roles(db_env, client):
    assert client.get("/api/collections").json() == {"detail": "Not authenticated"}
    r = client.get("/api/collections", headers={"Authorization": "Bearer agk_nope"})
    assert (r.status_code, r.json()["detail"]) == (401, "Invalid API key")
    member = make_user(Role.member)
    r = client.post("/api/collections", json={"name": "x"}, headers=member)
    assert (r.status_code, r.json()["detail"]) == (403, "Admin role required")
    admin = make_user(Role.admin)
    _collection(client, admin, "handbook")
    r = client.post("/api/collections", json={"name": "handbook"}, headers=admin)
    assert (r.status_code, r.json()["detail"]) == (409, "Collection name already exists")
    assert [c["name"] for c in client.get("/api/collections", headers=admin).json()] == ["handbook"]


def test_names_are_trimmed_and_must_show_something(env, client):
    # A collection "   ", a second "handbook " beside "handbook" (and a `rag:handbook ` model) and a NUL in a
    # name were all created; a user "carol " could never sign in from the browser, which trims what is typed.
    admin = make_user(Role.admin)
    r = client.post("/api/collections", json={"name": " handbook "}, headers=admin)
    assert (r.status_code, r.json()["name"]) == (201, "handbook")
    r = client.post("/api/collections", json={"name": "handbook "}, headers=admin)
    assert (r.status_code, r.json()["detail"]) == (409, "Collection name already exists")
    r = client.post("/api/groups", json={"name": "hr\t"}, headers=admin)
    assert (r.status_code, r.json()["name"]) == (201, "hr")
    assert client.post("/api/groups", json={"name": "hr"}, headers=admin).status_code == 409
    r = client.post("/api/users", json={"name": "carol ", "password": "carol-pass-1"}, headers=admin)
    assert (r.status_code, r.json()["name"]) == (201, "carol")
    assert client.post("/api/users", json={"name": " carol"}, headers=admin).status_code == 409
    r = client.post("/api/auth/login", json={"username": "carol", "password": "carol-pass-1"})
    assert r.status_code == 200, r.text
    for route in ("/api/collections", "/api/groups", "/api/users"):
        for name in ("   ", "a\x00b", "two\nlines"):
            r = client.post(route, json={"name": name}, headers=admin)
            assert r.status_code == 422, (route, name, r.text)
    assert [c["name"] for c in client.get("/api/collections", headers=admin).json()] == ["handbook"]
    assert [m["id"] for m in client.get("/v1/models", headers=admin).json()["data"]] == ["rag:handbook"]


def test_upload_progress_search_delete(db_env, client):
    admin = make_user(Role.admin)
    cid = _collection(client, admin, "hr")
    a, b = _ingest(
        client, admin, cid, [("guide.md", GUIDE.encode(), "text/markdown"), ("notes.txt", NOTES.encode())]
    )

    doc = client.get(f"/api/documents/{a}", headers=admin).json()
    assert (doc["status"], doc["stage"], doc["progress"], doc["detected_type"]) == (
        "ready",
        "done",
        1.0,
        "markdown",
    )
    assert doc["chunk_count"] >= 1 and doc["chunks_embedded"] == doc["chunks_total"] == doc["chunk_count"]
    listed = client.get(f"/api/collections/{cid}/documents", headers=admin).json()
    assert [d["id"] for d in listed] == [a, b]

    r = _search(client, admin, "How many days carry over to next year?", k=3)
    assert r.status_code == 200, r.text
    top = r.json()["hits"][0]
    assert top["document_id"] == a and "five days" in top["text"]
    assert top["heading_path"][-1] == "Carry-over" and top["document_title"]
    text = client.get(f"/api/documents/{a}/text", headers=admin).json()["text"]
    assert text[top["char_start"] : top["char_end"]] == top["text"]  # offsets point at the exact passage
    lunch = _search(client, admin, "vegetarian lunch cafeteria", k=1).json()["hits"]
    assert lunch[0]["document_id"] == b

    assert client.delete(f"/api/documents/{a}", headers=admin).status_code == 204
    hits = _search(client, admin, "How many days carry over to next year?", k=10).json()["hits"]
    assert a not in {h["document_id"] for h in hits}
    assert client.get(f"/api/documents/{a}", headers=admin).status_code == 404
    assert client.delete(f"/api/documents/{a}", headers=admin).json() == {"detail": "Document not found"}
    with session_scope() as s:
        assert s.exec(select(Chunk).where(Chunk.document_id == a)).all() == []


def test_a_document_without_a_title_is_titled_after_its_file_name(db_env, client):
    # Plain text and CSV hold no title: listings showed `title: null` and citations the bare file name.
    admin = make_user(Role.admin)
    cid = _collection(client, admin, "finance")
    files = [("reports/quarterly_report-2024.txt", b"Revenue grew by nine percent in the third quarter."),
             ("staff_list.csv", b"name,desk\nAnn Lee,4.12\nBo Chan,4.13\n"),
             ("guide.md", GUIDE.encode(), "text/markdown")]  # fmt: skip
    txt, csv, md = _ingest(client, admin, cid, files)
    titles = {txt: "quarterly report 2024", csv: "staff list", md: "Vacation policy"}
    listed = client.get(f"/api/collections/{cid}/documents", headers=admin).json()
    assert {d["id"]: d["title"] for d in listed} == titles
    assert client.get(f"/api/documents/{txt}", headers=admin).json()["title"] == "quarterly report 2024"
    with session_scope() as s:
        assert s.get(Document, csv).title == "staff list"  # stored, so BM25 reads it too

    def cited() -> tuple[str, str]:
        (hit,) = _search(client, admin, "revenue growth in the third quarter", k=1).json()["hits"]
        assert hit["document_id"] == txt
        preview = client.get(f"/api/chunks/{hit['chunk_id']}/preview", headers=admin).json()
        return hit["document_title"], preview["title"]

    assert cited() == ("quarterly report 2024", "quarterly report 2024")
    # A document stored before ingestion titled such files reads the same, with no migration.
    with session_scope() as s:
        s.get(Document, txt).title = None
        s.commit()
    assert client.get(f"/api/documents/{txt}", headers=admin).json()["title"] == "quarterly report 2024"
    listed = client.get(f"/api/collections/{cid}/documents", headers=admin).json()
    assert {d["id"]: d["title"] for d in listed} == titles
    assert cited() == ("quarterly report 2024", "quarterly report 2024")


@pytest.mark.parametrize(
    ("filename", "title"),
    [
        ("quarterly_report-2024.txt", "quarterly report 2024"),
        ("hr/2025/people.csv", "people"),
        ("minutes_2024-05-01.txt", "minutes 2024-05-01"),  # a date keeps its hyphens
        ("Travel policy - draft.txt", "Travel policy - draft"),  # a name with spaces keeps its dash
        ("v1.2 notes.txt", "v1.2 notes"),
        ("README", "README"),
        ("___.txt", "___.txt"),  # nothing readable left: the name as it is
    ],
)
def test_title_from_filename(filename, title):
    assert title_from_filename(filename) == title


def test_times_carry_their_time_zone(db_env, client, monkeypatch):
    # SQLite gave the times back without a zone ("2026-12-06T21:31:11.130442"): a browser reads such a time as
    # local (the admin page's "updated" column was off by the viewer's UTC offset) and /v1/models' `created`
    # was computed in the server's local zone
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        admin = make_user(Role.admin)
        cid = _collection(client, admin, "hr")
        (doc_id,) = _ingest(client, admin, cid, [("notes.txt", NOTES.encode())])
        col = client.get("/api/collections", headers=admin).json()[0]
        doc = client.get(f"/api/documents/{doc_id}", headers=admin).json()
        listed = client.get(f"/api/collections/{cid}/documents", headers=admin).json()[0]
        key = client.get("/api/keys", headers=admin).json()[0]
        model = client.get("/v1/models/rag:hr", headers=admin).json()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    now = datetime.now(UTC)
    for shown in (
        col["created_at"],
        doc["created_at"],
        doc["updated_at"],
        listed["updated_at"],
        key["created_at"],
    ):
        at = datetime.fromisoformat(shown)
        assert at.utcoffset() == timedelta(0), shown
        assert abs(now - at) < timedelta(minutes=5), shown
    assert model["created"] == int(datetime.fromisoformat(col["created_at"]).timestamp())


BADGES = b"Badges must be worn visibly at all times."


def test_same_content_stored_once_and_changed_file_replaces(env, client):
    admin = make_user(Role.admin)
    cid = _collection(client, admin, "kb")
    (first,) = _ingest(client, admin, cid, [("policy.txt", BADGES)])
    again = _upload(client, admin, cid, [("copy.txt", BADGES)]).json()
    assert again["documents"][0]["id"] == first and again["documents"][0]["duplicate"] is True

    (second,) = _ingest(
        client, admin, cid, [("policy.txt", b"Visitors sign in at the front desk on arrival.")]
    )
    assert second != first
    assert client.get(f"/api/documents/{first}", headers=admin).status_code == 404
    hits = _search(client, admin, "badges worn visibly", k=10).json()["hits"]
    assert {h["document_id"] for h in hits} == {second}
    assert [d["id"] for d in client.get(f"/api/collections/{cid}/documents", headers=admin).json()] == [
        second
    ]


def test_a_duplicate_in_a_batch_is_reported_under_its_uploaded_name(env, client):
    # A batch with a file whose content is already stored listed it as "policy.txt", the existing document,
    # so the uploader could not tell which of their files it was; now it carries its own name too.
    admin = make_user(Role.admin)
    cid = _collection(client, admin, "kb")
    (first,) = _ingest(client, admin, cid, [("policy.txt", BADGES)])
    batch = [("notes/visitors.txt", b"Visitors sign in at the lobby."), ("2025/badges-copy.txt", BADGES)]
    r = _upload(client, admin, cid, batch)
    assert r.status_code == 202, r.text
    shown = [
        (d["uploaded_filename"], d["duplicate"], d["id"] == first, d["filename"])
        for d in r.json()["documents"]
    ]
    assert shown == [
        ("notes/visitors.txt", False, False, "notes/visitors.txt"),
        ("2025/badges-copy.txt", True, True, "policy.txt"),  # the document it duplicates
    ]


def test_the_same_file_uploaded_twice_at_once_is_stored_once(db_env, monkeypatch):
    # The admin page sends each file in a request of its own, three at a time: two copies of a file (or two
    # admins uploading it) both passed the same-content check before either was saved and became two
    # documents, whose passages then came back twice in every search and answer
    monkeypatch.setenv("AUTOGLM_TEST_PAUSE_AT", "upload_checked:1")  # each request waits after its check
    admin = make_user(Role.admin)
    server = LiveServer()
    try:

        def upload(name: str) -> dict:
            with httpx.Client(base_url=server.base, headers=admin, timeout=60) as c:
                r = c.post(f"/api/collections/{cid}/documents", files=[("files", (name, GUIDE.encode()))])
                assert r.status_code == 202, r.text
                return r.json()["documents"][0]

        with httpx.Client(base_url=server.base, headers=admin, timeout=60) as c:
            cid = c.post("/api/collections", json={"name": "kb"}).json()["id"]
            with ThreadPoolExecutor(2) as pool:
                a, b = pool.map(upload, ["guide.md", "guide-copy.md"])
            listed = c.get(f"/api/collections/{cid}/documents").json()
    finally:
        server.stop()
    assert [d["id"] for d in listed] == [a["id"]] == [b["id"]]
    assert sorted([a["duplicate"], b["duplicate"]]) == [False, True]


def test_member_never_sees_another_groups_collection(db_env, client):
    admin = make_user(Role.admin)
    g1 = client.post("/api/groups", json={"name": "sales"}, headers=admin).json()["id"]
    g2 = client.post("/api/groups", json={"name": "legal"}, headers=admin).json()["id"]
    mine = _collection(client, admin, "sales-kb", [g1])
    theirs = _collection(client, admin, "legal-kb", [g2])
    _ingest(client, admin, mine, [("s.txt", b"Quarterly sales targets are reviewed every March.")])
    (secret,) = _ingest(client, admin, theirs, [("l.txt", b"The merger with Contoso closes in March.")])
    r = client.post("/api/users", json={"name": "ann", "group_ids": [g1]}, headers=admin)
    member = {"Authorization": f"Bearer {r.json()['api_key']}"}

    assert [c["id"] for c in client.get("/api/collections", headers=member).json()] == [mine]
    hits = _search(client, member, "merger with Contoso in March", k=10).json()["hits"]
    assert hits and {h["collection_id"] for h in hits} == {mine}
    forbidden = _search(client, member, "merger", collection_ids=[theirs])
    absent = _search(client, member, "merger", collection_ids=[987654])
    assert (forbidden.status_code, forbidden.json()) == (absent.status_code, absent.json())
    assert forbidden.json() == {"detail": "Collection not found"}
    assert client.get(f"/api/collections/{theirs}/documents", headers=member).json() == {
        "detail": "Collection not found"
    }
    assert client.get(f"/api/documents/{secret}", headers=member).json() == {"detail": "Document not found"}
    assert client.get(f"/api/documents/{secret}/text", headers=member).json() == {
        "detail": "Document not found"
    }
    assert _upload(client, member, mine, [("x.txt", b"hello there")]).status_code == 403
    assert client.delete(f"/api/documents/{secret}", headers=member).status_code == 403
    # Granting the group access makes it visible at once.
    client.put(f"/api/collections/{theirs}/groups", json={"group_ids": [g1, g2]}, headers=admin)
    hits = _search(client, member, "merger with Contoso in March", k=1).json()["hits"]
    assert hits[0]["document_id"] == secret


def test_notices_say_what_was_not_read_and_follow_re_indexing(db_env, client):
    # A partly scanned PDF and a workbook saved without its formulas' values are ready, with notices saying
    # what is not searchable, in the document and in the list; a new run's notices replace the old ones.
    from tests.ingest import parser_fixtures as F
    from tests.ingest.test_notices import SCANNED, UNSAVED

    admin = make_user(Role.admin)
    cid = _collection(client, admin, "finance")
    memo, q3, notes = _ingest(
        client,
        admin,
        cid,
        [("memo.pdf", F.make_partly_scanned_pdf()), ("q3.xlsx", F.make_xlsx_with_unsaved_formulas()),
         ("notes.txt", NOTES.encode())],
    )  # fmt: skip
    doc = client.get(f"/api/documents/{memo}", headers=admin).json()
    assert (doc["status"], doc["error"], doc["pages"], doc["notices"]) == ("ready", None, 12, [SCANNED])
    assert client.get(f"/api/documents/{q3}", headers=admin).json()["notices"] == [UNSAVED]
    listed = client.get(f"/api/collections/{cid}/documents", headers=admin).json()
    assert [(d["id"], d["status"], d["notices"]) for d in listed] == [
        (memo, "ready", [SCANNED]),
        (q3, "ready", [UNSAVED]),
        (notes, "ready", []),
    ]
    hits = _search(client, admin, "What does page 2 say the budget is?", k=3).json()["hits"]
    assert hits[0]["document_id"] == memo  # the pages that have text are searchable

    # Re-indexed: the new copy starts without notices, the old one keeps its own until the new one is ready.
    r = client.post(f"/api/documents/{memo}/reindex", headers=admin)
    assert r.status_code == 202, r.text
    again = r.json()
    assert (again["status"], again["replaces_id"], again["notices"]) == ("queued", memo, [])
    assert client.get(f"/api/documents/{memo}", headers=admin).json()["notices"] == [SCANNED]
    process_document(again["id"])
    assert client.get(f"/api/documents/{memo}", headers=admin).status_code == 404
    assert client.get(f"/api/documents/{again['id']}", headers=admin).json()["notices"] == [SCANNED]

    # The file typed out in full, uploaded under the same name: nothing left unread.
    (typed,) = _ingest(client, admin, cid, [("memo.pdf", F.make_partly_scanned_pdf(scanned=()))])
    doc = client.get(f"/api/documents/{typed}", headers=admin).json()
    assert (doc["status"], doc["replaces_id"], doc["notices"]) == ("ready", again["id"], [])
    assert client.get(f"/api/documents/{again['id']}", headers=admin).status_code == 404
