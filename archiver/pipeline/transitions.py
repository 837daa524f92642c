"""What a step's work found, as values (:data:`Transition`), and what committing each one does to
its item (:func:`apply`): the work runs outside any transaction, the transition is applied inside the
one that checks the lease is still held. No callbacks: the runner (:mod:`archiver.pipeline.steps`)
hands the value over, and :func:`apply` says which step, if any, is due at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from archiver.db.models import ArchivedObject, ArchiveItem, ItemState, TranscriptSegment
from archiver.db.session import UnitOfWork
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import Step
from archiver.pipeline.handlers.base import ArchiveResult, deletion_scope
from archiver.pipeline.leases import transition
from archiver.providers.http import DeleteOutcome

__all__ = ["Applied", "Archived", "DeletionRequested", "NothingFetched", "Purged", "Transition", "apply"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archived:
    """Objects fetched, stored and verified (the archive, or a transcription that came later)."""

    result: ArchiveResult


@dataclass(frozen=True)
class NothingFetched:
    """The provider says there is nothing to fetch (a recording in error): recorded as rejected."""

    outcome: str


@dataclass(frozen=True)
class DeletionRequested:
    """The provider accepted the deletion of ``scope``; ``again``: it still served it after the
    purge window, so the deletion was requested once more."""

    scope: str
    outcome: DeleteOutcome
    again: bool = False


@dataclass(frozen=True)
class Purged:
    """The provider no longer serves ``scope``: the purge is confirmed."""

    scope: str


Transition = Archived | NothingFetched | DeletionRequested | Purged


@dataclass(frozen=True)
class Applied:
    """What committing a transition did: its detail, and the step now due at once, if any."""

    detail: str
    next_step: Step | None = None


def apply(
    ctx: PipelineContext, uow: UnitOfWork, owned: ArchiveItem, found: Transition, now: datetime
) -> Applied:
    """Commit what the work found to the item (its lease checked by the caller)."""
    match found:
        case Archived(result):
            return _record_archive(ctx, uow, owned, result, now)
        case NothingFetched(outcome):
            owned.outcome = outcome
            owned.due_at = owned.enqueued_at = None
            transition(uow.session, owned, ItemState.REJECTED, now, outcome)
            return Applied(outcome)
        case DeletionRequested(scope, outcome, again):
            if not again:
                owned.deletion_scope = scope
                owned.deletion_requested_at = now
                owned.last_error = None
            owned.deletion_requests += 1
            owned.purge_due_at = now + timedelta(seconds=ctx.settings.purge_delay_seconds)
            owned.due_at = owned.purge_due_at
            owned.enqueued_at = None
            due = owned.purge_due_at.isoformat()
            if again:
                detail = (
                    f"{scope} still served after the purge window; deletion requested again "
                    f"({outcome.value}); purge due {due}"
                )
                log.warning("%s: %s", owned.ref, detail)
            else:
                detail = f"provider deletion of the {scope} {outcome.value}; purge due {due}"
            transition(uow.session, owned, ItemState.DELETION_REQUESTED, now, detail)
            return Applied(detail)
        case Purged(scope):
            owned.purged_at = now
            owned.due_at = owned.enqueued_at = None
            owned.last_error = None
            transition(uow.session, owned, ItemState.PURGED, now, f"provider answers 404 for the {scope}")
            return Applied("purge confirmed")


def _record_archive(
    ctx: PipelineContext, uow: UnitOfWork, owned: ArchiveItem, result: ArchiveResult, now: datetime
) -> Applied:
    """Write what an archive result verified; move the item on; say whether deletion is due now."""
    session = uow.session
    for part in result.parts:
        existing = session.scalars(
            select(ArchivedObject).where(ArchivedObject.item_id == owned.id, ArchivedObject.role == part.role)
        ).one_or_none()
        row = existing or ArchivedObject(item_id=owned.id, role=part.role)
        row.s3_bucket, row.s3_key = part.stored.bucket, part.stored.key
        row.size_bytes, row.sha256 = part.stored.size, part.stored.sha256_hex
        row.s3_checksum, row.content_type, row.stored_at = part.stored.s3_checksum, part.content_type, now
        session.add(row)
    # The item's own columns name its main object: the media of a recording, else the first object
    # stored. A later transcription does not replace a recording's media there.
    primary = next((p for p in result.parts if p.role == "media"), None)
    if primary is None and owned.s3_key is None and result.parts:
        primary = result.parts[0]
    if primary is not None:
        owned.s3_bucket, owned.s3_key = primary.stored.bucket, primary.stored.key
        owned.size_bytes, owned.sha256 = primary.stored.size, primary.stored.sha256_hex
        owned.s3_checksum, owned.content_type = primary.stored.s3_checksum, primary.content_type
        owned.archived_at = owned.archived_at or now
    if result.partial is not None:
        owned.partial = result.partial
    if result.transcription_state is not None:
        owned.transcription_state = result.transcription_state
    if result.transcription_outcome is not None:
        owned.transcription_outcome = result.transcription_outcome
    owned.transcription_deadline = result.transcription_deadline
    owned.last_error = None
    if result.segments is not None:
        session.execute(delete(TranscriptSegment).where(TranscriptSegment.item_id == owned.id))
        session.add_all(
            TranscriptSegment(
                item_id=owned.id,
                position=position,
                kind=segment.kind,
                track=segment.track,
                speaker=segment.speaker,
                language=segment.language,
                text=segment.text,
                confidence=segment.confidence,
                start_seconds=segment.start_seconds,
                end_seconds=segment.end_seconds,
            )
            for position, segment in enumerate(result.segments)
        )
    stored = ", ".join(
        f"{p.role} s3://{p.stored.bucket}/{p.stored.key} ({p.stored.size} bytes)" for p in result.parts
    )
    notes = [f"verified {stored}" if stored else "", *result.notes]
    if owned.transcription_state:
        notes.append(f"transcription {owned.transcription_state}")
    detail = "; ".join(filter(None, notes))
    transition(session, owned, result.next_state, now, detail or None)
    if result.next_state is ItemState.AWAITING_TRANSCRIPTION:
        owned.due_at = result.transcription_deadline
        owned.enqueued_at = None  # the callback or, at the deadline, the sweeper brings it back
    elif (
        deletion_scope(owned.kind, ctx.tenants.deletion_policy(owned.provider, owned.account_id)) is not None
    ):
        return Applied(detail, Step.REQUEST_DELETION)  # sent, or gone on to, by the runner
    else:
        owned.due_at = owned.enqueued_at = None  # archive only: done
    return Applied(detail)
