"""The Celery implementation of :class:`archiver.pipeline.dispatch.Dispatcher`."""

from __future__ import annotations

from celery import Celery

from archiver.pipeline.dispatch import QUEUES, TASK_NAMES, Step


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue(self, step: Step, item_id: int, ref: str, queue: str | None = None) -> None:
        self._app.send_task(
            TASK_NAMES[step], args=[item_id], kwargs={"ref": ref}, queue=queue or QUEUES[step]
        )
