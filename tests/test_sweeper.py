"""The sweeper on PostgreSQL: overlapping sweeps never take the same rows (SKIP LOCKED), and only
due, unleased, not-recently-enqueued items are taken. Messages are counted in a real Redis queue.
A database of its own: the session's beat must not sweep these rows too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select

from archiver.clock import SystemClock
from archiver.config import Settings
from archiver.db.models import ArchiveItem, ItemState
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import QUEUE_DELETIONS, QUEUE_LIVE
from archiver.pipeline.sweeper import sweep_due_items
from workers.celery_app import create_celery_app
from workers.dispatch import CeleryDispatcher

SWEEP_BROKER = "redis://127.0.0.1:6379/8"


@pytest.fixture
def db(isolated_db):
    """A database of its own: the session's worker and beat must not act on these items."""
    return isolated_db


@pytest.fixture
def sweep_ctx(db):
    broker = redis.Redis.from_url(SWEEP_BROKER)
    broker.flushdb()
    settings = Settings(database_url=db.url, broker_url=SWEEP_BROKER, sweep_batch_size=7)
    app = create_celery_app(settings, include_tasks=False)
    ctx = PipelineContext(settings=settings, db=db, clock=SystemClock(), dispatcher=CeleryDispatcher(app))
    yield ctx, broker
    broker.flushdb()
    broker.close()


def add_items(db, n, **fields):
    now = datetime.now(UTC)
    with db.transaction() as uow:
        for i in range(n):
            uow.session.add(
                ArchiveItem(
                    provider="bandwidth", account_id="9900000", kind="realtime_transcription",
                    provider_id=f"t-{fields.get('state', 'pending')}-{i}-{now.timestamp()}", call_id="c-1",
                    attempts=0, deletion_requests=0, created_at=now, updated_at=now,
                    **{"state": ItemState.PENDING.value, "due_at": now - timedelta(seconds=1), **fields},
                )
            )  # fmt: skip


def test_overlapping_sweeps_enqueue_each_due_item_exactly_once(sweep_ctx, db):
    ctx, broker = sweep_ctx
    add_items(db, 60)
    add_items(db, 15, state=ItemState.DELETION_REQUESTED.value)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(sweep_due_items(ctx))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.enqueued for r in reports) == 75
    assert broker.llen(QUEUE_LIVE) == 60
    assert broker.llen(QUEUE_DELETIONS) == 15
    # A second sweep right away sends nothing: the messages are recent.
    assert sweep_due_items(ctx).enqueued == 0


def test_sweep_skips_what_is_not_due_leased_or_recently_enqueued(sweep_ctx, db):
    ctx, broker = sweep_ctx
    now = datetime.now(UTC)
    add_items(db, 3, due_at=now + timedelta(hours=1))  # not due
    add_items(db, 3, lease_owner="h:1:x", lease_expires_at=now + timedelta(minutes=5))  # held
    add_items(db, 3, enqueued_at=now - timedelta(seconds=5))  # message in flight
    add_items(db, 3, state=ItemState.PURGED.value)  # done
    add_items(db, 3, state=ItemState.DEAD.value)  # dead letters wait for an operator
    add_items(db, 2, lease_owner="h:2:y", lease_expires_at=now - timedelta(seconds=1))  # lease expired
    add_items(db, 2, enqueued_at=now - timedelta(hours=1))  # message lost long ago
    report = sweep_due_items(ctx)
    assert report.enqueued == 4
    assert broker.llen(QUEUE_LIVE) == 4


def test_each_message_lands_in_its_own_queue_only(sweep_ctx):
    """Every queue declared (as a worker does), one message per route: exactly one in each list.
    (Queues declared without their own exchange would all share one route: copies everywhere.)"""
    ctx, broker = sweep_ctx
    app = create_celery_app(ctx.settings, include_tasks=False)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
    from archiver.pipeline.dispatch import QUEUE_BACKFILL, QUEUE_MAINTENANCE, Step

    ctx.dispatcher.enqueue(Step.ARCHIVE, 1, "a")
    ctx.dispatcher.enqueue(Step.REQUEST_DELETION, 2, "b")
    ctx.dispatcher.enqueue(Step.ARCHIVE, 3, "c", QUEUE_BACKFILL)
    assert {q: broker.llen(q) for q in (QUEUE_LIVE, QUEUE_DELETIONS, QUEUE_BACKFILL, QUEUE_MAINTENANCE)} == {
        QUEUE_LIVE: 1,
        QUEUE_DELETIONS: 1,
        QUEUE_BACKFILL: 1,
        QUEUE_MAINTENANCE: 0,
    }


def test_resends_back_off_so_a_long_backlog_is_not_flooded(sweep_ctx, db):
    """A message that may still be queued is re-sent after requeue_after, then 2x, 4x… later, and
    the count starts over once a worker claims the item (its message got through)."""
    ctx, _broker = sweep_ctx
    requeue = ctx.settings.requeue_after_seconds
    now = datetime.now(UTC)
    add_items(db, 1, enqueued_at=now - timedelta(seconds=requeue + 5))
    assert sweep_due_items(ctx).enqueued == 1  # first re-send after requeue_after
    with db.sessionmaker() as session:
        item = session.scalars(select(ArchiveItem)).one()
    assert item.resends == 1

    def age(seconds):
        with db.transaction() as uow:
            uow.session.get(ArchiveItem, item.id).enqueued_at = datetime.now(UTC) - timedelta(seconds=seconds)

    age(requeue + 5)
    assert sweep_due_items(ctx).enqueued == 0  # the second waits twice as long
    age(2 * requeue + 5)
    assert sweep_due_items(ctx).enqueued == 1
    age(3 * requeue)
    assert sweep_due_items(ctx).enqueued == 0  # the third: four times
    from archiver.pipeline.leases import claim

    with db.transaction() as uow:
        result = claim(uow.session, item.id, ItemState.PENDING.value, "w:1:x", datetime.now(UTC), 60)
    assert result.item is not None and result.item.resends == 0  # claimed: the count starts over
