"""ids never reused on SQLite

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

SQLite hands a table without AUTOINCREMENT the highest id + 1, so deleting the newest document (user, group,
conversation, ...) gave its id to the next one: an old citation or link to /documents/<id> showed a different
document. AUTOINCREMENT keeps the highest id ever used (sqlite_sequence). SQLite cannot add it to a table, so
each table is rebuilt (batch mode: copy, drop, rename; env.py turns foreign keys off meanwhile, or dropping a
parent table would delete its children). The copy seeds the sequence with the highest id in the table: an id
deleted before this upgrade from the top of a table can still come back once. PostgreSQL's sequences never
reuse an id: nothing to do there.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Every table with an integer id of its own (chunks has had AUTOINCREMENT since 0001: its ids are vector ids).
TABLES = ("collections", "groups", "users", "api_keys", "documents", "conversations", "messages")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    pass  # ids that are never reused harm no earlier revision
