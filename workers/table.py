"""Every task, declared once: its name (what Flower shows), queue, time limits and retry policy.

The routes (:func:`workers.celery_app.create_celery_app`) and the task decorators
(:mod:`workers.tasks`) are derived from :data:`TASKS`. The queue names themselves (and which step
goes to which) are the pipeline's (:mod:`archiver.pipeline.dispatch`), which sends by them; an item
step without limits of its own gets the app's, which follow the lease (``ARCHIVER_LEASE_SECONDS``).
Retry policies are values: Celery's automatic retries are for the infrastructure only (the database
restarting); what an item's failure means is decided by the pipeline
(:class:`archiver.pipeline.retry.RetryPolicy`), and a task only turns its decision into a retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from archiver.pipeline.dispatch import (
    BACKFILL_TASK_NAME,
    QUEUE_LIVE,
    QUEUE_MAINTENANCE,
    QUEUES,
    RELAY_TASK_NAME,
    REQUEST_TWILIO_TRANSCRIPT_TASK_NAME,
    SWEEP_TASK_NAME,
    TASK_NAMES,
    Step,
)

__all__ = ["DATABASE_DOWN", "NO_AUTORETRY", "TASKS", "AutoRetry", "TaskSpec"]


@dataclass(frozen=True)
class AutoRetry:
    """Celery's own retries: for which errors, how often, with what back-off (seconds)."""

    on: tuple[type[Exception], ...] = ()
    max_retries: int | None = None  # None: no limit (the item is due in the database anyway)
    backoff: int = 1
    backoff_max: int = 60
    jitter: bool = True

    def options(self) -> dict[str, Any]:
        if not self.on:
            return {"max_retries": self.max_retries}
        return {
            "autoretry_for": self.on,
            "max_retries": self.max_retries,
            "retry_backoff": self.backoff,
            "retry_backoff_max": self.backoff_max,
            "retry_jitter": self.jitter,
        }


NO_AUTORETRY = AutoRetry()
#: PostgreSQL restarting: retried with capped back-off while the item stays due in the database.
DATABASE_DOWN = AutoRetry(on=(OperationalError, InterfaceError))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    queue: str
    retry: AutoRetry = NO_AUTORETRY
    #: Seconds; None: the app's defaults, which follow the item lease (``ARCHIVER_LEASE_SECONDS``).
    soft_time_limit: float | None = None
    time_limit: float | None = None
    #: An item step: the step it runs (the task's class attribute ``step``).
    step: Step | None = None
    #: Re-tries of an item or run another worker holds, before it is left to the sweeper.
    busy_retries: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The task decorator's options."""
        options: dict[str, Any] = {
            "name": self.name,
            "queue": self.queue,
            "acks_late": True,
            "reject_on_worker_lost": True,
            "ignore_result": True,
            "busy_retries": self.busy_retries,
            **self.retry.options(),
            **self.extra,
        }
        if self.step is not None:
            options["step"] = self.step
        if self.soft_time_limit is not None:
            options["soft_time_limit"] = self.soft_time_limit
        if self.time_limit is not None:
            options["time_limit"] = self.time_limit
        return options


def _step(step: Step) -> TaskSpec:
    return TaskSpec(TASK_NAMES[step], QUEUES[step], DATABASE_DOWN, step=step)


#: By the task function's name (``workers.tasks``).
TASKS: dict[str, TaskSpec] = {
    "archive_item": _step(Step.ARCHIVE),
    "archive_transcription": _step(Step.ARCHIVE_TRANSCRIPTION),
    "request_deletion": _step(Step.REQUEST_DELETION),
    "confirm_purge": _step(Step.CONFIRM_PURGE),
    "request_twilio_transcript": TaskSpec(REQUEST_TWILIO_TRANSCRIPT_TASK_NAME, QUEUE_LIVE),
    # A slice ends after the list request under way and its commit (up to 1,000 items created and
    # sent): limits of their own, far above the slice, not the item steps' (which follow the lease).
    "run_backfill": TaskSpec(BACKFILL_TASK_NAME, QUEUE_MAINTENANCE, soft_time_limit=180, time_limit=240),
    "relay_step_messages": TaskSpec(RELAY_TASK_NAME, QUEUE_MAINTENANCE),
    "sweep_due_items": TaskSpec(SWEEP_TASK_NAME, QUEUE_MAINTENANCE),
}

#: The routes every app sends by, derived from the table.
ROUTES: dict[str, dict[str, str]] = {spec.name: {"queue": spec.queue} for spec in TASKS.values()}
