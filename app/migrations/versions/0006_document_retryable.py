"""document retryable

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Whether a failed document may succeed if processed again (its worker stopped, timed out or ran out of memory:
re-index it) or not (its file is damaged, cut short, encrypted or of an unsupported type: replace the file).
Documents that failed before this revision have none (null), as have documents that did not fail.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retryable", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_column("retryable")
