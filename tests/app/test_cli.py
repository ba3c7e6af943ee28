"""`autoglm serve` on embedded defaults (embedded SQLite broker + worker child), create-admin, ingest."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from sqlmodel import select

from app.cli import main
from app.db import session_scope
from app.models import Collection, Document
from tests.app.support import ROOT, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ingest_command_processes_files_and_folders(env, capsys):
    folder = env / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Travel\n\nBook flights through the travel desk two weeks ahead.\n")
    (folder / "sub" / "b.txt").write_text("Expense reports are due on the fifth working day of each month.")
    (folder / "other").mkdir()  # the same file name in another folder is another document, not a new version
    (folder / "other" / "b.txt").write_text("Mileage is paid at 30 cents per kilometre driven.")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # hidden folders are skipped
    (env / "empty.txt").write_bytes(b"")
    rc = main(["ingest", str(folder), str(env / "empty.txt"), "--collection", "finance", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "3 ready, 1 failed or rejected" in out  # the empty file is refused
    with session_scope() as s:
        docs = s.exec(select(Document)).all()
    assert sorted((d.filename, d.status) for d in docs) == [
        ("docs/a.md", "ready"),
        ("docs/other/b.txt", "ready"),
        ("docs/sub/b.txt", "ready"),
    ]


def test_ingest_command_says_what_of_a_ready_file_was_not_read(env, capsys):
    from tests.ingest import parser_fixtures as F
    from tests.ingest.test_notices import SCANNED

    (env / "memo.pdf").write_bytes(F.make_partly_scanned_pdf())
    rc = main(["ingest", str(env / "memo.pdf"), "--collection", "finance", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and f"memo.pdf: {SCANNED}\n" in out and "1 ready, 0 failed or rejected" in out


def test_ingest_command_states_the_upload_limit_in_megabytes(env, capsys):
    (env / "huge.txt").write_bytes(b"a" * (2 * 1024 * 1024 + 1))  # the tests' limit is 2 MiB
    rc = main(["ingest", str(env / "huge.txt"), "--collection", "finance", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and f"rejected {env / 'huge.txt'}: File too large: the upload limit is 2 MB\n" in out


def test_ingest_command_names_a_file_that_duplicates_an_ingested_one(env, capsys):
    (env / "a.md").write_text("# Travel\n\nBook flights through the travel desk two weeks ahead.\n")
    (env / "copy").mkdir()
    (env / "copy" / "travel.md").write_bytes((env / "a.md").read_bytes())
    assert main(["ingest", str(env / "a.md"), "--collection", "finance", "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["ingest", str(env / "copy"), "--collection", "finance", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "copy/travel.md: the same content as a.md, already ingested\n" in out


def test_ingest_command_progress_names_the_collection(env, capsys):
    # the progress bar said "ingest -> b.md", the last file's name, for a run into "finance"
    (env / "a.md").write_text("# Travel\n\nBook flights through the travel desk two weeks ahead.\n")
    (env / "b.md").write_text("# Expenses\n\nExpense reports are due on the fifth working day.\n")
    assert main(["ingest", str(env / "a.md"), str(env / "b.md"), "--collection", "finance"]) == 0
    err = capsys.readouterr().err
    assert "ingest -> finance: 100%" in err and "ingest -> b.md" not in err


def test_ingest_command_fails_on_a_path_that_does_not_exist(env, capsys):
    # A mistyped path printed a warning, then "0 ready, 0 failed or rejected" and exited 0 (a script went on
    # as if the manual had been ingested), after creating the collection
    rc = main(["ingest", str(env / "handbok.pdf"), "--collection", "finance", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1 and "0 ready, 1 failed or rejected" in captured.out
    assert f"{env / 'handbok.pdf'}: no such file or folder" in captured.err
    (env / "a.md").write_text("# Travel\n\nBook flights through the travel desk two weeks ahead.\n")
    rc = main(["ingest", str(env / "a.md"), str(env / "b.md"), "--collection", " finance ", "--quiet"])
    assert rc == 1 and "1 ready, 1 failed or rejected" in capsys.readouterr().out
    with session_scope() as s:
        assert [c.name for c in s.exec(select(Collection)).all()] == ["finance"]  # trimmed, as the API does
    assert main(["ingest", str(env / "a.md"), "--collection", "  ", "--quiet"]) == 2


@pytest.mark.slow
def test_serve_runs_api_and_embedded_worker(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGLM_")}
    env.update(HF_HUB_OFFLINE="1", AUTOGLM_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    serve = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{base}/api/health"), 90, "the API to answer")
        key = subprocess.run([sys.executable, "-m", "app.cli", "create-admin"], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]  # fmt: skip
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=h, timeout=30) as c:
            cid = c.post("/api/collections", json={"name": "it"}).json()["id"]
            r = c.post(f"/api/collections/{cid}/documents",
                       files=[("files", ("vpn.txt", b"Connect to the VPN with the GlobalProtect client."))])  # fmt: skip
            assert r.status_code == 202, r.text
            doc_id = r.json()["documents"][0]["id"]
            wait_for(lambda: c.get(f"/api/documents/{doc_id}").json()["status"] == "ready", 120, "ready")
            hits = c.post("/api/search", json={"query": "how do I connect to the VPN"}).json()["hits"]
            assert hits[0]["document_id"] == doc_id
        assert (tmp_path / "data" / "broker.sqlite").exists()
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        log.close()
        print((tmp_path / "serve.log").read_text()[-3000:])


def test_serve_on_a_taken_port_says_so_before_starting_anything(tmp_path):
    # A second `autoglm serve` (another terminal, a service left running) started its embedded worker and
    # re-queued documents, then uvicorn's "address already in use" scrolled away under later log lines.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGLM_")}
    env.update(HF_HUB_OFFLINE="1", AUTOGLM_DATA_DIR=str(tmp_path / "data"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; is another `autoglm serve` running? "
        "Stop it, or choose another port with --port (or AUTOGLM_PORT)."
    )
    assert not (tmp_path / "data" / "broker.sqlite").exists()  # no worker was started, nothing migrated
    assert not (tmp_path / "data" / "autoglm.db").exists()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_create_admin_says_who_signs_in_where(tmp_path):
    # The output was the key alone, under nine INFO lines of alembic's; the name to sign in with was said
    # nowhere. Run as a user runs it: a process of its own, with the libraries' logging as it comes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGLM_")}
    env.update(HF_HUB_OFFLINE="1", AUTOGLM_DATA_DIR=str(tmp_path / "data"))

    def create_admin(*args: str) -> tuple[str, str]:
        r = subprocess.run([sys.executable, "-m", "app.cli", "create-admin", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        # stdout: the key alone, for scripts
        assert r.stdout.startswith("agk_") and len(r.stdout.splitlines()) == 1, r.stdout
        return r.stdout.strip(), r.stderr.strip()

    _, err = create_admin()
    assert err == (
        "Created administrator 'admin' (no password yet: run this again with --password to sign in in a "
        "browser). Its API key, shown only now:"
    )
    env["AUTOGLM_ADMIN_PASSWORD"] = "correct horse battery"
    _, err = create_admin("--password")
    assert err == (
        "New API key for administrator 'admin' (sign in at http://127.0.0.1:8000/ as admin). "
        "Its API key, shown only now:"
    )
    env["AUTOGLM_LOG_LEVEL"] = "INFO"  # asked for: the libraries' lines come back
    _, err = create_admin()
    assert "INFO alembic.runtime.migration" in err


def test_create_admin_with_password_can_sign_in(env, capsys, monkeypatch):
    from fastapi.testclient import TestClient

    from app import sessions
    from app.main import create_app

    monkeypatch.setenv("AUTOGLM_ADMIN_PASSWORD", "short")
    assert main(["create-admin", "--name", "alice", "--password"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    with session_scope() as s:
        assert sessions.authenticate(s, "alice", "short") is None  # nothing was written

    monkeypatch.setenv("AUTOGLM_ADMIN_PASSWORD", "correct horse battery")
    # the name as the API and the sign-in page take it: "alice " was stored with its blank and could not sign in
    assert main(["create-admin", "--name", "alice ", "--password"]) == 0
    key = capsys.readouterr().out.strip()
    with TestClient(create_app()) as c:
        r = c.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
        assert r.status_code == 200, r.text
        assert r.json()["user"]["role"] == "admin"
        assert c.get("/api/me", headers={"Authorization": f"Bearer {key}"}).json()["name"] == "alice"
    assert main(["create-admin", "--name", "  "]) == 2
