"""The sweeper on PostgreSQL: overlapping sweeps never take the same rows (SKIP LOCKED), and only
due, unleased, not-recently-enqueued items are taken. Messages are counted in a real Redis queue.
A database of its own: the session's beat must not sweep these rows too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select

from archiver.core.config import Settings
from archiver.db.models import ArchiveItem, ItemState
from archiver.pipeline.dispatch import QUEUE_BACKFILL, QUEUE_DELETIONS, QUEUE_LIVE
from archiver.pipeline.sweeper import sweep_due_items
from tests.support.stack import SPARE_REDIS_URL
from workers.celery_app import create_celery_app
from workers.wiring import build_context

SWEEP_BROKER = SPARE_REDIS_URL


@pytest.fixture
def db(isolated_db):
    """A database of its own: the session's worker and beat must not act on these items."""
    return isolated_db


@pytest.fixture
def sweep_ctx(db):
    broker = redis.Redis.from_url(SWEEP_BROKER)
    broker.flushdb()
    settings = Settings(database_url=db.url, broker_url=SWEEP_BROKER, sweep_batch_size=7)
    ctx = build_context(settings)
    yield ctx, broker
    ctx.close()
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


def test_running_backfill_runs_that_nobody_works_on_are_sent_again(sweep_ctx, db):
    """A run whose message was lost (its task killed by a time limit, say) is resumed by the sweep;
    a run being worked on, a fresh one, a dry run (driven by its command) and a paused one are not."""
    import json

    from archiver.backfill import resume_orphaned_runs
    from archiver.db.models import BackfillRun
    from archiver.pipeline.dispatch import QUEUE_MAINTENANCE

    ctx, broker = sweep_ctx
    now = datetime.now(UTC)
    old = now - timedelta(seconds=ctx.settings.requeue_after_seconds + 5)
    variants = {
        "orphaned": {"updated_at": old},
        "expired-lease": {
            "updated_at": old,
            "lease_owner": "h:1",
            "lease_expires_at": now - timedelta(seconds=1),
        },
        "held": {"updated_at": old, "lease_owner": "h:2", "lease_expires_at": now + timedelta(seconds=60)},
        "fresh": {"updated_at": now},
        "dry": {"updated_at": old, "dry_run": True},
        "paused": {"updated_at": old, "state": "paused"},
    }
    ids = {}
    with db.transaction() as uow:
        for name, fields in variants.items():
            run = BackfillRun(
                provider="bandwidth", scope="9900000", params_key=name, params="{}", checkpoint="{}",
                windows_done=0, list_requests=0, found=0, enqueued=0, skipped_known=0, truncated_windows="[]",
                created_at=old, **{"state": "running", "dry_run": False, **fields},
            )  # fmt: skip
            uow.session.add(run)
            uow.session.flush()
            ids[name] = run.id
    sweep_due_items(ctx, also=(resume_orphaned_runs,))  # as beat's sweep task does
    sent = [json.loads(m)["headers"]["argsrepr"] for m in broker.lrange(QUEUE_MAINTENANCE, 0, -1)]
    assert sorted(sent) == sorted(f"[{ids[n]}]" for n in ("orphaned", "expired-lease"))
    sweep_due_items(ctx, also=(resume_orphaned_runs,))  # sent once per requeue interval, not every sweep
    assert broker.llen(QUEUE_MAINTENANCE) == 2


def test_resends_wait_while_their_queue_is_backed_up_first_sends_do_not(sweep_ctx, db):
    """A message sent into a long queue is most likely still there: no duplicate while it drains."""
    ctx, broker = sweep_ctx
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    add_items(db, 3, enqueued_at=long_ago)  # re-sends due
    add_items(db, 2, state=ItemState.DELETION_REQUESTED.value, enqueued_at=long_ago)
    add_items(db, 4)  # never sent: first sends
    add_items(db, 5, enqueued_at=long_ago, backfill_run_id=1)  # found by a backfill
    for n in range(ctx.settings.sweep_batch_size + 1):  # the live queue is backed up
        broker.rpush(QUEUE_LIVE, f"stand-in {n}")
    first = sweep_due_items(ctx)
    assert first.by_state == {"pending": 4 + 5, "deletion_requested": 2}
    assert broker.llen(QUEUE_LIVE) == ctx.settings.sweep_batch_size + 1 + 4
    assert broker.llen(QUEUE_BACKFILL) == 5  # backfill items go back to their own queue
    broker.delete(QUEUE_LIVE)  # drained: the withheld re-sends go now
    with db.transaction() as uow:
        for item in uow.session.scalars(select(ArchiveItem).where(ArchiveItem.enqueued_at.is_not(None))):
            item.enqueued_at = long_ago
    second = sweep_due_items(ctx)
    assert second.enqueued == 3 + 2 + 4 + 5
