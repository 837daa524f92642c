"""The Celery application: reliability settings, queues, routes and the beat schedule.

Why each setting (sources: docs/development.md, "Celery, Redis and S3 in production"):
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose process dies is redelivered,
  not acked; ``worker_prefetch_multiplier=1`` reserves one message per process.
* soft shutdown on SIGTERM, a pool process replaced every N tasks, reconnection without
  duplicate parallel execution (see the comments below).
* JSON only; no result backend (state lives in the database, not in Celery results).
* task events, sent events and STARTED state on, so Flower shows queued, running, retried, failed.
* time limits below the item lease, so a stuck task is killed before another worker may take its
  item over: no two workers ever act on one item at once.
* kombu's Redis transport with one fix (``workers/broker_transport.py``): a Redis restart at the
  wrong moment no longer stops the worker.
* countdowns are capped by ``ARCHIVER_MAX_COUNTDOWN_SECONDS`` (≤ 10 min), far below the Redis
  visibility timeout; longer waits are due times in the database, swept by beat.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from archiver.core.config import Settings
from archiver.core.logging import mask_url_queries
from archiver.pipeline.dispatch import ALL_QUEUES, QUEUE_LIVE
from workers import broker_transport
from workers.table import ROUTES, TASKS

REDIS_VISIBILITY_TIMEOUT = 3600


def mask_presigned_urls(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    """Flower shows a task's ``argsrepr``/``kwargsrepr``: a presigned media URL's query (a
    credential) is cut from them in every process that sends with this app (Flower's API, a
    retry), while the task itself still gets the whole URL."""
    for field in ("argsrepr", "kwargsrepr"):
        shown = (headers or {}).get(field)
        if isinstance(shown, str) and headers is not None:
            headers[field] = mask_url_queries(shown)


def create_celery_app(settings: Settings, *, include_tasks: bool = True) -> Celery:
    before_task_publish.connect(mask_presigned_urls, weak=False, dispatch_uid="archiver.mask-urls")
    broker_transport.use_for_redis_urls()  # a lost broker must not stop the worker: see there
    app = Celery("archiver", include=["workers.tasks"] if include_tasks else [])
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # A publish gives up after about a second: the row is committed and due, so the sweeper
        # sends it later; the intake must not hang on a broker that is down.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        broker_transport_options={"visibility_timeout": REDIS_VISIBILITY_TIMEOUT},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        # After a broker reconnect, tasks still running from before are cancelled (their messages
        # come back) rather than run twice in parallel with their redelivered copies.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # SIGTERM (with REMAP_SIGTERM=SIGQUIT) starts a soft shutdown: running tasks get this long
        # to finish, then are handed back to the broker (acks_late); keep it under the grace period.
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_seconds,
        worker_enable_soft_shutdown_on_idle=True,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # Flower and events: bounded, so that months of events do not grow without limit.
        event_queue_expires=60,
        event_queue_ttl=5,
        task_soft_time_limit=settings.lease_seconds * 0.8,
        task_time_limit=settings.lease_seconds * 0.9,
        # Each queue its own direct exchange and routing key: a bare Queue(name) would take the
        # default exchange and key, binding every queue to the same route (every message copied
        # into every queue).
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES],
        task_default_queue=QUEUE_LIVE,
        task_routes=ROUTES,  # derived from workers/table.py
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "sweep-due-items": {
                "task": TASKS["sweep_due_items"].name,
                "schedule": settings.sweep_interval_seconds,
                # A sweep not started within one interval is pointless: the next one replaces it.
                "options": {
                    "queue": TASKS["sweep_due_items"].queue,
                    "expires": settings.sweep_interval_seconds,
                },
            }
        },
    )
    return app
