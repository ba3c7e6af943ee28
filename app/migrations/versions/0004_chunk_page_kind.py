"""chunk page kind

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

What a chunk's page number counts ("page", "slide"), so a presentation's passage is cited as "slide 3", not
"p. 3". Nullable: chunks indexed before this revision keep None, which reads as a page, as they were cited.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chunks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("page_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("chunks", schema=None) as batch_op:
        batch_op.drop_column("page_kind")
