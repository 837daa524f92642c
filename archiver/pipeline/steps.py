"""The three steps of an item's life, run by the same claim → work → commit skeleton.

1. **archive**: fetch, store in S3, verify the stored copy, commit the row and the text.
2. **request deletion**: re-verify the stored copy, DELETE at the provider, record when, and the
   purge due time (now + the provider's purge window).
3. **confirm purge**: after the purge due time the provider must answer 404; if it still serves the
   artifact, the deletion is requested again and recorded.

Network I/O happens outside any database transaction. The claim (a lease) keeps a duplicated message
from doing the work twice; the completion commits only if this worker still holds the lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete

from archiver.db.models import ArchiveItem, ItemState, TranscriptSegment
from archiver.db.session import UnitOfWork
from archiver.pipeline.artifacts import handler_for
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import STEP_STATE, Step, schedule_now
from archiver.pipeline.leases import ClaimStatus, claim, release, reload_owned, transition
from archiver.pipeline.retry import DeadLetter, PermanentStepError
from archiver.storage import StoredObject

log = logging.getLogger(__name__)

Completion = Callable[[UnitOfWork, ArchiveItem, datetime], str]


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do: already done, missing, or not yet due
    BUSY = "busy"  # another worker holds the item; try again after ``countdown``
    RETRY = "retry"  # failed; retry after ``countdown`` (a short wait)
    WAITING = "waiting"  # failed or throttled; a due time was recorded for the sweeper
    DEAD = "dead"  # dead-lettered
    LOST_LEASE = "lost_lease"  # took too long; another worker took the item over


@dataclass(frozen=True)
class StepResult:
    outcome: Outcome
    detail: str = ""
    countdown: float | None = None


def run_step(ctx: PipelineContext, step: Step, item_id: int) -> StepResult:
    state = STEP_STATE[step].value
    owner = ctx.new_lease_owner()
    with ctx.db.transaction() as uow:
        result = claim(uow.session, item_id, state, owner, ctx.clock.now(), ctx.settings.lease_seconds)
    if result.status is ClaimStatus.LEASED:
        countdown = min(result.lease_remaining + 1.0, ctx.settings.max_countdown_seconds)
        return StepResult(Outcome.BUSY, "leased by another worker", countdown)
    if result.status is not ClaimStatus.CLAIMED:
        return StepResult(Outcome.SKIPPED, result.status.value)
    item = result.item
    assert item is not None
    try:
        complete = WORK[step](ctx, item)
    except Exception as error:
        return _fail(ctx, item, state, owner, error)
    with ctx.db.transaction() as uow:
        owned = reload_owned(uow.session, item_id, state, owner)
        if owned is None:
            log.warning("%s: lease lost during %s; another worker took the item over", item.ref, step)
            return StepResult(Outcome.LOST_LEASE)
        detail = complete(uow, owned, ctx.clock.now())
        release(owned)
    log.info("%s: %s done: %s", item.ref, step.value, detail)
    return StepResult(Outcome.DONE, detail)


def _fail(ctx: PipelineContext, item: ArchiveItem, state: str, owner: str, error: Exception) -> StepResult:
    decision = ctx.retry_policy.decide(error, item.attempts)
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        owned = reload_owned(uow.session, item.id, state, owner)
        if owned is None:
            return StepResult(Outcome.LOST_LEASE, str(error))
        release(owned)
        if isinstance(decision, DeadLetter):
            owned.failed_state = owned.state
            owned.last_error = decision.reason
            owned.due_at = None
            owned.enqueued_at = None
            transition(uow.session, owned, ItemState.DEAD, now, decision.reason)
            log.error("%s: dead-lettered in state %s: %s", item.ref, state, decision.reason)
            return StepResult(Outcome.DEAD, decision.reason)
        if decision.counts_as_attempt:
            owned.attempts += 1
        owned.last_error = decision.reason
        owned.updated_at = now
        owned.due_at = now + timedelta(seconds=decision.delay)
        if decision.delay <= ctx.settings.max_countdown_seconds:
            owned.enqueued_at = now  # the retry message is in flight; the sweeper leaves it alone
            outcome = Outcome.RETRY
        else:
            owned.enqueued_at = None  # the sweeper enqueues it at due_at
            outcome = Outcome.WAITING
    log.warning("%s: %s in %.1fs (%s): %s", item.ref, outcome.value, decision.delay, state, decision.reason)
    return StepResult(outcome, decision.reason, decision.delay)


# --- the work of each step ------------------------------------------------------------------------


def _archive(ctx: PipelineContext, item: ArchiveItem) -> Completion:
    copy = handler_for(item.kind).archive(ctx, item)

    def complete(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> str:
        session = uow.session
        owned.s3_bucket = copy.stored.bucket
        owned.s3_key = copy.stored.key
        owned.size_bytes = copy.stored.size
        owned.sha256 = copy.stored.sha256_hex
        owned.s3_checksum = copy.stored.s3_checksum
        owned.content_type = copy.content_type
        owned.archived_at = now
        owned.last_error = None
        session.execute(delete(TranscriptSegment).where(TranscriptSegment.item_id == owned.id))
        session.add_all(
            TranscriptSegment(
                item_id=owned.id,
                position=position,
                track=segment.track,
                speaker=segment.speaker,
                language=segment.language,
                text=segment.text,
                confidence=segment.confidence,
                start_seconds=segment.start_seconds,
                end_seconds=segment.end_seconds,
            )
            for position, segment in enumerate(copy.segments)
        )
        detail = f"s3://{copy.stored.bucket}/{copy.stored.key} ({copy.stored.size} bytes, verified)"
        transition(session, owned, ItemState.ARCHIVED, now, detail)
        if ctx.settings.deletion_policy == "delete":
            schedule_now(uow, ctx.dispatcher, owned, Step.REQUEST_DELETION, now)
        else:
            owned.due_at = owned.enqueued_at = None
        return detail

    return complete


def _verified_copy(ctx: PipelineContext, item: ArchiveItem) -> None:
    """Invariant 1: never ask the provider to delete what we do not hold, verified."""
    if not (item.archived_at and item.s3_bucket and item.s3_key and item.sha256 and item.s3_checksum):
        raise PermanentStepError("refusing to delete at the provider: no verified archive recorded")
    assert item.size_bytes is not None
    ctx.store.verify(
        StoredObject(item.s3_bucket, item.s3_key, item.size_bytes, item.sha256, item.s3_checksum)
    )


def _request_deletion(ctx: PipelineContext, item: ArchiveItem) -> Completion:
    _verified_copy(ctx, item)
    outcome = handler_for(item.kind).delete(ctx, item)

    def complete(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> str:
        owned.deletion_requested_at = now
        owned.deletion_requests += 1
        owned.purge_due_at = now + timedelta(seconds=ctx.settings.purge_delay_seconds)
        owned.due_at = owned.purge_due_at
        owned.enqueued_at = None
        owned.last_error = None
        detail = f"provider deletion {outcome.value}; purge due {owned.purge_due_at.isoformat()}"
        transition(uow.session, owned, ItemState.DELETION_REQUESTED, now, detail)
        return detail

    return complete


def _confirm_purge(ctx: PipelineContext, item: ArchiveItem) -> Completion:
    handler = handler_for(item.kind)
    if not handler.exists(ctx, item):

        def purged(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> str:
            owned.purged_at = now
            owned.due_at = owned.enqueued_at = None
            owned.last_error = None
            transition(
                uow.session, owned, ItemState.PURGED, now, "provider answers 404 after the purge window"
            )
            return "purge confirmed"

        return purged

    _verified_copy(ctx, item)
    outcome = handler.delete(ctx, item)

    def requested_again(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> str:
        owned.deletion_requests += 1
        owned.purge_due_at = now + timedelta(seconds=ctx.settings.purge_delay_seconds)
        owned.due_at = owned.purge_due_at
        owned.enqueued_at = None
        detail = (
            f"still served after the purge window; deletion requested again ({outcome.value}); "
            f"purge due {owned.purge_due_at.isoformat()}"
        )
        log.warning("%s: %s", owned.ref, detail)
        transition(uow.session, owned, ItemState.DELETION_REQUESTED, now, detail)
        return detail

    return requested_again


WORK: dict[Step, Callable[[PipelineContext, ArchiveItem], Completion]] = {
    Step.ARCHIVE: _archive,
    Step.REQUEST_DELETION: _request_deletion,
    Step.CONFIRM_PURGE: _confirm_purge,
}
