"""document notices

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

What of a ready document's file could not be read (scanned pages of a PDF, spreadsheet formulas without saved
values, an attachment that could not be opened), a short sentence each, shown beside its status. Documents
ingested before this revision have none ('[]') until they are ingested again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notices", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_column("notices")
