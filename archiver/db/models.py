"""The archive's tables.

* ``webhook_events``: every webhook the intake accepted, raw, deduplicated.
* ``archive_items``: one row per provider artifact; its state machine, due time and lease.
* ``item_history``: every state change of an item, for operators and audits.
* ``transcript_segments``: the archived text itself, queryable without reading S3.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

from archiver.db.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Provider(enum.StrEnum):
    BANDWIDTH = "bandwidth"
    TWILIO = "twilio"


class ArtifactKind(enum.StrEnum):
    REALTIME_TRANSCRIPTION = "realtime_transcription"
    RECORDING = "recording"
    TRANSCRIPT = "transcript"  # a Twilio Conversational Intelligence transcript


class TranscriptionState(enum.StrEnum):
    """A recording's transcription, which must be settled before the recording may be deleted."""

    NONE = "none"  # none exists and none was requested
    EXPECTED = "expected"  # processing (or requested): wait for transcriptionAvailable
    AVAILABLE = "available"  # announced: archive it
    ARCHIVED = "archived"
    UNAVAILABLE = "unavailable"  # the provider reported a failure status; see transcription_outcome


class ItemState(enum.StrEnum):
    """Where an item is. Each active state names the next step; the item's ``due_at`` says when."""

    PENDING = "pending"  # next: archive (fetch, store, verify, commit)
    AWAITING_TRANSCRIPTION = "awaiting_transcription"  # media archived; next: archive the transcription
    ARCHIVED = "archived"  # next: request deletion (unless the policy keeps it at the provider)
    DELETION_REQUESTED = "deletion_requested"  # next: confirm the purge after purge_due_at
    PURGED = "purged"  # done
    REJECTED = "rejected"  # the provider reported no artifact to fetch; done
    DEAD = "dead"  # dead-lettered: needs an operator; ``failed_state`` says where it stopped


ACTIVE_STATES = (
    ItemState.PENDING,
    ItemState.AWAITING_TRANSCRIPTION,
    ItemState.ARCHIVED,
    ItemState.DELETION_REQUESTED,
)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    account_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("archive_items.id"), index=True)


class ArchiveItem(Base):
    __tablename__ = "archive_items"
    __table_args__ = (
        UniqueConstraint("provider", "account_id", "kind", "provider_id", name="uq_archive_items_artifact"),
        Index("ix_archive_items_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[str] = mapped_column(String(128))
    call_id: Mapped[str | None] = mapped_column(String(128), index=True)

    state: Mapped[str] = mapped_column(String(32))
    failed_state: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)

    s3_bucket: Mapped[str | None] = mapped_column(String(255))
    s3_key: Mapped[str | None] = mapped_column(String(1024))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    s3_checksum: Mapped[str | None] = mapped_column(String(128))
    content_type: Mapped[str | None] = mapped_column(String(128))

    provider_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deletion_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deletion_requests: Mapped[int] = mapped_column(Integer, default=0)
    purge_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: What was deleted at the provider: "recording", "media" or "transcription".
    deletion_scope: Mapped[str | None] = mapped_column(String(32))

    partial: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    transcription_state: Mapped[str | None] = mapped_column(String(32))
    transcription_outcome: Mapped[str | None] = mapped_column(Text)
    transcription_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The backfill run that found this artifact (None: a webhook announced it).
    backfill_run_id: Mapped[int | None] = mapped_column(Id, index=True)
    #: Messages the sweeper re-sent since the last claim; each waits twice as long as the one
    #: before, so a long backlog is not flooded with duplicates.
    resends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def ref(self) -> str:
        """A human-readable name for logs and Flower: provider/kind/id."""
        return self.ref_of(self.provider, self.kind, self.provider_id)

    @staticmethod
    def ref_of(provider: str, kind: str, provider_id: str) -> str:
        """:attr:`ref` of an item known only by its columns (a row inserted without the ORM)."""
        return f"{provider}/{kind}/{provider_id}"


class ItemHistory(Base):
    __tablename__ = "item_history"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("archive_items.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class ArchivedObject(Base):
    """One verified object in S3 belonging to an item (a recording has metadata, media and
    transcription). The deletion step re-verifies every one of them."""

    __tablename__ = "archived_objects"
    __table_args__ = (UniqueConstraint("item_id", "role", name="uq_archived_objects_item_role"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("archive_items.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    s3_bucket: Mapped[str] = mapped_column(String(255))
    s3_key: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    s3_checksum: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str | None] = mapped_column(String(128))
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TranscriptSegment(Base):
    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_transcript_segments_item_position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("archive_items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    #: "track" (a real-time track), "transcript" (a recording channel's whole text) or "clip".
    kind: Mapped[str] = mapped_column(String(16), default="track", server_default="track")
    track: Mapped[str | None] = mapped_column(String(32))
    speaker: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    start_seconds: Mapped[float | None] = mapped_column(Float)
    end_seconds: Mapped[float | None] = mapped_column(Float)


class BackfillState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FAILED = "failed"  # a permanent error; last_error says which
    DONE = "done"


class BackfillRun(Base):
    """A manually started sweep of what a provider still holds. The same parameters are the same
    run (``params_key``): starting it again continues from its checkpoint."""

    __tablename__ = "backfill_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(64))  # the Bandwidth account or the Twilio Service
    params_key: Mapped[str] = mapped_column(String(64), unique=True)
    params: Mapped[str] = mapped_column(Text)  # JSON
    dry_run: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    checkpoint: Mapped[str] = mapped_column(Text)  # JSON: what is left to list
    windows_done: Mapped[int] = mapped_column(Integer, default=0)
    list_requests: Mapped[int] = mapped_column(Integer, default=0)
    found: Mapped[int] = mapped_column(Integer, default=0)
    enqueued: Mapped[int] = mapped_column(Integer, default=0)
    skipped_known: Mapped[int] = mapped_column(Integer, default=0)
    truncated_windows: Mapped[str] = mapped_column(Text, default="[]")  # JSON: windows the cap hid
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: A run waiting for its provider account (credentials refused): sent again at this time.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AccountState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # ``pause_reason`` says why; its items wait, nothing is dead-lettered


class PauseReason(enum.StrEnum):
    CREDENTIALS = "credentials"  # the provider refuses the account's API credentials
    STORAGE = "storage"  # the account's bucket refuses us (access denied, no bucket, role refused)
    REMOVED = "removed"  # the account is no longer in the accounts registry


class ProviderAccount(Base):
    """What the archive knows of one provider account as a whole. A problem of the account (its
    credentials refused) pauses it: its items wait without spending attempts, and its credentials are
    checked again at ``check_at`` (doubling, up to ``ARCHIVER_ACCOUNT_PAUSE_MAX_SECONDS``) until the
    provider accepts them; then its items resume."""

    __tablename__ = "provider_accounts"
    __table_args__ = (UniqueConstraint("provider", "account_id", name="uq_provider_accounts_account"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=AccountState.ACTIVE)
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    #: The provider's own words, as last received (never a secret: errors carry none).
    message: Mapped[str | None] = mapped_column(Text)
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Refusals seen since the pause began (items and checks).
    refusals: Mapped[int] = mapped_column(Integer, default=0)
    #: Checks of the credentials made since the pause began; the next waits twice as long.
    checks: Mapped[int] = mapped_column(Integer, default=0)
    check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The last ERROR logged about the pause (one per interval, whichever process logs it).
    logged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When the last pause ended. A refusal soon after is the same pause going on (a check that
    #: passed while another request is still refused): its back-off and logging continue.
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
