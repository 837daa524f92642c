"""The steps of an item's life, run by the same claim → work → commit skeleton.

1. **archive**: fetch, store in S3, verify every stored object, commit the rows and the text.
2. **archive transcription** (recordings): settle a transcription that was still expected.
3. **request deletion**: re-verify every stored object, DELETE at the provider within the policy's
   scope, record when, and the purge due time (now + the provider's purge window).
4. **confirm purge**: after the purge due time the provider must answer 404; if it still serves
   the artifact, the deletion is requested again and recorded.

Network I/O happens outside any database transaction. The claim (a lease) keeps a duplicated
message from doing the work twice; the completion commits only if this worker still holds the lease.

A step that leaves its item due for the next step at once (archive → request deletion) can go
straight on to it (``go_on``, what the tasks do): the archive commits with the lease kept, and the
deletion runs in the same task, without a message, a claim and a task of its own. If the worker dies
between the two, the lease expires and the sweeper sends the deletion's message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select

from archiver.core.logging import log_context
from archiver.db.models import ArchivedObject, ArchiveItem, ItemState, TranscriptionState, TranscriptSegment
from archiver.db.session import UnitOfWork
from archiver.pipeline.accounts import pause_account
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import STATE_STEP, STEP_STATE, Step, schedule_now
from archiver.pipeline.handlers import handler_for
from archiver.pipeline.handlers.base import ArchiveResult, NothingToArchive, deletion_scope
from archiver.pipeline.leases import ClaimStatus, claim, release, reload_owned, transition
from archiver.pipeline.retry import DeadLetter, PauseAccount, PermanentStepError
from archiver.storage.objects import StoredObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completed:
    """What a step's completion committed: its detail, and the step now due at once, if any."""

    detail: str
    next_step: Step | None = None


Completion = Callable[[UnitOfWork, ArchiveItem, datetime], Completed]

#: A step goes on to the next in the same task only if it took less than this share of the lease:
#: the task's time limits (0.8 and 0.9 of the lease) must leave the next step its time.
GO_ON_MAX_LEASE_SHARE = 0.25


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do: already done, missing, or not yet due
    BUSY = "busy"  # another worker holds the item; try again after ``countdown``
    RETRY = "retry"  # failed or not ready; retry after ``countdown`` (a short wait)
    WAITING = "waiting"  # failed, throttled or not ready; a due time was recorded for the sweeper
    DEAD = "dead"  # dead-lettered
    LOST_LEASE = "lost_lease"  # took too long; another worker took the item over


@dataclass(frozen=True)
class StepResult:
    outcome: Outcome
    detail: str = ""
    countdown: float | None = None
    #: The next step, when this one went straight on to it (``go_on``), and that step's result.
    then: tuple[Step, StepResult] | None = None


def run_step(ctx: PipelineContext, step: Step, item_id: int, *, go_on: bool = False) -> StepResult:
    """Run ``step`` for the item; with ``go_on``, also the next step if it is due at once."""
    with log_context(item_id=item_id, step=step.value):
        return _run_step(ctx, step, item_id, go_on)


def _run_step(ctx: PipelineContext, step: Step, item_id: int, go_on: bool) -> StepResult:
    started = time.monotonic()
    state = STEP_STATE[step].value
    owner = ctx.new_lease_owner()
    objects: list[ArchivedObject] = []
    with ctx.db.transaction() as uow:
        result = claim(uow.session, item_id, state, owner, ctx.clock.now(), ctx.settings.lease_seconds)
        if result.status is ClaimStatus.CLAIMED and _account_paused(ctx, uow, result.item):
            return StepResult(Outcome.WAITING, "its account is paused")
        if result.status is ClaimStatus.CLAIMED and step in VERIFYING_STEPS:
            # Read with the claim, in its transaction: the lease keeps them as they are.
            objects = _objects_of(uow, item_id)
    if result.status is ClaimStatus.LEASED:
        countdown = min(result.lease_remaining + 1.0, ctx.settings.max_countdown_seconds)
        return StepResult(Outcome.BUSY, "leased by another worker", countdown)
    if result.status is not ClaimStatus.CLAIMED:
        return StepResult(Outcome.SKIPPED, result.status.value)
    item = result.item
    assert item is not None
    with log_context(
        provider=item.provider,
        account_id=item.account_id,
        kind=item.kind,
        provider_id=item.provider_id,
        call_id=item.call_id,
    ):
        done, then = _work(ctx, step, item, objects, state, owner, go_on, started)
        if then is None:
            return done
        # Still holding the lease: straight on to the next step, as its own message would have.
        next_step, owned, next_objects = then
        with log_context(step=next_step.value):
            next_done, _ = _work(
                ctx, next_step, owned, next_objects, STEP_STATE[next_step].value, owner, False, started
            )
        return replace(done, then=(next_step, next_done))


GoOn = tuple[Step, ArchiveItem, list[ArchivedObject]]


def _account_paused(ctx: PipelineContext, uow: UnitOfWork, item: ArchiveItem | None) -> bool:
    """A message sent before its account was paused: the item goes back to wait (due, no lease,
    nothing outstanding), without a request to the provider; the sweeper sends it on resume."""
    assert item is not None
    ctx.paused_accounts.refresh(uow.session)
    if (item.provider, item.account_id) not in ctx.paused_accounts:
        return False
    release(item)
    item.due_at, item.enqueued_at = ctx.clock.now(), None
    return True


def _objects_of(uow: UnitOfWork, item_id: int) -> list[ArchivedObject]:
    """The item's stored objects, read while its lease is held (what a verifying step checks)."""
    return list(uow.session.scalars(select(ArchivedObject).where(ArchivedObject.item_id == item_id)))


def _work(
    ctx: PipelineContext,
    step: Step,
    item: ArchiveItem,
    objects: list[ArchivedObject],
    state: str,
    owner: str,
    go_on: bool,
    started: float,
) -> tuple[StepResult, GoOn | None]:
    """Do the step's work, then commit it if ``owner`` still holds the lease. With ``go_on`` and
    time left, a next step due at once keeps the lease and is returned, with what it needs."""
    item_id = item.id
    try:
        complete = WORK[step](ctx, item, objects)
    except NothingToArchive as nothing:
        complete = _nothing_to_archive(str(nothing))
    except Exception as error:
        return _fail(ctx, item, state, owner, error), None
    then: GoOn | None = None
    with ctx.db.transaction() as uow:
        owned = reload_owned(uow.session, item_id, state, owner)
        if owned is None:
            log.warning("%s: lease lost during %s; another worker took the item over", item.ref, step)
            return StepResult(Outcome.LOST_LEASE), None
        now = ctx.clock.now()
        done = complete(uow, owned, now)
        if done.next_step is None:
            release(owned)
        elif go_on and time.monotonic() - started < ctx.settings.lease_seconds * GO_ON_MAX_LEASE_SHARE:
            # Due now, with no message: this worker goes on with it. If it dies first, the lease
            # expires and the sweeper sends the message (nothing outstanding: enqueued_at empty).
            owned.due_at, owned.enqueued_at, owned.resends = now, None, 0
            owned.lease_expires_at = now + timedelta(seconds=ctx.settings.lease_seconds)
            next_objects = _objects_of(uow, item_id) if done.next_step in VERIFYING_STEPS else []
            then = (done.next_step, owned, next_objects)
        else:
            release(owned)
            schedule_now(uow, ctx.dispatcher, owned, done.next_step, now)
    log.info("%s: %s done: %s", item.ref, step.value, done.detail)
    return StepResult(Outcome.DONE, done.detail), then


def _fail(ctx: PipelineContext, item: ArchiveItem, state: str, owner: str, error: Exception) -> StepResult:
    decision = ctx.retry_policy.decide(error, item.attempts)
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        owned = reload_owned(uow.session, item.id, state, owner)
        if owned is None:
            return StepResult(Outcome.LOST_LEASE, str(error))
        release(owned)
        if isinstance(decision, PauseAccount):
            # The account's problem, not the item's: no attempt spent, never dead-lettered. The
            # item is due, but the sweeper sends nothing of a paused account until it resumes.
            pause_account(uow.session, ctx.settings, item.provider, item.account_id, decision.reason, now)
            ctx.paused_accounts.add(item.provider, item.account_id)
            owned.last_error = f"waiting for the account: {decision.reason}"
            owned.updated_at = owned.due_at = now
            owned.enqueued_at = None
            log.info("%s: waiting for its account (%s): %s", item.ref, state, decision.reason)
            return StepResult(Outcome.WAITING, owned.last_error)
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


def _nothing_to_archive(outcome: str) -> Completion:
    def complete(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> Completed:
        owned.outcome = outcome
        owned.due_at = owned.enqueued_at = None
        transition(uow.session, owned, ItemState.REJECTED, now, outcome)
        return Completed(outcome)

    return complete


# --- the work of each step ------------------------------------------------------------------------


def _record_archive(
    ctx: PipelineContext, uow: UnitOfWork, owned: ArchiveItem, result: ArchiveResult, now: datetime
) -> Completed:
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
    elif deletion_scope(owned.kind, ctx.settings.deletion_policy) is not None:
        return Completed(detail, Step.REQUEST_DELETION)  # sent, or gone on to, by ``_work``
    else:
        owned.due_at = owned.enqueued_at = None  # archive only: done
    return Completed(detail)


def _archive(ctx: PipelineContext, item: ArchiveItem, _objects: list[ArchivedObject]) -> Completion:
    result = handler_for(item.kind).archive(ctx, item)
    return lambda uow, owned, now: _record_archive(ctx, uow, owned, result, now)


def _archive_transcription(
    ctx: PipelineContext, item: ArchiveItem, _objects: list[ArchivedObject]
) -> Completion:
    result = handler_for(item.kind).archive_transcription(ctx, item)
    return lambda uow, owned, now: _record_archive(ctx, uow, owned, result, now)


def _verified_copy(ctx: PipelineContext, item: ArchiveItem, objects: list[ArchivedObject]) -> None:
    """Invariant 1: never ask the provider to delete what we do not hold, verified, every object.

    ``archived_at`` is committed only after the archive step read every object back; here each of
    the item's objects (``objects``, read with the claim) is confirmed still present and unchanged
    (length, S3 checksum, recorded SHA-256)."""
    if item.transcription_state in (TranscriptionState.EXPECTED, TranscriptionState.AVAILABLE):
        raise PermanentStepError("refusing to delete at the provider: the transcription is still expected")
    required = handler_for(item.kind).required_roles(item)
    missing = required - {o.role for o in objects}
    if not item.archived_at or missing:
        raise PermanentStepError(
            f"refusing to delete at the provider: no verified archive of {sorted(missing)}"
        )
    for obj in objects:
        stored = StoredObject(obj.s3_bucket, obj.s3_key, obj.size_bytes, obj.sha256, obj.s3_checksum)
        ctx.store.verify(stored, read_back=False)


def _scope(ctx: PipelineContext, item: ArchiveItem) -> str:
    scope = item.deletion_scope or deletion_scope(item.kind, ctx.settings.deletion_policy)
    if scope is None:
        raise PermanentStepError(
            f"deletion policy {ctx.settings.deletion_policy!r} deletes nothing of {item.kind}"
        )
    return scope


def _request_deletion(ctx: PipelineContext, item: ArchiveItem, objects: list[ArchivedObject]) -> Completion:
    scope = _scope(ctx, item)
    _verified_copy(ctx, item, objects)
    outcome = handler_for(item.kind).delete(ctx, item, scope)

    def complete(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> Completed:
        owned.deletion_scope = scope
        owned.deletion_requested_at = now
        owned.deletion_requests += 1
        owned.purge_due_at = now + timedelta(seconds=ctx.settings.purge_delay_seconds)
        owned.due_at = owned.purge_due_at
        owned.enqueued_at = None
        owned.last_error = None
        detail = (
            f"provider deletion of the {scope} {outcome.value}; purge due {owned.purge_due_at.isoformat()}"
        )
        transition(uow.session, owned, ItemState.DELETION_REQUESTED, now, detail)
        return Completed(detail)

    return complete


def _confirm_purge(ctx: PipelineContext, item: ArchiveItem, objects: list[ArchivedObject]) -> Completion:
    scope = _scope(ctx, item)
    handler = handler_for(item.kind)
    if not handler.exists(ctx, item, scope):

        def purged(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> Completed:
            owned.purged_at = now
            owned.due_at = owned.enqueued_at = None
            owned.last_error = None
            transition(uow.session, owned, ItemState.PURGED, now, f"provider answers 404 for the {scope}")
            return Completed("purge confirmed")

        return purged

    _verified_copy(ctx, item, objects)
    outcome = handler.delete(ctx, item, scope)

    def requested_again(uow: UnitOfWork, owned: ArchiveItem, now: datetime) -> Completed:
        owned.deletion_requests += 1
        owned.purge_due_at = now + timedelta(seconds=ctx.settings.purge_delay_seconds)
        owned.due_at = owned.purge_due_at
        owned.enqueued_at = None
        detail = (
            f"{scope} still served after the purge window; deletion requested again ({outcome.value}); "
            f"purge due {owned.purge_due_at.isoformat()}"
        )
        log.warning("%s: %s", owned.ref, detail)
        transition(uow.session, owned, ItemState.DELETION_REQUESTED, now, detail)
        return Completed(detail)

    return requested_again


#: Steps that re-verify the archived objects before asking the provider to delete.
VERIFYING_STEPS = frozenset({Step.REQUEST_DELETION, Step.CONFIRM_PURGE})

WORK: dict[Step, Callable[[PipelineContext, ArchiveItem, list[ArchivedObject]], Completion]] = {
    Step.ARCHIVE: _archive,
    Step.ARCHIVE_TRANSCRIPTION: _archive_transcription,
    Step.REQUEST_DELETION: _request_deletion,
    Step.CONFIRM_PURGE: _confirm_purge,
}
assert set(WORK) == set(STATE_STEP.values())
