"""A plain ZIP archive uploaded by REST or the CLI stands for its files: each becomes a document named by its
path in the archive, bad members are refused one by one, the archive as a whole only when it cannot be read or
holds too much."""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlmodel import select

from app.cli import main
from app.db import session_scope
from app.models import Document, Role
from ingest.pipeline import process_document
from tests.app.support import make_user
from tests.ingest import parser_fixtures as F


def make_zip(members: dict[str, bytes], utf8_names: bool = True) -> bytes:
    buf = io.BytesIO()
    raw = {}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            stored = name
            if not utf8_names:  # as old Windows tools write them: UTF-8 bytes without the UTF-8 flag
                encoded = name.encode("utf-8")
                stored = "".join(chr(c) if c < 128 else "~" for c in encoded)  # ASCII of the same length
                raw[stored.encode()] = encoded
            z.writestr(stored, data)
    out = buf.getvalue()
    for placeholder, encoded in raw.items():  # the name's bytes in the local header and the central directory
        out = out.replace(placeholder, encoded)
    return out


def archive() -> bytes:
    inner = make_zip({"x.txt": b"nested archives are not unpacked"})
    return make_zip({
        "hr/leave.txt": b"Staff get 30 days of paid leave a year, booked in the HR portal.",
        "it/leave.txt": b"Return laptops to the IT desk before a leave of more than four weeks.",
        "handbook.docx": F.make_docx(),  # a Word file is a ZIP container too: a document, not unpacked
        "hr/": b"",
        "__MACOSX/hr/._leave.txt": b"\x00\x05\x16\x07",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "../escape.txt": b"zip slip",
        "old/inner.zip": inner,
        "empty.txt": b"",
    })  # fmt: skip


def test_a_zip_upload_becomes_its_documents(env, client):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "intake"}, headers=admin).json()["id"]
    url = f"/api/collections/{cid}/documents"
    r = client.post(url, files=[("files", ("policies.zip", archive())), ("files", ("a.txt", b"Plain file."))],
                    headers=admin)  # fmt: skip
    assert r.status_code == 202, r.text
    body = r.json()
    docs = {d["filename"]: d for d in body["documents"]}
    assert sorted(docs) == ["a.txt", "policies.zip/handbook.docx", "policies.zip/hr/leave.txt",
                            "policies.zip/it/leave.txt"]  # fmt: skip
    rejected = {x["filename"]: (x["status_code"], x["detail"]) for x in body["rejected"]}
    assert rejected["policies.zip/../escape.txt"][0] == 400  # a path out of the archive
    assert rejected["policies.zip/old/inner.zip"][0] == 415  # not unpacked twice
    assert rejected["policies.zip/empty.txt"] == (422, "The file is empty.")
    assert len(rejected) == 3
    for d in docs.values():
        process_document(d["id"])
    got = {n: client.get(f"/api/documents/{d['id']}", headers=admin).json() for n, d in docs.items()}
    assert {n: d["status"] for n, d in got.items()} == dict.fromkeys(docs, "ready")
    assert got["policies.zip/handbook.docx"]["detected_type"] == "docx"
    hits = client.post("/api/search", json={"query": "laptops before a long leave", "collection_ids": [cid]},
                       headers=admin).json()["hits"]  # fmt: skip
    assert hits[0]["filename"] == "policies.zip/it/leave.txt"


def test_archive_refusals(env, client, monkeypatch):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "c"}, headers=admin).json()["id"]
    url = f"/api/collections/{cid}/documents"

    def post(name: str, data: bytes):
        return client.post(url, files=[("files", (name, data))], headers=admin)

    r = post(
        "names.zip",
        make_zip({"Reisekosten/Übersicht.txt": b"Mileage is paid at 30 cents."}, utf8_names=False),
    )
    assert [d["filename"] for d in r.json()["documents"]] == ["names.zip/Reisekosten/Übersicht.txt"]
    r = post("hidden.zip", make_zip({".git/HEAD": b"ref", "__MACOSX/x": b"y"}))
    assert (r.status_code, r.json()["detail"]) == (422, "The ZIP archive holds no files.")
    r = post("broken.zip", make_zip({"a.txt": b"text " * 100})[:60])
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "The file could not be read: it is a damaged ZIP container.",
    )
    bomb = make_zip({"bomb.txt": b" " * (40 * 1024 * 1024), "ok.txt": b"Parking permits renew in January."})
    assert len(bomb) < 200_000  # a 40 MB member in a small archive
    r = post("bomb.zip", bomb)
    assert [d["filename"] for d in r.json()["documents"]] == ["bomb.zip/ok.txt"]
    assert [(x["filename"], x["status_code"]) for x in r.json()["rejected"]] == [("bomb.zip/bomb.txt", 413)]
    # other ZIP-based formats are not unpacked: a Pages document is refused by name, an unknown one as a ZIP file
    r = post("report.pages", make_zip({"Index/Document.iwa": b"\x00" * 64, "preview.jpg": b"\xff\xd8\xff"}))
    assert r.status_code == 415 and "Apple Pages, Numbers or Keynote" in r.json()["detail"]
    r = post(
        "tool.jar", make_zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0", "a/B.class": b"\xca\xfe"})
    )
    assert r.status_code == 415 and "ZIP archive" in r.json()["detail"]
    monkeypatch.setattr("app.uploads.MAX_ARCHIVE_MEMBERS", 3)
    r = post("many.zip", make_zip({f"f{i}.txt": b"some words" for i in range(4)}))
    assert r.status_code == 413 and "holds 4 files, more than 3" in r.json()["detail"]


def test_cli_ingests_an_archive_by_its_files(env, capsys):
    (env / "policies.zip").write_bytes(make_zip({
        "hr/leave.txt": b"Staff get 30 days of paid leave a year.",
        "it/leave.txt": b"Return laptops to the IT desk before long leave.",
        "../escape.txt": b"zip slip",
    }))  # fmt: skip
    rc = main(["ingest", str(env / "policies.zip"), "--collection", "hr", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "2 ready, 1 failed or rejected" in out
    with session_scope() as s:
        names = sorted(d.filename for d in s.exec(select(Document)).all())
    assert names == ["policies.zip/hr/leave.txt", "policies.zip/it/leave.txt"]


def make_tar(members: dict[str, bytes], compression: str = "") -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./hr/latest.txt")  # a link is no file of its own
        link.type, link.linkname = tarfile.SYMTYPE, "leave.txt"
        t.addfile(link)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "compression"), [("docs.tar", ""), ("docs.tar.gz", "gz"), ("docs.tbz2", "bz2"),
                                                   ("docs.tar.xz", "xz")])  # fmt: skip
def test_a_tar_upload_becomes_its_documents(env, client, name, compression):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "tarred"}, headers=admin).json()["id"]
    members = {
        "./hr/leave.txt": b"Staff get 30 days of paid leave a year, booked in the HR portal.",  # as `tar -C dir .`
        "./it/guide.md": b"# Laptops\nReturn laptops to the IT desk before a leave of more than four weeks.",
        "./.git/HEAD": b"ref: refs/heads/main",
        "../escape.txt": b"tar slip",
        "./empty.txt": b"",
    }
    r = client.post(f"/api/collections/{cid}/documents", files=[("files", (name, make_tar(members, compression)))],
                    headers=admin)  # fmt: skip
    assert r.status_code == 202, r.text
    docs = {d["filename"]: d for d in r.json()["documents"]}
    assert sorted(docs) == [f"{name}/hr/leave.txt", f"{name}/it/guide.md"]
    rejected = {x["filename"]: x["status_code"] for x in r.json()["rejected"]}
    assert rejected == {f"{name}/../escape.txt": 400, f"{name}/empty.txt": 422}
    for d in docs.values():
        assert process_document(d["id"]) == "ready"
    hits = client.post("/api/search", json={"query": "laptops before a long leave", "collection_ids": [cid]},
                       headers=admin).json()["hits"]  # fmt: skip
    assert hits[0]["filename"] == f"{name}/it/guide.md"


def test_a_compressed_file_is_the_file_inside(env, client, monkeypatch):
    import bz2
    import gzip
    import lzma

    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "packed"}, headers=admin).json()["id"]
    text = b"# Release notes\nVersion 2 drops support for the old importer."
    files = [("notes.md.gz", gzip.compress(text)), ("changes.txt.bz2", bz2.compress(b"Changed the logo.")),
             ("README.xz", lzma.compress(b"Read me first.")), ("two.gz", gzip.compress(b"One, ") + gzip.compress(b"two."))]  # fmt: skip
    r = client.post(f"/api/collections/{cid}/documents", files=[("files", f) for f in files], headers=admin)
    assert r.status_code == 202, r.text
    docs = {d["filename"]: d for d in r.json()["documents"]}
    assert sorted(docs) == ["README", "changes.txt", "notes.md", "two"]
    assert docs["notes.md"]["detected_type"] == "markdown"
    process_document(docs["two"]["id"])
    text_of = client.get(f"/api/documents/{docs['two']['id']}/text", headers=admin).json()
    assert "One, two." in str(text_of)  # both gzip members

    def post(name: str, data: bytes):
        return client.post(
            f"/api/collections/{cid}/documents", files=[("files", (name, data))], headers=admin
        )

    r = post("cut.gz", gzip.compress(b"some words " * 100)[:30])
    assert (r.status_code, r.json()["detail"]) == (422, "The gzip file could not be read: it is cut short.")
    r = post("junk.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 40)
    assert (r.status_code, r.json()["detail"]) == (422, "The gzip file could not be read: it is damaged.")
    monkeypatch.setattr("app.uploads.settings.max_upload_request_bytes", 1_000_000)
    monkeypatch.setattr("app.uploads.settings.max_upload_bytes", 500_000)
    bomb = gzip.compress(b" " * 5_000_000)
    assert len(bomb) < 10_000
    r = post("bomb.txt.gz", bomb)  # one file: stopped at one file's limit, not unpacked into memory
    assert r.status_code == 413 and r.json()["detail"].startswith("File too large")
    tar_bomb = gzip.compress(
        make_tar({"a.txt": b" " * 400_000, "b.txt": b" " * 400_000, "c.txt": b" " * 400_000})
    )
    r = post("bomb.tar.gz", tar_bomb)  # a tar: stopped at the request limit
    assert r.status_code == 413 and "gzip file unpacks to more than 976.6 KB" in r.json()["detail"]
    r = post("fits.tar.gz", gzip.compress(make_tar({"a.txt": b"Lunch is served at noon. " * 10_000})))
    assert [d["filename"] for d in r.json()["documents"]] == ["fits.tar.gz/a.txt"]


MBOX = (
    b"From alice@example.com Mon Jan  1 10:00:00 2024\n"
    b"From: Alice <alice@example.com>\nTo: team@example.com\nSubject: Office move / Q3\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\nThe office moves to the fourth floor on 3 March.\n"
    b">From now on badges open the new doors only.\n\n"
    b"From bob@example.com Tue Jan  2 11:00:00 2024\n"
    b"From: Bob <bob@example.com>\nTo: team@example.com\nSubject: =?utf-8?q?R=C3=A9union_d=27=C3=A9quipe?=\n"
    b"Date: Tue, 2 Jan 2024 11:00:00 +0000\n\nThe team meeting is on Thursdays at 10.\n"
)


def test_an_mbox_upload_becomes_its_messages(env, client, monkeypatch):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "mail"}, headers=admin).json()["id"]

    def post(name: str, data: bytes):
        return client.post(
            f"/api/collections/{cid}/documents", files=[("files", (name, data))], headers=admin
        )

    r = post("Inbox.mbox", MBOX)
    assert r.status_code == 202, r.text
    docs = {d["filename"]: d for d in r.json()["documents"]}
    assert sorted(docs) == ["Inbox.mbox/0001 Office move Q3.eml", "Inbox.mbox/0002 Réunion d'équipe.eml"]
    for d in docs.values():
        assert process_document(d["id"]) == "ready"
    got = client.get(
        f"/api/documents/{docs['Inbox.mbox/0001 Office move Q3.eml']['id']}", headers=admin
    ).json()
    assert (got["detected_type"], got["title"]) == ("email", "Office move / Q3")
    text = client.get(f"/api/documents/{got['id']}/text", headers=admin).json()
    assert "From now on badges open the new doors only." in str(text) and ">From" not in str(text)  # unquoted
    hits = client.post("/api/search", json={"query": "when is the team meeting", "collection_ids": [cid]},
                       headers=admin).json()["hits"]  # fmt: skip
    assert hits[0]["filename"] == "Inbox.mbox/0002 Réunion d'équipe.eml"
    # a mailbox of one message is that message; a text that starts with "From " is a text
    one = post("saved.eml", MBOX.split(b"\n\nFrom bob")[0]).json()["documents"]
    assert [(d["filename"], d["detected_type"]) for d in one] == [("saved.eml", "email")]
    memo = post("memo.txt", b"From the desk of the director: the office moves in March.\n").json()[
        "documents"
    ]
    assert [(d["filename"], d["detected_type"]) for d in memo] == [("memo.txt", "text")]
    monkeypatch.setattr("app.uploads.MAX_ARCHIVE_MEMBERS", 1)
    r = post("big.mbox", MBOX)
    assert r.status_code == 413 and "holds 2 messages, more than 1" in r.json()["detail"]
