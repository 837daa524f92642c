"""Recordings: every archived object in its own row, partial recordings, transcription sub-state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "archived_objects",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("item_id", Id, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("s3_bucket", sa.String(255), nullable=False),
        sa.Column("s3_key", sa.String(1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("s3_checksum", sa.String(128), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["archive_items.id"],
            name="fk_archived_objects_item_id_archive_items",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_archived_objects"),
        sa.UniqueConstraint("item_id", "role", name="uq_archived_objects_item_role"),
    )
    op.create_index("ix_archived_objects_item_id", "archived_objects", ["item_id"])
    with op.batch_alter_table("archive_items") as batch:
        batch.add_column(sa.Column("partial", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("transcription_state", sa.String(32), nullable=True))
        batch.add_column(sa.Column("transcription_outcome", sa.Text(), nullable=True))
        batch.add_column(sa.Column("transcription_deadline", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deletion_scope", sa.String(32), nullable=True))
    with op.batch_alter_table("transcript_segments") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="track"))
    # Real-time transcriptions archived before this revision: their one object gets its row.
    op.execute(
        """
        INSERT INTO archived_objects (item_id, role, s3_bucket, s3_key, size_bytes, sha256, s3_checksum,
                                      content_type, stored_at)
        SELECT id, 'transcription', s3_bucket, s3_key, size_bytes, sha256, s3_checksum, content_type,
               archived_at
        FROM archive_items
        WHERE archived_at IS NOT NULL AND s3_key IS NOT NULL AND sha256 IS NOT NULL
          AND s3_checksum IS NOT NULL
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("transcript_segments") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("archive_items") as batch:
        batch.drop_column("deletion_scope")
        batch.drop_column("transcription_deadline")
        batch.drop_column("transcription_outcome")
        batch.drop_column("transcription_state")
        batch.drop_column("partial")
    op.drop_table("archived_objects")
