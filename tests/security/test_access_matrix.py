"""Access control matrix: every route of the app (enumerated from `app.routes`, so a new route without an
entry here fails) x anonymous / member without access / member with access / admin, with API keys and with
browser sessions (cookie + CSRF). Each call must get its expected status, a refusal must be a plain error
body, and a caller without access must never see the collection's title, description, document names,
passages or its conversation, in any response (markers seeded below are searched in every body)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.db import session_scope
from app.models import Chunk, Message, Role
from ingest.pipeline import process_document
from tests.app.support import make_user

A, OUT, M, D = "anonymous", "outsider", "member", "admin"
ROLES = (A, OUT, M, D)
PASSWORD = "correct horse battery staple"
# Unique strings of the protected collection (seen by member and admin only) ...
COLLECTION = "Zircon-Vault-7f3a"
DESCRIPTION = "desc-Quokka-91c2"
FILENAME = "Aardvark-Ledger-5e1b.md"
TITLE = "Title-Narwhal-22d8"
SNIPPET = "snippet-Okapi-6a4f"
# ... and of the member's conversation (seen by the member only, not even by admins).
QUESTION = "question-Pangolin-0b7e"
COLLECTION_MARKERS = (COLLECTION, DESCRIPTION, FILENAME, TITLE, SNIPPET)
DOC = f"""# {TITLE}

The {SNIPPET} ledger records the vault inventory. Every {SNIPPET} entry is audited each quarter.
""".encode()


@dataclass
class World:
    """Ids of the seeded objects, the callers' credentials and factories for objects a call may destroy."""

    app: object
    root: dict[str, str]  # the bootstrap admin's key header (used to seed, never a matrix caller)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    collection: int = 0
    group: int = 0
    document: int = 0
    chunk: int = 0
    conversation: int = 0
    message: int = 0
    admin_key_id: int = 0

    def seed_client(self) -> TestClient:
        return TestClient(self.app)

    def upload(self, collection: int, ready: bool) -> int:
        c = self.seed_client()
        name = f"scratch-{uuid.uuid4().hex[:8]}.md"
        body = f"# Scratch\n\nA scratch note {uuid.uuid4().hex} about nothing in particular.\n".encode()
        r = c.post(
            f"/api/collections/{collection}/documents", files=[("files", (name, body))], headers=self.root
        )
        assert r.status_code == 202, r.text
        doc_id = r.json()["documents"][0]["id"]
        if ready:
            assert process_document(doc_id) == "ready"
        return doc_id

    def scratch_collection(self) -> int:
        r = self.seed_client().post("/api/collections", json={"name": f"scratch-{uuid.uuid4().hex[:8]}"},
                                    headers=self.root)  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def scratch_key(self) -> int:
        r = self.seed_client().post("/api/keys", json={"name": "scratch"}, headers=self.keys[D])
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def scratch_group(self) -> int:
        r = self.seed_client().post("/api/groups", json={"name": f"scratch-{uuid.uuid4().hex[:8]}"},
                                    headers=self.root)  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def scratch_user(self) -> int:
        r = self.seed_client().post("/api/users", json={"name": f"scratch-{uuid.uuid4().hex[:8]}"},
                                    headers=self.root)  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def scratch_conversation(self) -> int:
        r = self.seed_client().post("/api/ask", json={"question": "scratch question"}, headers=self.keys[M])
        assert r.status_code == 200, r.text
        return r.json()["conversation_id"]


def build_world(app) -> World:
    w = World(app=app, root=make_user(Role.admin))
    c = w.seed_client()
    r = c.post("/api/groups", json={"name": "vault-readers"}, headers=w.root)
    assert r.status_code == 201, r.text
    w.group = r.json()["id"]
    for role, user_role, groups in ((OUT, "member", []), (M, "member", [w.group]), (D, "admin", [])):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        r = c.post("/api/users", json={"name": name, "role": user_role, "group_ids": groups, "password": PASSWORD},
                   headers=w.root)  # fmt: skip
        assert r.status_code == 201, r.text
        w.keys[role] = {"Authorization": f"Bearer {r.json()['api_key']}"}
        w.user_ids[role], w.names[role] = r.json()["id"], name
    w.keys[A] = {}
    r = c.post("/api/collections", json={"name": COLLECTION, "description": DESCRIPTION, "group_ids": [w.group]},
               headers=w.root)  # fmt: skip
    assert r.status_code == 201, r.text
    w.collection = r.json()["id"]
    r = c.post(
        f"/api/collections/{w.collection}/documents", files=[("files", (FILENAME, DOC))], headers=w.root
    )
    assert r.status_code == 202, r.text
    w.document = r.json()["documents"][0]["id"]
    assert process_document(w.document) == "ready"
    with session_scope() as s:
        w.chunk = s.exec(select(Chunk.id).where(Chunk.document_id == w.document)).first()
    r = c.post("/api/ask", json={"question": f"{QUESTION}: what does the {SNIPPET} ledger record?",
                                 "collection_ids": [w.collection]}, headers=w.keys[M])  # fmt: skip
    assert r.status_code == 200 and SNIPPET in r.text, r.text
    w.conversation, w.message = r.json()["conversation_id"], r.json()["message_id"]
    with session_scope() as s:
        assert s.get(Message, w.message).role == "assistant"
    r = c.get("/api/keys", headers=w.keys[D])
    w.admin_key_id = r.json()[0]["id"]
    return w


# --- the matrix ------------------------------------------------------------------------------------
Req = Callable[[World, str], dict]


@dataclass
class Entry:
    """Expected status per role (anonymous, outsider, member, admin) for API keys; `session` where
    browser sessions differ. `req(world, role)` gives url/json/files; `fresh` = on a client of its own
    (sign-in and sign-out must not replace the caller's cookies)."""

    expect: tuple[int, int, int, int]
    req: Req
    session: tuple[int, int, int, int] | None = None
    fresh: bool = False


def _url(url: str, **extra) -> Req:
    return lambda w, role: {"url": url.format(w=w), **extra}


def _admin_scratch(url: str, make: Callable[[World], int], real: Callable[[World], int]) -> Req:
    """Admins act on a scratch object (the call destroys it); everyone else on the real one."""
    return lambda w, role: {"url": url.format(make(w) if role == D else real(w))}


def _member_scratch(url: str) -> Req:
    return lambda w, role: {"url": url.format(w.scratch_conversation() if role == M else w.conversation)}


def _upload(w: World, role: str) -> dict:
    body = f"Upload {uuid.uuid4().hex} for the matrix.".encode()
    return {"url": f"/api/collections/{w.collection}/documents", "files": [("files", ("m.txt", body))]}


def _login(w: World, role: str) -> dict:
    creds = {"username": w.names[role], "password": PASSWORD} if role != A else {
        "username": "nobody", "password": "wrong password"}  # fmt: skip
    return {"url": "/api/auth/login", "json": creds}


RAG = {"model": f"rag:{COLLECTION}", "messages": [{"role": "user", "content": f"What is the {SNIPPET}?"}]}
PAGE = (303, 303, 303, 303)
SIGNED_IN_PAGE = (303, 200, 200, 200)
OPEN = (200, 200, 200, 200)
ADMIN = (401, 403, 403)

MATRIX: dict[tuple[str, str], Entry] = {
    ("GET", "/openapi.json"): Entry(OPEN, _url("/openapi.json")),
    ("GET", "/docs"): Entry(OPEN, _url("/docs")),
    ("GET", "/docs/oauth2-redirect"): Entry(OPEN, _url("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Entry(OPEN, _url("/redoc")),
    ("GET", "/static"): Entry(OPEN, _url("/static/admin.js")),
    ("GET", "/api/health"): Entry(OPEN, _url("/api/health")),
    ("GET", "/healthz"): Entry(OPEN, _url("/healthz")),
    ("GET", "/readyz"): Entry(OPEN, _url("/readyz")),
    ("GET", "/metrics"): Entry(OPEN, _url("/metrics")),
    ("GET", "/login"): Entry(OPEN, _url("/login")),
    ("GET", "/favicon.ico"): Entry(OPEN, _url("/favicon.ico")),
    ("GET", "/"): Entry(PAGE, _url("/"), session=SIGNED_IN_PAGE),
    ("GET", "/admin"): Entry(PAGE, _url("/admin"), session=SIGNED_IN_PAGE),
    ("POST", "/api/auth/login"): Entry((401, 200, 200, 200), _login, fresh=True),
    ("POST", "/api/auth/logout"): Entry((204, 204, 204, 204), _url("/api/auth/logout"), fresh=True),
    ("GET", "/api/me"): Entry((401, 200, 200, 200), _url("/api/me")),
    ("PUT", "/api/me/password"): Entry(  # the same password again: the callers keep signing in with it
        (401, 204, 204, 204),
        _url("/api/me/password", json={"current_password": PASSWORD, "password": PASSWORD}),
    ),
    ("POST", "/api/collections"): Entry(
        (*ADMIN, 201), lambda w, r: {"url": "/api/collections", "json": {"name": f"c-{uuid.uuid4().hex[:8]}"}}
    ),
    ("GET", "/api/collections"): Entry((401, 200, 200, 200), _url("/api/collections")),
    ("PUT", "/api/collections/{collection_id}/groups"): Entry(
        (*ADMIN, 200),
        lambda w, r: {"url": f"/api/collections/{w.collection}/groups", "json": {"group_ids": [w.group]}},
    ),
    ("GET", "/api/collections/{collection_id}/documents"): Entry(
        (401, 404, 200, 200), _url("/api/collections/{w.collection}/documents")
    ),
    ("POST", "/api/collections/{collection_id}/documents"): Entry((*ADMIN, 202), _upload),
    ("DELETE", "/api/collections/{collection_id}"): Entry(
        (*ADMIN, 204), _admin_scratch("/api/collections/{}", World.scratch_collection, lambda w: w.collection)
    ),
    ("GET", "/api/documents/{document_id}"): Entry((401, 404, 200, 200), _url("/api/documents/{w.document}")),
    ("GET", "/api/documents/{document_id}/text"): Entry(
        (401, 404, 200, 200), _url("/api/documents/{w.document}/text")
    ),
    ("DELETE", "/api/documents/{document_id}"): Entry(
        (*ADMIN, 204),
        _admin_scratch(
            "/api/documents/{}", lambda w: w.upload(w.collection, ready=False), lambda w: w.document
        ),
    ),
    ("POST", "/api/documents/{document_id}/reindex"): Entry(
        (*ADMIN, 202),
        _admin_scratch(
            "/api/documents/{}/reindex", lambda w: w.upload(w.collection, ready=True), lambda w: w.document
        ),
    ),
    ("POST", "/api/documents/{document_id}/cancel"): Entry(
        (*ADMIN, 200),
        _admin_scratch(
            "/api/documents/{}/cancel", lambda w: w.upload(w.collection, ready=False), lambda w: w.document
        ),
    ),
    ("GET", "/api/chunks/{chunk_id}/preview"): Entry(
        (401, 404, 200, 200), _url("/api/chunks/{w.chunk}/preview")
    ),
    ("POST", "/api/search"): Entry(
        (401, 404, 200, 200),
        lambda w, r: {
            "url": "/api/search",
            "json": {"query": f"{SNIPPET} ledger", "collection_ids": [w.collection]},
        },
    ),
    ("POST", "/api/ask"): Entry(
        (401, 404, 200, 200),
        lambda w, r: {
            "url": "/api/ask",
            "json": {"question": f"What is the {SNIPPET} ledger?", "collection_ids": [w.collection]},
        },  # fmt: skip
    ),
    ("GET", "/v1/models"): Entry((401, 200, 200, 200), _url("/v1/models")),
    ("GET", "/v1/models/{model_id:path}"): Entry((401, 404, 200, 200), _url(f"/v1/models/rag:{COLLECTION}")),
    ("POST", "/v1/embeddings"): Entry(
        (401, 200, 200, 200), _url("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hello"})
    ),
    ("POST", "/v1/chat/completions"): Entry((401, 404, 200, 200), _url("/v1/chat/completions", json=RAG)),
    ("POST", "/v1/completions"): Entry(
        (401, 404, 200, 200),
        _url("/v1/completions", json={"model": RAG["model"], "prompt": f"What is the {SNIPPET}?"}),
    ),
    ("GET", "/api/conversations"): Entry((401, 200, 200, 200), _url("/api/conversations")),
    ("GET", "/api/conversations/{conversation_id}"): Entry(
        (401, 404, 200, 404), _url("/api/conversations/{w.conversation}")
    ),
    ("DELETE", "/api/conversations/{conversation_id}"): Entry(
        (401, 404, 204, 404), _member_scratch("/api/conversations/{}")
    ),
    ("POST", "/api/messages/{message_id}/feedback"): Entry(
        (401, 404, 200, 404), _url("/api/messages/{w.message}/feedback", json={"rating": "up"})
    ),
    ("POST", "/api/groups"): Entry(
        (*ADMIN, 201), lambda w, r: {"url": "/api/groups", "json": {"name": f"g-{uuid.uuid4().hex[:8]}"}}
    ),
    ("GET", "/api/groups"): Entry((*ADMIN, 200), _url("/api/groups")),
    ("DELETE", "/api/groups/{group_id}"): Entry(
        (*ADMIN, 204), _admin_scratch("/api/groups/{}", World.scratch_group, lambda w: w.group)
    ),
    ("PUT", "/api/groups/{group_id}/members"): Entry(
        (*ADMIN, 200),
        lambda w, r: {"url": f"/api/groups/{w.group}/members", "json": {"user_ids": [w.user_ids[M]]}},
    ),
    ("POST", "/api/users"): Entry(
        (*ADMIN, 201), lambda w, r: {"url": "/api/users", "json": {"name": f"u-{uuid.uuid4().hex[:8]}"}}
    ),
    ("GET", "/api/users"): Entry((*ADMIN, 200), _url("/api/users")),
    ("PUT", "/api/users/{user_id}/password"): Entry(
        (*ADMIN, 204),
        lambda w, r: {
            "url": f"/api/users/{w.scratch_user() if r == D else w.user_ids[M]}/password",
            "json": {"password": "a new long password"},
        },
    ),
    ("DELETE", "/api/users/{user_id}"): Entry(
        (*ADMIN, 204), _admin_scratch("/api/users/{}", World.scratch_user, lambda w: w.user_ids[M])
    ),
    ("GET", "/api/keys"): Entry((*ADMIN, 200), _url("/api/keys")),
    ("POST", "/api/keys"): Entry((*ADMIN, 201), _url("/api/keys", json={"name": "matrix"})),
    ("DELETE", "/api/keys/{key_id}"): Entry(
        (*ADMIN, 204), _admin_scratch("/api/keys/{}", World.scratch_key, lambda w: w.admin_key_id)
    ),
}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path template) of every route and mount, through included routers (HEAD left out)."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.165: routers stay nested

        routes = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = list(app.routes)
    out = set()
    for r in routes:
        methods = getattr(r, "methods", None) or {"GET"}  # a mount (static files) answers GET
        out |= {(m, r.path) for m in methods if m != "HEAD"}
    return out


class Callers:
    """Clients per role for one auth kind: API-key headers, or a signed-in cookie jar plus CSRF header."""

    def __init__(self, w: World, kind: str) -> None:
        self.w, self.kind = w, kind
        self.clients = {role: self._client(role) for role in ROLES}

    def _client(self, role: str) -> TestClient:
        c = TestClient(self.w.app, follow_redirects=False)
        if self.kind == "key":
            c.headers.update(self.w.keys[role])
        elif role != A:
            r = c.post("/api/auth/login", json={"username": self.w.names[role], "password": PASSWORD})
            assert r.status_code == 200, r.text
            c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def call(self, method: str, role: str, entry: Entry):
        req = entry.req(self.w, role)
        client = self._client(role) if entry.fresh else self.clients[role]
        return client.request(method, req.pop("url"), **req)


def _forbidden_markers(role: str) -> tuple[str, ...]:
    collection = COLLECTION_MARKERS if role in (A, OUT) else ()
    return (*collection, QUESTION) if role != M else collection


def _check_body(role: str, path: str, r) -> None:
    text = r.text
    leaked = [m for m in _forbidden_markers(role) if m in text]
    if path.startswith("/v1/") and leaked == [COLLECTION] and r.status_code == 404:
        # The refusal names the model the caller asked for, worded as for one that does not exist.
        assert (
            r.json()["error"]["message"]
            == f"The model `rag:{COLLECTION}` does not exist or you do not have access to it."
        )
        leaked = [m for m in _forbidden_markers(role) if m in text.replace(f"`rag:{COLLECTION}`", "")]
    assert not leaked, (role, path, r.status_code, text[:500])
    if r.status_code >= 400:
        assert set(r.json()) in ({"detail"}, {"error"}), (role, path, text[:500])


@pytest.mark.parametrize("kind", ["key", "session"])
def test_every_route_for_every_role(app_client, kind):
    client = app_client()
    w = build_world(client.app)
    routes = app_routes(client.app)
    missing = sorted(routes - set(MATRIX))
    assert not missing, f"routes without an access-matrix entry (add them to MATRIX): {missing}"
    callers = Callers(w, kind)
    failures = []
    calls = 0
    for (method, path), entry in sorted(MATRIX.items()):
        if (method, path) not in routes:
            continue
        expected = entry.session if kind == "session" and entry.session else entry.expect
        for role, want in zip(ROLES, expected, strict=True):
            r = callers.call(method, role, entry)
            calls += 1
            if r.status_code != want:
                failures.append(f"{method} {path} as {role}: {r.status_code} (want {want}) {r.text[:200]}")
                continue
            _check_body(role, path, r)
    assert not failures, "\n".join(failures)
    assert calls == 4 * len(routes)
    # The denied calls destroyed nothing: the member still reads the collection, its document and passage.
    member = callers.clients[M]
    assert member.get(f"/api/documents/{w.document}").status_code == 200
    assert member.get(f"/api/chunks/{w.chunk}/preview").json()["text"].count(SNIPPET) >= 1
    assert member.get(f"/api/conversations/{w.conversation}").status_code == 200
