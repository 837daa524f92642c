"""Steps, their task names and queues, and the mapping from an item's state to its next step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from archiver.db.models import ArchiveItem, ItemState
from archiver.db.session import UnitOfWork


class Step(StrEnum):
    ARCHIVE = "archive"
    ARCHIVE_TRANSCRIPTION = "archive_transcription"
    REQUEST_DELETION = "request_deletion"
    CONFIRM_PURGE = "confirm_purge"


#: Task names read as what they do (they are what Flower shows).
TASK_NAMES: dict[Step, str] = {
    Step.ARCHIVE: "archiver.archive_item",
    Step.ARCHIVE_TRANSCRIPTION: "archiver.archive_transcription",
    Step.REQUEST_DELETION: "archiver.request_deletion",
    Step.CONFIRM_PURGE: "archiver.confirm_purge",
}
SWEEP_TASK_NAME = "archiver.sweep_due_items"
REQUEST_TWILIO_TRANSCRIPT_TASK_NAME = "archiver.request_twilio_transcript"
BACKFILL_TASK_NAME = "archiver.run_backfill"
#: A worker sends many steps' messages for a sender that handed them over in one (the intake).
RELAY_TASK_NAME = "archiver.relay_step_messages"

QUEUE_LIVE = "archiver.live"
QUEUE_DELETIONS = "archiver.deletions"
QUEUE_MAINTENANCE = "archiver.maintenance"
#: Backfill runs and the items they find: their own queue, so that live webhooks are never starved.
QUEUE_BACKFILL = "archiver.backfill"
ALL_QUEUES = (QUEUE_LIVE, QUEUE_DELETIONS, QUEUE_MAINTENANCE, QUEUE_BACKFILL)

QUEUES: dict[Step, str] = {
    Step.ARCHIVE: QUEUE_LIVE,
    Step.ARCHIVE_TRANSCRIPTION: QUEUE_LIVE,
    Step.REQUEST_DELETION: QUEUE_DELETIONS,
    Step.CONFIRM_PURGE: QUEUE_DELETIONS,
}

#: The state an item must be in for each step to act on it.
STEP_STATE: dict[Step, ItemState] = {
    Step.ARCHIVE: ItemState.PENDING,
    Step.ARCHIVE_TRANSCRIPTION: ItemState.AWAITING_TRANSCRIPTION,
    Step.REQUEST_DELETION: ItemState.ARCHIVED,
    Step.CONFIRM_PURGE: ItemState.DELETION_REQUESTED,
}
STATE_STEP: dict[str, Step] = {state.value: step for step, state in STEP_STATE.items()}


def queue_for(step: Step, from_backfill: bool) -> str:
    """Items a backfill found are archived from the backfill queue, so that live traffic never
    waits behind them; every later step uses the step's own queue."""
    return QUEUE_BACKFILL if step is Step.ARCHIVE and from_backfill else QUEUES[step]


#: Longer than any item's ref (provider/kind/id, the id at most 128 characters); refs are for display.
MAX_REF_LENGTH = 200


@dataclass(frozen=True)
class StepMessage:
    """One step's message for one item: what :meth:`Dispatcher.enqueue` sends."""

    step: Step
    item_id: int
    ref: str
    queue: str | None = None

    def to_args(self) -> list[str | int | None]:
        """The message as JSON-able arguments of the relay task."""
        return [self.step.value, self.item_id, self.ref, self.queue]

    @classmethod
    def from_args(cls, args: object) -> StepMessage:
        """The inverse of :meth:`to_args`, checked: a relay message is input like any other."""
        if not (isinstance(args, list | tuple) and len(args) == 4):
            raise ValueError(f"not a step message: {args!r:.200}")
        step, item_id, ref, queue = args
        if not (isinstance(item_id, int) and not isinstance(item_id, bool) and item_id > 0):
            raise ValueError(f"not an item id: {item_id!r:.50}")
        if not (isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH):
            raise ValueError(f"not an item ref: {ref!r:.50}")
        if queue is not None and queue not in ALL_QUEUES:
            raise ValueError(f"not one of our queues: {queue!r:.50}")
        return cls(Step(step), item_id, ref, queue)


def relay_messages(dispatcher: Dispatcher, handed_over: Sequence[object]) -> int:
    """Send the messages a relay message carries (see :meth:`Dispatcher.relay`); the count sent.

    Every entry is checked before anything is sent. Sending twice is harmless (a redelivered relay
    message): a step claims its item, so a duplicate finds it done or held.
    """
    messages = [StepMessage.from_args(args) for args in handed_over]
    dispatcher.enqueue_many(messages)
    return len(messages)


class Dispatcher(Protocol):
    """Sends a step's message to the workers. Called only after the transaction has committed."""

    def enqueue(
        self, step: Step, item_id: int, ref: str, queue: str | None = None, countdown: float | None = None
    ) -> None:
        """``countdown``: a short wait (at most ``ARCHIVER_MAX_COUNTDOWN_SECONDS``), never a long one."""
        ...

    def enqueue_many(self, messages: Sequence[StepMessage]) -> None:
        """Send several messages in as few broker round trips as the broker allows."""
        ...

    def relay(self, messages: Sequence[StepMessage]) -> None:
        """Hand the messages to a worker in one message (:data:`RELAY_TASK_NAME`), which sends
        them: one publish for the sender instead of one per message, for a hop of latency."""
        ...

    def enqueue_backfill(self, run_id: int) -> None: ...

    def backlog(self) -> dict[str, int] | None:
        """Messages waiting in each queue, or ``None`` if the broker cannot say."""
        ...


def schedule_now(
    uow: UnitOfWork,
    dispatcher: Dispatcher,
    item: ArchiveItem,
    step: Step,
    now: datetime,
    queue: str | None = None,
) -> None:
    """Mark the item due now and send its next step once the transaction has committed.

    If sending fails (broker down), the item is still due in the database and the sweeper sends it
    again after ``requeue_after_seconds``: nothing is lost.
    """
    item.due_at = now
    item.enqueued_at = now
    item.resends = 0
    item_id, ref = item.id, item.ref
    uow.after_commit(lambda: dispatcher.enqueue(step, item_id, ref, queue))
