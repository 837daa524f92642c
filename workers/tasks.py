"""Thin Celery tasks over :mod:`archiver.pipeline`, each declared by its row of
:data:`workers.table.TASKS` (name, queue, limits, retries), bound to whichever app loads this module.

Each item task runs one step for one item; the arguments are the item's id and a readable ``ref``
(provider/kind/id) so that Flower shows what a task works on. All the logic, transactions and retry
decisions live in the services; a task only turns "retry in N seconds" into ``self.retry``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task, shared_task
from celery.signals import worker_process_init

from archiver.backfill import fail_run, resume_orphaned_runs, run_account, run_backfill, wait_for_account
from archiver.core.config import get_settings
from archiver.core.logging import log_context
from archiver.pipeline.accounts import pause_account
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import Step, relay_messages
from archiver.pipeline.retry import PauseAccount, Retry
from archiver.pipeline.steps import Outcome, run_step
from archiver.pipeline.sweeper import sweep_due_items
from archiver.pipeline.twilio_requests import request_transcript
from archiver.providers.errors import CredentialsRefused, ProviderError
from workers.table import TASKS
from workers.wiring import build_context

log = logging.getLogger(__name__)

#: How long one backfill message works before handing the rest of its run to a new message.
BACKFILL_SLICE_SECONDS = 20.0

_context: PipelineContext | None = None


def pipeline_context(app: Celery) -> PipelineContext:
    """One context per worker process, built after the fork (engines must not cross a fork)."""
    global _context
    if _context is None:
        _context = build_context(get_settings(), app=app)
    return _context


@worker_process_init.connect
def _reset_after_fork(**_kwargs: Any) -> None:
    global _context
    _context = None


class StepTask(Task):  # type: ignore[type-arg]
    """Runs a pipeline step; a short wait becomes ``retry(countdown=…)``, visible in Flower.

    The database being unreachable (PostgreSQL restarting) is retried with capped backoff; the
    item stays due in the database meanwhile, so the sweeper would send it again anyway.
    """

    step: Step
    busy_retries: int

    def run_item_step(self, item_id: int, ref: str) -> dict[str, Any]:
        """The runner's outcome, mapped to Celery: a short wait is ``self.retry``; the rest is the
        task's result (with the step it went straight on to, if any)."""
        with log_context(task_id=self.request.id, task_name=self.name, ref=ref):
            result = run_step(pipeline_context(self.app), self.step, item_id, go_on=True)
        if result.outcome is Outcome.RETRY or (
            result.outcome is Outcome.BUSY and self.request.retries < self.busy_retries
        ):
            raise self.retry(countdown=result.countdown, exc=None)
        shown: dict[str, Any] = {"outcome": result.outcome.value, "detail": result.detail}
        if result.then is not None:
            next_step, next_result = result.then
            shown[next_step.value] = {"outcome": next_result.outcome.value, "detail": next_result.detail}
        return shown


@shared_task(bind=True, base=StepTask, **TASKS["archive_item"].options())
def archive_item(self: StepTask, item_id: int, ref: str = "") -> dict[str, Any]:
    """Fetch the artifact, store it in S3, verify the copy, commit."""
    return self.run_item_step(item_id, ref)


@shared_task(bind=True, base=StepTask, **TASKS["archive_transcription"].options())
def archive_transcription(self: StepTask, item_id: int, ref: str = "") -> dict[str, Any]:
    """Archive a recording's transcription that arrived after its media (or settle its absence)."""
    return self.run_item_step(item_id, ref)


@shared_task(bind=True, base=StepTask, **TASKS["request_deletion"].options())
def request_deletion(self: StepTask, item_id: int, ref: str = "") -> dict[str, Any]:
    """Re-verify the archived copy, then ask the provider to delete the artifact."""
    return self.run_item_step(item_id, ref)


@shared_task(bind=True, base=StepTask, **TASKS["confirm_purge"].options())
def confirm_purge(self: StepTask, item_id: int, ref: str = "") -> dict[str, Any]:
    """After the purge window, check that the provider no longer serves the artifact."""
    return self.run_item_step(item_id, ref)


@shared_task(bind=True, **TASKS["request_twilio_transcript"].options())
def request_twilio_transcript(
    self: Task,  # type: ignore[type-arg]
    service_sid: str,
    media_url: str | None = None,
    source_sid: str | None = None,
    customer_key: str | None = None,
) -> dict[str, Any]:
    """Ask Twilio to transcribe a recording or a media URL, and track the transcript to its archive.
    Refused credentials pause the Twilio account; the request is tried again when its credentials
    are next checked (at most ARCHIVER_MAX_COUNTDOWN_SECONDS away), not dropped."""
    ctx = pipeline_context(self.app)
    try:
        sid, item_id = request_transcript(
            ctx, service_sid, media_url=media_url, source_sid=source_sid, customer_key=customer_key
        )
    except CredentialsRefused as refused:
        now = ctx.clock.now()
        with ctx.db.transaction() as uow:
            account = pause_account(
                uow.session, ctx.settings, "twilio", str(ctx.settings.twilio_account_sid), str(refused), now
            )
            wait = (account.check_at - now).total_seconds() if account.check_at else 0.0
        raise self.retry(
            countdown=max(1.0, min(wait, ctx.settings.max_countdown_seconds)), exc=None
        ) from None
    return {"transcript_sid": sid, "item_id": item_id}


@shared_task(bind=True, **TASKS["run_backfill"].options())
def run_backfill_task(self: Task, run_id: int) -> dict[str, Any]:  # type: ignore[type-arg]
    """Work on a backfill run for a slice of time, then hand the rest to a new message.

    A 429 waits what the provider says (capped), other transient errors back off; the checkpoint is
    committed after every list request, so a retry or a redelivery repeats at most one request.
    """
    ctx = pipeline_context(self.app)
    try:
        result = run_backfill(ctx, run_id, budget_seconds=BACKFILL_SLICE_SECONDS)
    except ProviderError as error:
        decision = ctx.retry_policy.decide(error, min(self.request.retries, ctx.settings.max_attempts - 2))
        if isinstance(decision, PauseAccount):
            wait_for_account(ctx, run_id, decision.provider, run_account(ctx, run_id), decision.reason)
            return {"run_id": run_id, "state": "waiting for the account", "reason": decision.reason}
        if isinstance(decision, Retry):
            raise self.retry(
                countdown=min(decision.delay, ctx.settings.max_countdown_seconds), exc=None
            ) from None
        fail_run(ctx, run_id, decision.reason)
        return {"run_id": run_id, "state": "failed", "reason": decision.reason}
    if result.more:
        if result.state == "running" and result.busy:
            if (
                self.request.retries < TASKS["run_backfill"].busy_retries
            ):  # another worker holds the run; its lease may expire
                raise self.retry(
                    countdown=min(ctx.settings.lease_seconds, ctx.settings.max_countdown_seconds)
                )
            return {"run_id": run_id, "state": result.state, "note": "held by another worker"}
        run_backfill_task.apply_async((run_id,), queue=TASKS["run_backfill"].queue)
    return {"run_id": run_id, "state": result.state}


@shared_task(bind=True, **TASKS["relay_step_messages"].options())
def relay_step_messages(self: Task, messages: list[list[Any]]) -> dict[str, Any]:  # type: ignore[type-arg]
    """Send the step messages a busy intake handed over in one (``[step, item_id, ref, queue]``
    each). If this fails, the items are due in the database and the sweeper sends them."""
    return {"sent": relay_messages(pipeline_context(self.app).dispatcher, messages)}


@shared_task(bind=True, **TASKS["sweep_due_items"].options())
def sweep_due_items_task(self: Task) -> dict[str, Any]:  # type: ignore[type-arg]
    """Re-enqueue every item whose step is due and that no live worker holds."""
    report = sweep_due_items(pipeline_context(self.app), also=(resume_orphaned_runs,))
    return {"enqueued": report.enqueued, "by_state": report.by_state}
