"""The steps of an item's life, run by the same claim → work → commit skeleton.

1. **archive**: fetch, store in S3, verify every stored object, commit the rows and the text.
2. **archive transcription** (recordings): settle a transcription that was still expected.
3. **request deletion**: re-verify every stored object, DELETE at the provider within the policy's
   scope, record when, and the purge due time (now + the provider's purge window).
4. **confirm purge**: after the purge due time the provider must answer 404; if it still serves
   the artifact, the deletion is requested again and recorded.

Network I/O happens outside any database transaction. The claim (a lease) keeps a duplicated
message from doing the work twice; the completion commits only if this worker still holds the lease.

The runner is flat: one claim, then a loop of work, which returns a transition (a value, see
:mod:`archiver.pipeline.transitions`), and commit, which says which step is due at once, if any.
With ``go_on`` (what the tasks do) the loop goes on to that step with the lease kept: archive, then
request deletion, in one task, without a message, a claim and a task of their own. If the worker
dies between the two, the lease expires and the sweeper sends the deletion's message. A short retry
of that second step is sent as its own message. The item's handler is resolved once per step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select

from archiver.core.logging import log_context
from archiver.db.models import ArchivedObject, ArchiveItem, ItemState, TranscriptionState
from archiver.db.session import UnitOfWork
from archiver.pipeline.accounts import pause_account
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import STATE_STEP, STEP_STATE, Step, schedule_now
from archiver.pipeline.handlers import handler_for
from archiver.pipeline.handlers.base import ArtifactHandler, NothingToArchive, deletion_scope
from archiver.pipeline.leases import ClaimStatus, claim, release, reload_owned, transition
from archiver.pipeline.retry import DeadLetter, PauseAccount, PermanentStepError
from archiver.pipeline.transitions import (
    Archived,
    DeletionRequested,
    NothingFetched,
    Purged,
    Transition,
    apply,
)
from archiver.storage.objects import StoredObject

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class _Done:
    """One pass of the loop: the step's result, and the step due at once that this task goes on
    to (the lease kept), with the item as committed and the objects that step verifies."""

    result: StepResult
    next_step: Step | None = None
    item: ArchiveItem | None = None
    objects: tuple[ArchivedObject, ...] = ()


def run_step(ctx: PipelineContext, step: Step, item_id: int, *, go_on: bool = False) -> StepResult:
    """Run ``step`` for the item; with ``go_on``, also the next step if it is due at once."""
    with log_context(item_id=item_id, step=step.value):
        started = time.monotonic()
        owner = ctx.new_lease_owner()
        with ctx.db.transaction() as uow:
            now = ctx.clock.now()
            claimed = claim(
                uow.session, item_id, STEP_STATE[step].value, owner, now, ctx.settings.lease_seconds
            )
            if claimed.status is ClaimStatus.CLAIMED and _account_paused(ctx, uow, claimed.item):
                return StepResult(Outcome.WAITING, "its account is paused")
            # Read with the claim, in its transaction: the lease keeps them as they are.
            reads = claimed.status is ClaimStatus.CLAIMED and step in VERIFYING_STEPS
            objects = tuple(_objects_of(uow, item_id)) if reads else ()
        if claimed.status is ClaimStatus.LEASED:
            countdown = min(claimed.lease_remaining + 1.0, ctx.settings.max_countdown_seconds)
            return StepResult(Outcome.BUSY, "leased by another worker", countdown)
        if claimed.status is not ClaimStatus.CLAIMED or claimed.item is None:
            return StepResult(Outcome.SKIPPED, claimed.status.value)
        item = claimed.item
        with log_context(provider=item.provider, account_id=item.account_id, kind=item.kind,
                         provider_id=item.provider_id, call_id=item.call_id):  # fmt: skip
            done: list[tuple[Step, StepResult]] = []
            current: Step | None = step
            while current is not None:
                with log_context(step=current.value):
                    one = _one_step(ctx, current, item, objects, owner, go_on and not done, started)
                done.append((current, one.result))
                current, item, objects = one.next_step, one.item or item, one.objects
        return _chained(ctx, item, done)


def _chained(ctx: PipelineContext, item: ArchiveItem, done: list[tuple[Step, StepResult]]) -> StepResult:
    """The first step's result, carrying the one it went on to; that one's short retry is sent as
    its own message (if that fails, the item is due in the database: the sweeper sends it)."""
    first = done[0][1]
    if len(done) == 1:
        return first
    next_step, next_result = done[1]
    if next_result.outcome is Outcome.RETRY:
        try:
            ctx.dispatcher.enqueue(next_step, item.id, item.ref, countdown=next_result.countdown)
        except Exception:
            log.exception("%s: could not send the %s retry", item.ref, next_step.value)
    return replace(first, then=(next_step, next_result))


def _one_step(
    ctx: PipelineContext,
    step: Step,
    item: ArchiveItem,
    objects: tuple[ArchivedObject, ...],
    owner: str,
    go_on: bool,
    started: float,
) -> _Done:
    """Do the step's work, then commit its transition if ``owner`` still holds the lease. With
    ``go_on`` and time left, a next step due at once keeps the lease and is handed back."""
    state = STEP_STATE[step].value
    try:
        found = WORK[step](ctx, handler_for(item.kind), item, list(objects))
    except NothingToArchive as nothing:
        found = NothingFetched(str(nothing))
    except Exception as error:
        return _Done(_fail(ctx, item, state, owner, error))
    with ctx.db.transaction() as uow:
        owned = reload_owned(uow.session, item.id, state, owner)
        if owned is None:
            log.warning("%s: lease lost during %s; another worker took the item over", item.ref, step)
            return _Done(StepResult(Outcome.LOST_LEASE))
        now = ctx.clock.now()
        applied = apply(ctx, uow, owned, found, now)
        going_on = None
        if applied.next_step is None:
            release(owned)
        elif go_on and time.monotonic() - started < ctx.settings.lease_seconds * GO_ON_MAX_LEASE_SHARE:
            # Due now, with no message: this worker goes on with it. If it dies first, the lease
            # expires and the sweeper sends the message (nothing outstanding: enqueued_at empty).
            owned.due_at, owned.enqueued_at, owned.resends = now, None, 0
            owned.lease_expires_at = now + timedelta(seconds=ctx.settings.lease_seconds)
            going_on = applied.next_step
            objects = tuple(_objects_of(uow, item.id)) if going_on in VERIFYING_STEPS else ()
        else:
            release(owned)
            schedule_now(uow, ctx.dispatcher, owned, applied.next_step, now)
    log.info("%s: %s done: %s", item.ref, step.value, applied.detail)
    return _Done(StepResult(Outcome.DONE, applied.detail), going_on, owned, objects)


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
            pause_account(
                uow.session,
                ctx.settings,
                item.provider,
                item.account_id,
                decision.reason,
                now,
                decision.cause,
            )
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


# --- the work of each step: I/O outside any transaction, a transition as its result ---------------


def _archive(
    ctx: PipelineContext, handler: ArtifactHandler, item: ArchiveItem, _objects: list[ArchivedObject]
) -> Transition:
    return Archived(handler.archive(ctx, item))


def _archive_transcription(
    ctx: PipelineContext, handler: ArtifactHandler, item: ArchiveItem, _objects: list[ArchivedObject]
) -> Transition:
    return Archived(handler.archive_transcription(ctx, item))


def _verified_copy(
    ctx: PipelineContext, handler: ArtifactHandler, item: ArchiveItem, objects: list[ArchivedObject]
) -> None:
    """Invariant 1: never ask the provider to delete what we do not hold, verified, every object.

    ``archived_at`` is committed only after the archive step read every object back; here each of
    the item's objects (``objects``, read with the claim) is confirmed still present and unchanged
    (length, S3 checksum, recorded SHA-256)."""
    if item.transcription_state in (TranscriptionState.EXPECTED, TranscriptionState.AVAILABLE):
        raise PermanentStepError("refusing to delete at the provider: the transcription is still expected")
    required = handler.required_roles(item)
    missing = required - {o.role for o in objects}
    if not item.archived_at or missing:
        raise PermanentStepError(
            f"refusing to delete at the provider: no verified archive of {sorted(missing)}"
        )
    for obj in objects:
        stored = StoredObject(obj.s3_bucket, obj.s3_key, obj.size_bytes, obj.sha256, obj.s3_checksum)
        ctx.store_for(item.provider, item.account_id).verify(stored, read_back=False)


def _scope(ctx: PipelineContext, item: ArchiveItem) -> str:
    policy = ctx.tenants.deletion_policy(item.provider, item.account_id)
    scope = item.deletion_scope or deletion_scope(item.kind, policy)
    if scope is None:
        raise PermanentStepError(f"deletion policy {policy!r} deletes nothing of {item.kind}")
    return scope


def _request_deletion(
    ctx: PipelineContext, handler: ArtifactHandler, item: ArchiveItem, objects: list[ArchivedObject]
) -> Transition:
    scope = _scope(ctx, item)
    _verified_copy(ctx, handler, item, objects)
    return DeletionRequested(scope, handler.delete(ctx, item, scope))


def _confirm_purge(
    ctx: PipelineContext, handler: ArtifactHandler, item: ArchiveItem, objects: list[ArchivedObject]
) -> Transition:
    scope = _scope(ctx, item)
    if not handler.exists(ctx, item, scope):
        return Purged(scope)
    _verified_copy(ctx, handler, item, objects)
    return DeletionRequested(scope, handler.delete(ctx, item, scope), again=True)


#: Steps that re-verify the archived objects before asking the provider to delete.
VERIFYING_STEPS = frozenset({Step.REQUEST_DELETION, Step.CONFIRM_PURGE})

Work = Callable[[PipelineContext, ArtifactHandler, ArchiveItem, list[ArchivedObject]], Transition]
WORK: dict[Step, Work] = {
    Step.ARCHIVE: _archive,
    Step.ARCHIVE_TRANSCRIPTION: _archive_transcription,
    Step.REQUEST_DELETION: _request_deletion,
    Step.CONFIRM_PURGE: _confirm_purge,
}
assert set(WORK) == set(STATE_STEP.values())
