"""Schema and migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect
from sqlmodel import Session, select

from app.db import get_engine, migrate, session_scope
from app.models import ApiKey, Chunk, Collection, Conversation, DocStatus, Document, Group, Message, User

TABLES = {
    "users", "api_keys", "groups", "group_memberships", "collections", "collection_access",
    "documents", "document_texts", "chunks", "index_manifests", "alembic_version",
}  # fmt: skip


def test_migrations_create_every_table_and_are_idempotent(db_env):
    migrate()  # second run: a no-op at head
    assert TABLES <= set(inspect(get_engine()).get_table_names())


def test_deleted_chunk_ids_are_never_reused(db_env):
    # A tombstoned vector id must never name a new chunk (SQLite needs AUTOINCREMENT for this).
    with session_scope() as s:
        c = Collection(name="c")
        s.add(c)
        s.flush()
        d = Document(collection_id=c.id, filename="a.txt", sha256="0" * 64, status=DocStatus.ready)
        s.add(d)
        s.flush()
        row = Chunk(
            document_id=d.id, ordinal=0, text="x", heading_path=["H"], char_start=0, char_end=1, token_count=1
        )
        s.add(row)
        s.commit()
        first = row.id
        s.delete(row)
        s.commit()
        again = Chunk(
            document_id=d.id, ordinal=0, text="y", heading_path=[], char_start=0, char_end=1, token_count=1
        )
        s.add(again)
        s.commit()
        assert again.id > first
        assert s.exec(select(Chunk.heading_path).where(Chunk.id == again.id)).one() == []


def _add_rows(s) -> dict[str, object]:
    """One row of every table whose ids appear in URLs, citations or bookmarks, the newest of its table."""
    col = Collection(name=f"c{uuid.uuid4().hex[:6]}")
    user = User(name=f"u{uuid.uuid4().hex[:6]}")
    group = Group(name=f"g{uuid.uuid4().hex[:6]}")
    s.add_all([col, user, group])
    s.flush()
    key = ApiKey(user_id=user.id, key_hash=uuid.uuid4().hex, prefix="k")
    doc = Document(collection_id=col.id, filename="a.txt", sha256="0" * 64, status=DocStatus.ready)
    conv = Conversation(user_id=user.id, title="q")
    s.add_all([key, doc, conv])
    s.flush()
    msg = Message(conversation_id=conv.id, role="user", content="q")
    s.add(msg)
    s.commit()
    return {"collection": col, "user": user, "group": group, "key": key, "doc": doc, "conv": conv, "msg": msg}


_MODELS = {
    "collection": Collection, "user": User, "group": Group, "key": ApiKey, "doc": Document,
    "conv": Conversation, "msg": Message,
}  # fmt: skip


def test_deleted_ids_are_never_reused(db_env):
    # The newest document (conversation, user, ...) deleted: the next one must not take its id, or an old
    # link to /documents/<id> shows another document. SQLite reused it; PostgreSQL's sequences never do.
    with session_scope() as s:
        old = {name: row.id for name, row in _add_rows(s).items()}
        for name in ("msg", "conv", "doc", "key", "group", "user", "collection"):
            s.delete(s.get(_MODELS[name], old[name]))
            s.commit()
        new = {name: row.id for name, row in _add_rows(s).items()}
    assert {name: new[name] > old[name] for name in old} == dict.fromkeys(old, True), (old, new)


ROWS_BEFORE = {
    "collections": 1, "users": 1, "documents": 3, "document_texts": 3, "conversations": 1, "messages": 1,
    "feedback": 1,
}  # fmt: skip


def _insert_ready_document(conn, filename: str) -> None:
    """Collection 1 and its ready document 1 (``filename``), as raw rows an older schema revision holds."""
    conn.exec_driver_sql(
        "INSERT INTO collections (id, name, description, created_at) VALUES (1, 'c', '', '2026-01-01')"
    )
    conn.exec_driver_sql(
        "INSERT INTO documents (id, collection_id, filename, sha256, size_bytes, status, stage, progress,"
        " chunks_total, chunks_embedded, chunk_count, attempts, created_at, updated_at) VALUES"
        f" (1, 1, '{filename}', 'd', 1, 'ready', 'done', 1, 1, 1, 1, 0, '2026-01-01', '2026-01-01')"
    )


def test_upgrading_an_existing_sqlite_database_keeps_its_rows_and_stops_id_reuse(env):
    # A database made before ids were kept (revision 0002): the upgrade rebuilds its tables without losing a
    # row (with foreign keys on, dropping a table for the rebuild deleted its children) and then never
    # hands out a deleted id again.
    from alembic import command

    from app.db import alembic_config, dispose_engines

    url = f"sqlite:///{env / 'old.db'}"
    command.upgrade(alembic_config(url), "0002")
    eng = get_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO collections (id, name, description, created_at) VALUES (1, 'c', '', '2026-01-01')"
        )
        c.exec_driver_sql(
            "INSERT INTO users (id, name, role, created_at) VALUES (1, 'u', 'member', '2026-01-01')"
        )
        for i in (1, 2, 3):
            c.exec_driver_sql(
                "INSERT INTO documents (id, collection_id, filename, sha256, size_bytes, status, stage, progress,"
                " chunks_total, chunks_embedded, chunk_count, attempts, created_at, updated_at) VALUES"
                f" ({i}, 1, 'd{i}.txt', '{i}', 1, 'ready', 'done', 1, 0, 0, 0, 0, '2026-01-01', '2026-01-01')"
            )
            c.exec_driver_sql(f"INSERT INTO document_texts (document_id, text) VALUES ({i}, 'text {i}')")
        c.exec_driver_sql(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at)"
            " VALUES (1, 1, 't', '2026-01-01', '2026-01-01')"
        )
        c.exec_driver_sql(
            "INSERT INTO messages (id, conversation_id, role, content, created_at)"
            " VALUES (1, 1, 'user', 'q', '2026-01-01')"
        )
        c.exec_driver_sql(
            "INSERT INTO feedback (message_id, user_id, rating, comment, created_at)"
            " VALUES (1, 1, 'up', '', '2026-01-01')"
        )
    migrate(url)
    with eng.connect() as c:
        counts = {t: c.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ROWS_BEFORE}
        assert counts == ROWS_BEFORE
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on for the pooled connection
        assert {"ix_documents_collection_sha", "ix_documents_collection_id"} <= {
            ix["name"] for ix in inspect(c).get_indexes("documents")
        }
    with eng.begin() as c:
        c.exec_driver_sql("DELETE FROM documents WHERE id = 3")
        c.exec_driver_sql(
            "INSERT INTO documents (collection_id, filename, sha256, size_bytes, status, stage, progress,"
            " chunks_total, chunks_embedded, chunk_count, attempts, created_at, updated_at) VALUES"
            " (1, 'new.txt', 'n', 1, 'ready', 'done', 1, 0, 0, 0, 0, '2026-01-01', '2026-01-01')"
        )
        assert c.exec_driver_sql("SELECT id FROM documents WHERE filename = 'new.txt'").scalar() == 4
        # a foreign key still cascades after the rebuild
        c.exec_driver_sql("DELETE FROM collections WHERE id = 1")
        assert c.exec_driver_sql("SELECT count(*) FROM documents").scalar() == 0
    dispose_engines()


def test_upgrading_keeps_chunks_indexed_before_page_kinds_as_pages(env):
    # Revision 0004 adds what a chunk's page counts ("slide" for a presentation's); chunks already indexed keep
    # their page and have no kind, which citations read as a page, as before.
    from alembic import command

    from app.db import alembic_config, dispose_engines

    url = f"sqlite:///{env / 'old.db'}"
    command.upgrade(alembic_config(url), "0003")
    eng = get_engine(url)
    with eng.begin() as c:
        _insert_ready_document(c, "deck.pptx")
        c.exec_driver_sql(
            "INSERT INTO chunks (id, document_id, ordinal, text, heading_path, page, char_start, char_end,"
            " token_count) VALUES (7, 1, 0, 'Budget approved.', '[\"Budget\"]', 2, 0, 16, 3)"
        )
    migrate(url)
    with Session(eng) as s:
        row = s.get(Chunk, 7)
        assert (row.text, row.page, row.page_kind) == ("Budget approved.", 2, None)
        row.page_kind = "slide"
        s.commit()
        assert s.get(Chunk, 7).page_kind == "slide"
    dispose_engines()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upgrading_gives_documents_ingested_before_no_notices(env, dialect):
    # Revision 0005 adds a document's notices (what of its file was not read); documents already ingested have
    # none until they are ingested again, on SQLite as on PostgreSQL.
    from alembic import command

    from app.db import alembic_config, dispose_engines
    from tests.app.support import postgres_database

    url, drop = (f"sqlite:///{env / 'old.db'}", None) if dialect == "sqlite" else postgres_database()
    try:
        command.upgrade(alembic_config(url), "0004")
        eng = get_engine(url)
        with eng.begin() as c:
            _insert_ready_document(c, "scan.pdf")
        migrate(url)
        migrate(url)  # idempotent at head
        with Session(eng) as s:
            doc = s.get(Document, 1)
            assert (doc.filename, doc.status, doc.notices) == ("scan.pdf", "ready", [])
            doc.notices = ["Page 2 of 3 has no text layer (a scanned image?); its content is not searchable."]
            s.commit()
        with Session(eng) as s:
            assert s.get(Document, 1).notices == [
                "Page 2 of 3 has no text layer (a scanned image?); its content is not searchable."
            ]
    finally:
        dispose_engines()
        if drop is not None:
            drop()


def test_upgrading_gives_documents_failed_before_no_retryable(env):
    # Revision 0006 records whether a failed document may succeed on a retry; one that failed before has none
    # (the admin page offers Re-index for it, as before), and the column takes either answer afterwards.
    from alembic import command

    from app.db import alembic_config, dispose_engines

    url = f"sqlite:///{env / 'old.db'}"
    command.upgrade(alembic_config(url), "0005")
    eng = get_engine(url)
    with eng.begin() as c:
        _insert_ready_document(c, "cut.pdf")
        c.exec_driver_sql(
            "UPDATE documents SET status = 'failed', error = 'The PDF is damaged.' WHERE id = 1"
        )
    migrate(url)
    with Session(eng) as s:
        doc = s.get(Document, 1)
        assert (doc.status, doc.error, doc.retryable) == ("failed", "The PDF is damaged.", None)
        doc.retryable = False
        s.commit()
    with Session(eng) as s:
        assert s.get(Document, 1).retryable is False
    dispose_engines()
