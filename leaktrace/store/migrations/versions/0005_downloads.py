"""Downloads: the bytes each client obtained (access_records.sent_spans), and used single-use links.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_records") as batch:
        batch.add_column(sa.Column("sent_spans", sa.JSON(), nullable=True))
        batch.create_index("ix_access_records_file_tag", ["file_id", "tag"])
    op.create_table(
        "consumed_links",
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index("ix_consumed_links_expires_at", "consumed_links", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_consumed_links_expires_at", table_name="consumed_links")
    op.drop_table("consumed_links")
    with op.batch_alter_table("access_records") as batch:
        batch.drop_index("ix_access_records_file_tag")
        batch.drop_column("sent_spans")
