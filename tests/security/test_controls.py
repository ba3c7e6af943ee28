"""Hostile input at the HTTP edge: security headers, body size limits, question rate limits, upload limits,
file names, paths outside the served directories, cookie flags and forwarded headers."""

from __future__ import annotations

import socket

import httpx
import pytest

from app.models import Role
from app.security import human_bytes
from app.uploads import PATH_REFUSED, Rejected, clean_filename
from tests.app.ask_support import LiveServer
from tests.app.support import make_user

PASSWORD = "correct horse battery staple"


def _assert_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"


def test_security_headers_on_every_kind_of_response(app_client):
    c = app_client()
    admin = make_user(Role.admin)
    responses = [
        c.get("/login"),
        c.get("/static/ask.js"),
        c.get("/api/health"),
        c.get("/api/me"),  # 401
        c.get("/api/collections", headers=admin),
        c.get("/no/such/page"),  # 404
        c.post("/api/ask", json={"question": ""}, headers=admin),  # 422
        c.get("/v1/models"),  # 401 in OpenAI's shape
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 401, 200, 404, 422, 401]
    for r in responses:
        _assert_headers(r)
        assert "strict-transport-security" not in r.headers  # plain HTTP
    docs = c.get("/docs")
    assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    # Over HTTPS, browsers are told to stay on HTTPS.
    tls = app_client(base_url="https://testserver").get("/login")
    assert tls.headers["strict-transport-security"] == "max-age=31536000"


def test_request_body_limit_from_content_length_and_streamed_body(app_client):
    c = app_client(AUTOGLM_MAX_BODY_BYTES="4096")
    member = make_user(Role.member)
    big = {"question": "x" * 5000}
    r = c.post("/api/ask", json=big, headers=member)
    assert (r.status_code, r.json()) == (413, {"detail": "Request body too large: the limit is 4 KB"})
    _assert_headers(r)
    # No Content-Length (chunked): counted as it streams in.
    payload = b'{"question": "' + b"y" * 5000 + b'"}'
    r = c.post("/api/ask", content=iter([payload[:3000], payload[3000:]]), headers=member)
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()) == (413, {"detail": "Request body too large: the limit is 4 KB"})
    r = c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "z" * 5000}]},
               headers=member)  # fmt: skip
    assert r.status_code == 413
    assert r.json()["error"]["message"] == "Request body too large: the limit is 4 KB"
    r = c.post("/api/ask", content=b"{}", headers={**member, "Content-Length": "nonsense"})
    assert (r.status_code, r.json()) == (400, {"detail": "Invalid Content-Length header"})
    # Within the limit, the same route answers.
    assert c.post("/api/ask", json={"question": "hello"}, headers=member).status_code == 200


def test_chunked_upload_over_the_limit_is_cut_off_on_a_real_socket(sec_env):
    """A real client streaming an upload without Content-Length: 413 once the limit passes, nothing
    stored, and the server keeps serving."""
    tmp = sec_env(AUTOGLM_MAX_UPLOAD_REQUEST_BYTES=str(256 * 1024))
    admin = make_user(Role.admin)
    server = LiveServer()
    try:
        with httpx.Client(base_url=server.base, headers=admin, timeout=30) as c:
            cid = c.post("/api/collections", json={"name": "big"}).json()["id"]
            boundary = "securitytestboundary"
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
                    "Content-Type: text/plain\r\n\r\n").encode()  # fmt: skip

            def body():
                yield head
                for _ in range(64):  # 64 x 16 KiB = 1 MiB, four times the limit
                    yield b"lorem ipsum " * 1365 + b"abcd"
                yield f"\r\n--{boundary}--\r\n".encode()

            r = c.post(f"/api/collections/{cid}/documents", content=body(),
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
            assert r.status_code == 413, r.text
            assert r.json() == {"detail": "Request body too large: the limit is 256 KB"}
            assert c.get(f"/api/collections/{cid}/documents").json() == []
            assert not [p for p in (tmp / "data").rglob("*") if p.is_file() and "blobs" in p.parts]
            assert c.get("/api/health").status_code == 200
    finally:
        server.stop()


def test_question_rate_limit_per_user(app_client):
    c = app_client(AUTOGLM_ASK_RATE_PER_MINUTE="3")
    ada, bob = make_user(Role.member), make_user(Role.member)
    for _ in range(3):
        assert c.post("/api/ask", json={"question": "hello"}, headers=ada).status_code == 200
    r = c.post("/api/ask", json={"question": "hello"}, headers=ada)
    assert r.status_code == 429
    assert r.json()["detail"].startswith("Too many questions: the limit is 3 per minute; try again in ")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # The OpenAI route draws on the same budget and answers in OpenAI's shape.
    r = c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
               headers=ada)  # fmt: skip
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1
    # Another user is not affected; an unauthenticated caller gets 401, not 429.
    assert c.post("/api/ask", json={"question": "hello"}, headers=bob).status_code == 200
    assert c.post("/api/ask", json={"question": "hello"}).status_code == 401


def test_malformed_questions_do_not_count_against_the_rate_limit(app_client):
    # A tool sending bodies the API refuses (422: no question, a wrong type) asked nothing, yet each one took a
    # question of its user's minute, and that user's real questions in the browser then got 429.
    c = app_client(AUTOGLM_ASK_RATE_PER_MINUTE="2")
    ada = make_user(Role.member)
    for body in ({}, {"question": ""}, {"question": "hi", "collection_ids": "all"}, {"question": ["a"]}):
        assert c.post("/api/ask", json=body, headers=ada).status_code == 422
    r = c.post("/v1/chat/completions", json={"model": "m", "messages": "hi"}, headers=ada)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    for _ in range(2):
        assert c.post("/api/ask", json={"question": "hello"}, headers=ada).status_code == 200
    assert c.post("/api/ask", json={"question": "hello"}, headers=ada).status_code == 429


@pytest.mark.parametrize(
    ("size", "shown"),
    [(150, "150 bytes"), (4096, "4 KB"), (1_000_000, "976.6 KB"), (100 * 1024**2, "100 MB"),
     (512 * 1024**2, "512 MB"), (2 * 1024**3, "2 GB"), (1536 * 1024**2, "1.5 GB")],
)  # fmt: skip
def test_limits_are_stated_in_units_people_read(size, shown):
    # "the upload limit is 104857600 bytes" meant nothing at a glance; sizes use the web UI's units (1 KB = 1024)
    assert human_bytes(size) == shown


def test_upload_limits_files_per_request_and_daily_quota(app_client):
    c = app_client(AUTOGLM_UPLOAD_MAX_FILES="2", AUTOGLM_UPLOAD_QUOTA_BYTES_PER_DAY="200")
    admin, other = make_user(Role.admin), make_user(Role.admin)
    cid = c.post("/api/collections", json={"name": "q"}, headers=admin).json()["id"]
    url = f"/api/collections/{cid}/documents"
    three = [("files", (f"{i}.txt", f"note {i} ".encode() * 5)) for i in range(3)]
    r = c.post(url, files=three, headers=admin)
    assert (r.status_code, r.json()) == (413, {"detail": "Too many files in one upload: the limit is 2"})
    assert c.get(url, headers=admin).json() == []  # nothing of the refused request was kept

    first = b"The first memo about the quarterly budget review. " * 3  # 150 bytes
    r = c.post(url, files=[("files", ("a.txt", first))], headers=admin)
    assert r.status_code == 202 and len(r.json()["documents"]) == 1
    second = b"A second memo of about seventy bytes on the travel policy update."
    r = c.post(url, files=[("files", ("b.txt", second))], headers=admin)
    assert (r.status_code, r.json()["detail"]) == (
        429, "Upload quota exceeded: 150 bytes of 200 bytes used in the last 24 hours")  # fmt: skip
    # The same content again costs nothing (it is stored once) and is still accepted as a duplicate.
    r = c.post(url, files=[("files", ("a-copy.txt", first))], headers=admin)
    assert r.status_code == 202 and r.json()["documents"][0]["duplicate"] is True
    # In a batch, the file over the quota is refused with its reason and the others are kept.
    r = c.post(url, files=[("files", ("c.txt", b"c" * 40 + b" short")), ("files", ("b.txt", second))],
               headers=admin)  # fmt: skip
    assert r.status_code == 202
    assert [d["filename"] for d in r.json()["documents"]] == ["c.txt"]
    assert [(x["filename"], x["status_code"]) for x in r.json()["rejected"]] == [("b.txt", 429)]
    # The quota is per user.
    assert c.post(url, files=[("files", ("b.txt", second))], headers=other).status_code == 202


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/passwd", PATH_REFUSED),
        ("..\\..\\boot.ini", PATH_REFUSED),
        ("reports\\q3.pdf", PATH_REFUSED),
        ("/etc/passwd", PATH_REFUSED),
        ("a/../../b.txt", PATH_REFUSED),
        ("a/./b.txt", PATH_REFUSED),
        ("a//b.txt", PATH_REFUSED),
        ("folder/", PATH_REFUSED),
        ("..", PATH_REFUSED),
        ("", "it is empty"),
        ("hr/CON/x.txt", "reserved by the operating system"),
        ("x" * 300 + "/a.txt", "longer than 255 bytes"),
        ("/".join(["abcdefghij"] * 46), "its folder path is longer than 500 characters"),
        ("a\x00b.txt", "it contains control or formatting characters"),
        ("line\nbreak.txt", "it contains control or formatting characters"),
        ("invoice\u202etxt.exe", "it contains control or formatting characters"),
        ("CON", "reserved by the operating system"),
        ("nul.txt", "reserved by the operating system"),
        ("Lpt1.md", "reserved by the operating system"),
        ("report.", "reserved by the operating system"),
        ("x" * 252 + ".txt", "longer than 255 bytes"),
        ("é" * 126 + ".txt", "longer than 255 bytes"),  # 256 bytes in UTF-8
    ],
)
def test_file_names_refused(name, reason):
    with pytest.raises(Rejected) as e:
        clean_filename(name)
    assert (e.value.status_code, e.value.detail) == (400, f"Invalid file name: {reason}")
    assert (
        "\n" not in e.value.filename and "\x00" not in e.value.filename and "\u202e" not in e.value.filename
    )


@pytest.mark.parametrize(
    "name",
    [
        "報告 2026.txt",
        "نامه\u200cها.md",
        "  padded.txt  ",
        "con-notes.txt",
        ".env.example",
        "é" * 125 + ".txt",
        "hr/2025/policy.pdf",  # a folder upload's relative path
        "Ablage/Reisekosten 2025/Richtlinie.docx",
    ],
)
def test_file_names_kept(name):
    assert clean_filename(name) == name.strip()


def test_upload_with_a_path_in_the_name_stores_nothing_outside_the_data_dir(app_client, tmp_path):
    c = app_client()
    admin = make_user(Role.admin)
    cid = c.post("/api/collections", json={"name": "p"}, headers=admin).json()["id"]
    r = c.post(f"/api/collections/{cid}/documents", headers=admin,
               files=[("files", ("../../escape.txt", b"escaped text")), ("files", ("ok.txt", b"fine text"))])  # fmt: skip
    assert r.status_code == 202
    assert [(x["filename"], x["status_code"]) for x in r.json()["rejected"]] == [("../../escape.txt", 400)]
    assert not list(tmp_path.parent.rglob("escape.txt"))


def _raw_get(base: str, target: str) -> tuple[int, bytes]:
    """GET with the request target exactly as given (clients normalise ../ away)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_no_file_is_served_outside_the_web_directory(sec_env):
    tmp = sec_env()
    secret = tmp / "data" / "autoglm.db"
    assert secret.exists()
    server = LiveServer()
    try:
        assert _raw_get(server.base, "/static/style.css")[0] == 200
        targets = [
            "/static/../app/settings.py",
            "/static/../../../../../../etc/passwd",
            "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/static/%2fetc%2fpasswd",
            "/static//etc/passwd",
            "/static/..%5c..%5capp%5csettings.py",
            "/static/%252e%252e/%252e%252e/etc/passwd",
            f"/static/{secret}",
            f"/static/..{str(secret)}",
            "/static/....//....//etc/passwd",
            "/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/login/../../etc/passwd",
            "/static/ask.html%00.js",
        ]
        for target in targets:
            status, body = _raw_get(server.base, target)
            assert status in (400, 404), (target, status)
            assert b"root:" not in body and b"class Settings" not in body and b"SQLite" not in body, target
    finally:
        server.stop()


def test_cookie_flags_and_forwarded_headers(app_client, monkeypatch):
    from app.settings import settings

    c = app_client()
    admin = make_user(Role.admin)
    assert c.post("/api/users", json={"name": "ada", "password": PASSWORD}, headers=admin).status_code == 201

    def login(client, **headers) -> list[str]:
        r = client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD}, headers=headers)
        assert r.status_code == 200, r.text
        return [v for k, v in r.headers.multi_items() if k == "set-cookie"]

    plain = login(c)
    session_cookie = next(v for v in plain if v.startswith("autoglm_session="))
    assert "HttpOnly" in session_cookie and "samesite=lax" in session_cookie.lower()
    assert not any("Secure" in v for v in plain)
    # A client cannot claim HTTPS for itself; only a configured proxy can.
    assert not any("Secure" in v for v in login(c, **{"X-Forwarded-Proto": "https"}))
    tls = app_client(base_url="https://testserver")
    assert all("Secure" in v for v in login(tls))
    monkeypatch.setattr(settings, "trusted_proxies", "10.0.0.0/8")
    assert not any("Secure" in v for v in login(c, **{"X-Forwarded-Proto": "https"}))  # peer not in list
    monkeypatch.setattr(settings, "trusted_proxies", "*")
    assert all("Secure" in v for v in login(c, **{"X-Forwarded-Proto": "https"}))


def test_spoofed_forwarded_for_does_not_reset_the_sign_in_limiter(app_client):
    c = app_client(AUTOGLM_LOGIN_MAX_FAILURES_PER_ADDRESS="3")
    for i in range(3):
        r = c.post("/api/auth/login", json={"username": f"user{i}", "password": "wrong password"},
                   headers={"X-Forwarded-For": f"203.0.113.{i}"})  # fmt: skip
        assert r.status_code == 401
    # A fourth name from a "new" address: the peer is the same, so the per-address budget is spent.
    r = c.post("/api/auth/login", json={"username": "user9", "password": "wrong password"},
               headers={"X-Forwarded-For": "198.51.100.7"})  # fmt: skip
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_out_of_range_ids_are_client_errors(app_client):
    """Found by the fuzz test: ids past the database's INTEGER range used to raise in the driver (500)."""
    c = app_client()
    admin = make_user(Role.admin)
    huge = 2**63
    calls = [
        ("GET", f"/api/documents/{huge}", None),
        ("GET", f"/api/documents/{huge}/text", None),
        ("POST", f"/api/documents/{huge}/reindex", None),
        ("GET", f"/api/collections/{huge}/documents", None),
        ("PUT", f"/api/collections/{huge}/groups", {"group_ids": []}),
        ("DELETE", f"/api/collections/{huge}", None),
        ("DELETE", f"/api/keys/{huge}", None),
        ("GET", f"/api/chunks/{huge}/preview", None),
        ("GET", f"/api/conversations/{huge}", None),
        ("POST", f"/api/messages/{huge}/feedback", {"rating": "up"}),
        ("PUT", f"/api/groups/{huge}/members", {"user_ids": []}),
        ("PUT", "/api/groups/1/members", {"user_ids": [huge]}),
        ("POST", "/api/users", {"name": "x", "group_ids": [huge]}),
        ("POST", "/api/ask", {"question": "hi", "conversation_id": huge}),
        ("GET", "/api/documents/-5", None),
    ]
    for method, url, body in calls:
        r = c.request(method, url, json=body, headers=admin)
        assert r.status_code == 422, (method, url, r.status_code, r.text)
        assert r.json()["detail"][0]["msg"].startswith("Input should be"), r.text
    r = c.post("/api/collections", json={"name": "y", "group_ids": [huge]}, headers=admin)
    assert (r.status_code, r.json()) == (422, {"detail": f"Group {huge} not found"})
