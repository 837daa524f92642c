"""Backfill runs: parameters, progress, checkpoint, reported windows; items' re-send counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "backfill_runs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("params_key", sa.String(64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("windows_done", sa.Integer(), nullable=False),
        sa.Column("list_requests", sa.Integer(), nullable=False),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.Column("enqueued", sa.Integer(), nullable=False),
        sa.Column("skipped_known", sa.Integer(), nullable=False),
        sa.Column("truncated_windows", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_backfill_runs"),
        sa.UniqueConstraint("params_key", name="uq_backfill_runs_params_key"),
    )
    with op.batch_alter_table("archive_items") as batch:
        batch.add_column(sa.Column("backfill_run_id", Id, nullable=True))
        batch.add_column(sa.Column("resends", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_archive_items_backfill_run_id", ["backfill_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("archive_items") as batch:
        batch.drop_index("ix_archive_items_backfill_run_id")
        batch.drop_column("resends")
        batch.drop_column("backfill_run_id")
    op.drop_table("backfill_runs")
