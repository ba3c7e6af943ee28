"""index manifest embedding space

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

The embedding space a collection's vectors were made in (model, its files' digest, dimensions, document
prompt), recorded by every writer that commits a segment: a writer or a search with another model sees the
difference instead of mixing vectors of two models (or failing on their dimensions). Collections indexed before
this revision have none (null) until their next write.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("index_manifests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedding", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("index_manifests", schema=None) as batch_op:
        batch_op.drop_column("embedding")
