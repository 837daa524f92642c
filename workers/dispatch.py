"""The Celery implementation of :class:`archiver.pipeline.dispatch.Dispatcher`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from archiver.pipeline.dispatch import (
    ALL_QUEUES,
    BACKFILL_TASK_NAME,
    QUEUE_MAINTENANCE,
    QUEUES,
    RELAY_TASK_NAME,
    TASK_NAMES,
    Step,
    StepMessage,
)

log = logging.getLogger(__name__)


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue(
        self, step: Step, item_id: int, ref: str, queue: str | None = None, countdown: float | None = None
    ) -> None:
        self._send(StepMessage(step, item_id, ref, queue), countdown=countdown)

    def enqueue_many(self, messages: Sequence[StepMessage]) -> None:
        """One producer and one Redis pipeline for all of them (kombu's ``Producer.batch``): a
        batch of webhooks costs one round trip, not one per item."""
        if not messages:
            return
        with self._app.producer_or_acquire() as producer, producer.batch():
            for message in messages:
                self._send(message, producer)

    def _send(self, message: StepMessage, producer: Any = None, countdown: float | None = None) -> None:
        self._app.send_task(
            TASK_NAMES[message.step],
            args=[message.item_id],
            kwargs={"ref": message.ref},
            queue=message.queue or QUEUES[message.step],
            producer=producer,
            countdown=countdown,
            # What Celery's saferepr would show in Flower, without its walk over the arguments.
            argsrepr=f"[{message.item_id}]",
            kwargsrepr=f"{{'ref': {message.ref!r}}}",
        )

    def relay(self, messages: Sequence[StepMessage]) -> None:
        """One message on the maintenance queue, which workers consume beside the others, so it
        is not queued behind the live backlog it adds to."""
        if not messages:
            return
        shown = f"{messages[0].ref}" + (f" … {messages[-1].ref}" if len(messages) > 1 else "")
        with self._app.producer_or_acquire() as producer, producer.batch():  # it and its sent event
            self._app.send_task(
                RELAY_TASK_NAME,
                args=[[m.to_args() for m in messages]],
                queue=QUEUE_MAINTENANCE,
                producer=producer,
                # What Flower shows: a summary, not up to 500 entries (and no walk over them to print).
                argsrepr=f"[{len(messages)} step messages: {shown}]",
            )

    def enqueue_backfill(self, run_id: int) -> None:
        self._app.send_task(BACKFILL_TASK_NAME, args=[run_id], queue=QUEUE_MAINTENANCE)

    def backlog(self) -> dict[str, int] | None:
        try:
            with self._app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1)
                channel: Any = connection.default_channel
                depths = {}
                for queue in ALL_QUEUES:
                    try:
                        depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                    except ChannelError:  # Redis keeps no key for an empty queue
                        depths[queue] = 0
                return depths
        except Exception as exc:  # the sweep goes on without it
            log.warning("queue depths unavailable: %s", exc)
            return None
