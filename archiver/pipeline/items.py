"""The items events announce: what an event asks of its item (:class:`Action`), the artifact it
names (:class:`AnnouncedItem`), and creating or waking the item, idempotently, keyed by the
provider's ids (:func:`get_or_create_item`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select

from archiver.db.models import (
    ArchiveItem,
    ArtifactKind,
    ItemHistory,
    ItemState,
    Provider,
    TranscriptionState,
)
from archiver.db.session import UnitOfWork
from archiver.db.upsert import (
    insert_ignore,
)
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import Step, schedule_now
from archiver.pipeline.leases import transition

log = logging.getLogger(__name__)


class Action(StrEnum):
    """What an event asks of its item."""

    ARCHIVE = "archive"  # create (or wake) the item and archive it now
    ARCHIVE_LATER = "archive_later"  # create it, due later (recordComplete: media not downloadable yet)
    REJECT = "reject"  # nothing to fetch (a rejected or failed transcription, a recording in error)
    TRANSCRIPTION = "transcription"  # a recording's transcription ended (available or not)


@dataclass(frozen=True)
class AnnouncedItem:
    """The artifact an event announces, with validated ids."""

    provider: str
    account_id: str
    kind: str
    provider_id: str
    call_id: str | None
    action: Action
    outcome: str | None = None
    provider_started_at: datetime | None = None
    provider_completed_at: datetime | None = None
    partial: bool = False

    @classmethod
    def twilio_transcript(
        cls, account_sid: str, transcript_sid: str, action: Action = Action.ARCHIVE
    ) -> AnnouncedItem:
        """A Twilio transcript (no call id), however it was announced: webhook, request or backfill."""
        return cls(
            provider=Provider.TWILIO,
            account_id=account_sid,
            kind=ArtifactKind.TRANSCRIPT,
            provider_id=transcript_sid,
            call_id=None,
            action=action,
        )


def _later_seconds(ctx: PipelineContext, kind: str) -> float:
    """When an item announced "for later" is first looked at (absent the event that wakes it)."""
    if kind == ArtifactKind.TRANSCRIPT:
        return ctx.settings.twilio_poll_seconds  # a requested Twilio transcript: poll its status
    return ctx.settings.recording_available_wait_seconds  # recordComplete: wait for recordingAvailable


#: The columns that identify an artifact (the items' unique constraint).
ITEM_KEY = ("provider", "account_id", "kind", "provider_id")


def new_item_row(
    ctx: PipelineContext, announced: AnnouncedItem, now: datetime, backfill_run_id: int | None
) -> dict[str, Any]:
    """The row of an item not yet known, as first inserted (not yet scheduled)."""
    rejected = announced.action is Action.REJECT
    later = announced.action is Action.ARCHIVE_LATER
    return {
        "provider": announced.provider,
        "account_id": announced.account_id,
        "kind": announced.kind,
        "provider_id": announced.provider_id,
        "call_id": announced.call_id,
        "state": (ItemState.REJECTED if rejected else ItemState.PENDING).value,
        "due_at": now + timedelta(seconds=_later_seconds(ctx, announced.kind)) if later else None,
        "enqueued_at": None,
        "partial": announced.partial,
        "backfill_run_id": backfill_run_id,
        "resends": 0,
        "attempts": 0,
        "deletion_requests": 0,
        "outcome": announced.outcome,
        "provider_started_at": announced.provider_started_at,
        "provider_completed_at": announced.provider_completed_at,
        "created_at": now,
        "updated_at": now,
    }


def get_or_create_item(
    uow: UnitOfWork,
    ctx: PipelineContext,
    announced: AnnouncedItem,
    now: datetime,
    *,
    backfill_run_id: int | None = None,
    queue: str | None = None,
) -> tuple[ArchiveItem, bool]:
    """The item of an announced artifact, created (and scheduled) if new; later events about a
    known one wake, reject or settle it. Returns (item, whether it is new)."""
    session = uow.session
    later = announced.action is Action.ARCHIVE_LATER
    new_id = insert_ignore(
        session,
        ArchiveItem.__table__,  # type: ignore[arg-type]
        new_item_row(ctx, announced, now, backfill_run_id),
        list(ITEM_KEY),
    )
    item = session.scalars(
        select(ArchiveItem).where(
            ArchiveItem.provider == announced.provider,
            ArchiveItem.account_id == announced.account_id,
            ArchiveItem.kind == announced.kind,
            ArchiveItem.provider_id == announced.provider_id,
        )
    ).one()
    if new_id is not None:
        history = ItemHistory(
            item_id=item.id, at=now, from_state=None, to_state=item.state, detail=announced.outcome
        )
        session.add(history)
        if item.state == ItemState.PENDING and not later:
            schedule_now(uow, ctx.dispatcher, item, Step.ARCHIVE, now, queue)
        log.debug("%s: new item (%s)", item.ref, item.state)
        return item, True
    if backfill_run_id is None:  # a backfill only adds what is new; events may move known items on
        _apply_to_existing(uow, ctx, item, announced, now)
    return item, False


def _apply_to_existing(
    uow: UnitOfWork, ctx: PipelineContext, item: ArchiveItem, announced: AnnouncedItem, now: datetime
) -> None:
    """A later event about a known artifact: wake it, reject it, or settle its transcription."""
    session = uow.session
    session.refresh(item, with_for_update=True)
    if announced.partial and not item.partial:
        item.partial = True
    if item.lease_owner is not None and item.lease_expires_at is not None and item.lease_expires_at > now:
        # A worker is at it now; it reads the provider's current state itself.
        return
    if announced.action is Action.ARCHIVE and item.state == ItemState.PENDING:
        schedule_now(uow, ctx.dispatcher, item, Step.ARCHIVE, now)
    elif announced.action is Action.REJECT and item.state == ItemState.PENDING:
        item.outcome = announced.outcome
        item.due_at = item.enqueued_at = None
        transition(session, item, ItemState.REJECTED, now, announced.outcome)
    elif announced.action is Action.TRANSCRIPTION:
        if announced.outcome:
            item.transcription_outcome = announced.outcome
        if item.state == ItemState.AWAITING_TRANSCRIPTION:
            if announced.outcome is None:
                item.transcription_state = TranscriptionState.AVAILABLE
            schedule_now(uow, ctx.dispatcher, item, Step.ARCHIVE_TRANSCRIPTION, now)
        elif item.state == ItemState.PENDING and (item.due_at is None or item.due_at > now):
            schedule_now(uow, ctx.dispatcher, item, Step.ARCHIVE, now)
