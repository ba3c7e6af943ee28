"""Bad files: each is refused (4xx) or ends failed with a readable reason; the rest of the upload ingests."""

from __future__ import annotations

from app.models import Role
from app.uploads import PATH_REFUSED
from ingest.pipeline import process_document
from tests.app.support import BINARY_JUNK, make_encrypted_pdf, make_pdf, make_user, make_zip_bomb_docx

GOOD = b"The onboarding checklist lists laptop setup, badge photo and payroll forms."


def bad_batch() -> list[tuple[str, bytes]]:
    corrupt = make_pdf(["Some text on page one"])[:400] + b"\x00garbage" * 50
    return [
        ("corrupt.pdf", corrupt),
        ("locked.pdf", make_encrypted_pdf("Secret salaries")),
        ("empty.txt", b""),
        ("binary.txt", BINARY_JUNK),
        ("bomb.docx", make_zip_bomb_docx()),
        ("huge.txt", b"a" * (2 * 1024 * 1024 + 1)),
        ("../../etc/passwd", b"root:x:0:0"),
        ("good.txt", GOOD),
    ]


def check_batch_response(body: dict) -> dict[str, int]:
    """Refusals at upload time, with their status and reason; returns {filename: document id} of the rest."""
    rejected = {r["filename"]: (r["status_code"], r["detail"]) for r in body["rejected"]}
    assert rejected["empty.txt"] == (422, "The file is empty.")
    assert rejected["huge.txt"] == (413, "File too large: the upload limit is 2 MB")
    assert rejected["../../etc/passwd"] == (400, f"Invalid file name: {PATH_REFUSED}")
    code, detail = rejected["binary.txt"]
    assert code == 415 and detail.startswith("Unsupported file type: ") and len(detail) > 30
    return {d["filename"]: d["id"] for d in body["documents"]}


def check_failures(get_doc) -> None:
    for name, words in [("corrupt.pdf", ()), ("locked.pdf", ("encrypt",)), ("bomb.docx", ())]:
        doc = get_doc(name)
        assert doc["status"] == "failed", (name, doc)
        reason = doc["error"]
        assert reason and len(reason) > 15 and "Traceback" not in reason, (name, reason)
        assert all(w in reason.lower() for w in words), (name, reason)
    assert get_doc("good.txt")["status"] == "ready"


def test_bad_batch_in_process(env, client):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "intake"}, headers=admin).json()["id"]
    r = client.post(
        f"/api/collections/{cid}/documents", files=[("files", f) for f in bad_batch()], headers=admin
    )
    assert r.status_code == 202, r.text
    ids = check_batch_response(r.json())
    assert set(ids) == {"corrupt.pdf", "locked.pdf", "bomb.docx", "good.txt"}
    for doc_id in ids.values():
        process_document(doc_id)
    check_failures(lambda name: client.get(f"/api/documents/{ids[name]}", headers=admin).json())


def test_single_file_refusals_use_the_status_code(env, client):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "c"}, headers=admin).json()["id"]
    url = f"/api/collections/{cid}/documents"
    r = client.post(url, files=[("files", ("big.txt", b"x" * (2 * 1024 * 1024 + 1)))], headers=admin)
    assert (r.status_code, r.json()["detail"]) == (413, "File too large: the upload limit is 2 MB")
    r = client.post(url, files=[("files", ("data.txt", BINARY_JUNK))], headers=admin)
    assert r.status_code == 415 and r.json()["detail"].startswith("Unsupported file type: ")
    r = client.post("/api/collections/999/documents", files=[("files", ("a.txt", GOOD))], headers=admin)
    assert (r.status_code, r.json()["detail"]) == (404, "Collection not found")
