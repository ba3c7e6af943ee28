"""Schema and migrations on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlmodel import select

from app.db import get_engine, migrate, session_scope
from app.models import Chunk, Collection, DocStatus, Document

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
