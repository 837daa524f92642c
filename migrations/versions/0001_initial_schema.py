"""Initial schema: webhook events, archive items, their history, transcript segments.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "archive_items",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("provider_id", sa.String(128), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("failed_state", sa.String(32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("due_at"),
        _ts("enqueued_at"),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        _ts("lease_expires_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("s3_bucket", sa.String(255), nullable=True),
        sa.Column("s3_key", sa.String(1024), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("s3_checksum", sa.String(128), nullable=True),
        sa.Column("content_type", sa.String(128), nullable=True),
        _ts("provider_started_at"),
        _ts("provider_completed_at"),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("archived_at"),
        _ts("deletion_requested_at"),
        sa.Column("deletion_requests", sa.Integer(), nullable=False),
        _ts("purge_due_at"),
        _ts("purged_at"),
        sa.PrimaryKeyConstraint("id", name="pk_archive_items"),
        sa.UniqueConstraint(
            "provider", "account_id", "kind", "provider_id", name="uq_archive_items_artifact"
        ),
    )
    op.create_index("ix_archive_items_call_id", "archive_items", ["call_id"])
    op.create_index("ix_archive_items_state_due", "archive_items", ["state", "due_at"])

    op.create_table(
        "item_history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("item_id", Id, nullable=False),
        _ts("at", nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["archive_items.id"],
            name="fk_item_history_item_id_archive_items",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_item_history"),
    )
    op.create_index("ix_item_history_item_id", "item_history", ["item_id"])

    op.create_table(
        "transcript_segments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("item_id", Id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("track", sa.String(32), nullable=True),
        sa.Column("speaker", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("start_seconds", sa.Float(), nullable=True),
        sa.Column("end_seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["archive_items.id"],
            name="fk_transcript_segments_item_id_archive_items",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_transcript_segments"),
        sa.UniqueConstraint("item_id", "position", name="uq_transcript_segments_item_position"),
    )
    op.create_index("ix_transcript_segments_item_id", "transcript_segments", ["item_id"])

    op.create_table(
        "webhook_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        _ts("received_at", nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("item_id", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"], ["archive_items.id"], name="fk_webhook_events_item_id_archive_items"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_events"),
        sa.UniqueConstraint("dedupe_key", name="uq_webhook_events_dedupe_key"),
    )
    op.create_index("ix_webhook_events_item_id", "webhook_events", ["item_id"])


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("transcript_segments")
    op.drop_table("item_history")
    op.drop_table("archive_items")
