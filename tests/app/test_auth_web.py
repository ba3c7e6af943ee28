"""Browser sign-in: argon2 hashes, cookies, CSRF, expiry, logout, rate limit, pages, key management."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from app.db import session_scope
from app.models import Role, User, WebSession
from app.sessions import login_limiter
from app.settings import settings
from tests.app.ask_support import ask_client
from tests.app.support import make_user

PASSWORD = "correct horse battery staple"


@pytest.fixture
def client(tmp_path, monkeypatch):
    login_limiter.reset()
    with ask_client(monkeypatch, tmp_path) as c:
        yield c
    login_limiter.reset()


def _signed_in(client, name="ada", role="member") -> dict:
    admin = make_user(Role.admin)
    r = client.post("/api/users", json={"name": name, "password": PASSWORD, "role": role}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def test_login_sets_cookies_and_csrf_guards_state_changes(client, monkeypatch):
    body = _signed_in(client)
    assert body["user"]["name"] == "ada" and body["user"]["role"] == "member"
    with session_scope() as s:
        assert s.exec(select(User).where(User.name == "ada")).one().password_hash.startswith("$argon2id$")
    cookies = client.cookies
    assert cookies["autoglm_csrf"] == body["csrf_token"]
    set_cookie = ",".join(v for k, v in client.post(
        "/api/auth/login", json={"username": "ada", "password": PASSWORD}).headers.multi_items() if k == "set-cookie")  # fmt: skip
    assert "autoglm_session=" in set_cookie and "HttpOnly" in set_cookie.split("autoglm_csrf")[0]
    assert "samesite=lax" in set_cookie.lower() and "Secure" not in set_cookie
    csrf = client.cookies["autoglm_csrf"]
    behind_tls = client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD},
                             headers={"X-Forwarded-Proto": "https"})  # fmt: skip
    # X-Forwarded-Proto counts only from a trusted proxy (AUTOGLM_TRUSTED_PROXIES).
    assert not any("Secure" in v for k, v in behind_tls.headers.multi_items() if k == "set-cookie")
    monkeypatch.setattr(settings, "trusted_proxies", "*")
    behind_tls = client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD},
                             headers={"X-Forwarded-Proto": "https"})  # fmt: skip
    assert all("Secure" in v for k, v in behind_tls.headers.multi_items() if k == "set-cookie")
    client.cookies.clear()
    client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD})
    csrf = client.cookies["autoglm_csrf"]

    me = client.get("/api/me")
    assert me.status_code == 200 and me.json()["name"] == "ada" and me.json()["groups"] == []
    # State-changing requests with the cookie need the CSRF header.
    r = client.post("/api/ask", json={"question": "hello"})
    assert (r.status_code, r.json()) == (403, {"detail": "CSRF token missing or invalid"})
    r = client.post("/api/ask", json={"question": "hello"}, headers={"X-CSRF-Token": "forged"})
    assert (r.status_code, r.json()) == (403, {"detail": "CSRF token missing or invalid"})
    r = client.post("/api/ask", json={"question": "hello"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["sources"] == [] and r.json()["extractive"] is True
    # A member is still a member: admin routes refuse, with nothing about what exists.
    r = client.post("/api/collections", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403

    assert client.post("/api/auth/logout").status_code == 403  # logout checks CSRF too
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert "autoglm_session" not in client.cookies
    assert client.get("/api/me").json() == {"detail": "Not authenticated"}


def test_sign_in_before_anyone_has_a_password_says_how_to_create_the_first_admin(client):
    # A fresh install answered "Invalid username or password" to everything, and a newcomer guessed.
    make_user(Role.admin)  # a key only (create-admin without --password): still no one can sign in
    detail = (
        "No user has a password yet: create the first administrator on the server with "
        ".venv/bin/autoglm create-admin --password, then sign in as admin."
    )
    for name in ("admin", "nobody"):
        r = client.post("/api/auth/login", json={"username": name, "password": "admin"})
        assert (r.status_code, r.json()) == (401, {"detail": detail})
    _signed_in(client, "bob")  # once someone can, a failure says no more than before
    r = client.post("/api/auth/login", json={"username": "admin", "password": "admin"})
    assert (r.status_code, r.json()) == (401, {"detail": "Invalid username or password"})


def test_wrong_password_expired_session_and_rate_limit(client):
    _signed_in(client, "bob")
    for name, pw in (("bob", "wrong password"), ("nobody", PASSWORD)):
        r = client.post("/api/auth/login", json={"username": name, "password": pw})
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid username or password"})

    with session_scope() as s:
        for row in s.exec(select(WebSession)).all():
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            s.add(row)
        s.commit()
    r = client.get("/api/me")
    assert (r.status_code, r.json()) == (401, {"detail": "Session expired"})
    with session_scope() as s:
        assert s.exec(select(WebSession)).all() == []  # the expired row is gone

    for _ in range(3):  # bob's 1 failure above + these + the next = 5 of bob from this address: the limit
        client.post("/api/auth/login", json={"username": "bob", "password": "nope"})
    r = client.post("/api/auth/login", json={"username": "bob", "password": "nope"})
    assert r.status_code == 401
    r = client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.json() == {"detail": "Too many failed sign-ins; try again later"}


def _login(client, name: str, password: str, address: str) -> int:
    r = client.post("/api/auth/login", json={"username": name, "password": password},
                    headers={"X-Forwarded-For": address})  # fmt: skip
    return r.status_code


def test_one_persons_failed_sign_ins_do_not_lock_out_others_at_the_same_address(client, monkeypatch):
    # An office behind one NAT: everyone signs in from the same address. Five wrong passwords of carl's
    # locked out dora (and everyone else there) for five minutes; now they lock out carl, from there only.
    monkeypatch.setattr(settings, "trusted_proxies", "*")
    for name in ("carl", "dora"):
        _signed_in(client, name)
    office, home = "198.51.100.20", "203.0.113.9"
    assert [_login(client, "carl", "wrong password", office) for _ in range(5)] == [401] * 5
    assert _login(client, "carl", PASSWORD, office) == 429
    assert _login(client, "dora", PASSWORD, office) == 200
    assert _login(client, "carl", PASSWORD, home) == 200


def test_sign_in_ceilings_per_address_and_per_account(client, monkeypatch):
    monkeypatch.setattr(settings, "trusted_proxies", "*")
    monkeypatch.setattr(settings, "login_max_failures_per_address", 6)
    monkeypatch.setattr(settings, "login_max_failures_per_account", 4)
    _signed_in(client, "erin")
    # Spraying: one guess at each of many names from one address; the address's ceiling stops it, for every name.
    spray = "192.0.2.50"
    assert [_login(client, f"name{i}", "Winter2026!", spray) for i in range(6)] == [401] * 6
    assert _login(client, "erin", PASSWORD, spray) == 429
    # Guessing one name from many addresses: the name's ceiling stops it wherever the next guess comes from.
    assert [_login(client, "erin", "wrong password", f"192.0.2.{i}") for i in range(4)] == [401] * 4
    assert _login(client, "erin", "wrong password", "192.0.2.99") == 429
    # Below both ceilings a name at another address is unaffected.
    monkeypatch.setattr(settings, "login_max_failures_per_account", 100)
    assert _login(client, "erin", PASSWORD, "192.0.2.99") == 200


def test_pages_redirect_until_signed_in(client):
    for path in ("/", "/admin"):
        r = client.get(path, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert client.get("/login").headers["content-type"].startswith("text/html")
    _signed_in(client, "eve")
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert client.get("/static/api.js").status_code == 200


def test_favicon_is_served_and_every_page_links_it(client):
    # Browsers ask for /favicon.ico on every visit; it was a 404 in the console of every page.
    r = client.get("/favicon.ico")
    assert (r.status_code, r.headers["content-type"]) == (200, "image/x-icon")
    reserved, kind, count = struct.unpack("<HHH", r.content[:6])
    sizes = [struct.unpack("<BB", r.content[6 + 16 * i : 8 + 16 * i]) for i in range(count)]
    assert (reserved, kind, sizes) == (0, 1, [(16, 16), (32, 32)])  # an icon file with 16 and 32 px images
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg ")
    _signed_in(client, "ivy")
    for page in ("/login", "/", "/admin"):
        html = client.get(page).text
        assert '<link rel="icon" href="/favicon.ico"' in html and 'href="/static/favicon.svg"' in html, page


def test_api_keys_are_shown_once_and_revocable(client):
    admin = make_user(Role.admin)
    r = client.post("/api/keys", json={"name": "ci"}, headers=admin)
    assert r.status_code == 201, r.text
    key = r.json()
    tool = {"Authorization": f"Bearer {key['key']}"}
    assert client.get("/api/me", headers=tool).status_code == 200
    listed = client.get("/api/keys", headers=admin).json()
    assert [k["name"] for k in listed] == ["", "ci"] and all("key" not in k for k in listed)
    assert listed[1]["prefix"] == key["key"][:12]
    assert client.delete(f"/api/keys/{key['id']}", headers=admin).status_code == 204
    assert client.get("/api/me", headers=tool).json() == {"detail": "Invalid API key"}
    member = make_user(Role.member)
    assert client.post("/api/keys", json={"name": "x"}, headers=member).status_code == 403
