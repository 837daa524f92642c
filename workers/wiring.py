"""The one way a pipeline context is built, for the CLI, the workers, the tests and the benchmarks:
settings, and a dispatcher that sends with Celery (or the caller's own, where nothing is sent)."""

from __future__ import annotations

from celery import Celery

from archiver.core.config import Settings
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import Dispatcher
from workers.celery_app import create_celery_app
from workers.dispatch import CeleryDispatcher

__all__ = ["build_context"]


def build_context(
    settings: Settings,
    *,
    app: Celery | None = None,
    dispatcher: Dispatcher | None = None,
    pre_ping: bool = True,
) -> PipelineContext:
    """A context on ``settings``; its messages go through ``app`` (default: a sending-only app of
    these settings), unless a ``dispatcher`` of the caller's is given."""
    if dispatcher is None:
        sender = app if app is not None else create_celery_app(settings, include_tasks=False)
        dispatcher = CeleryDispatcher(sender)
    return PipelineContext.from_settings(settings, dispatcher, pre_ping=pre_ping)
