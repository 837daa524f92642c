"""The sweeper (run by beat): re-enqueues every item whose step is due and that nobody holds.

This is how every wait longer than a Celery countdown ends: a long Retry-After, the purge window, a
lease left by a killed worker, a message lost with a restarted broker, an account paused while its
credentials are refused (checked again here, its items held back until it resumes). On PostgreSQL the batch is
selected ``FOR UPDATE SKIP LOCKED`` so that overlapping sweeps never take the same rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import ColumnElement, and_, not_, or_, select

from archiver.db.models import ACTIVE_STATES, ArchiveItem
from archiver.pipeline.accounts import check_paused_accounts, not_paused
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import STATE_STEP, queue_for
from archiver.pipeline.retention import at_risk, retention_by_account

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    enqueued: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


#: Re-sends wait requeue_after * 2^n, n capped here (64 times: about 10 h with the default 10 min).
MAX_RESEND_DOUBLINGS = 6


def _resend_due(now: datetime, requeue_after: float, busy_queues: set[str]) -> ColumnElement[bool]:
    """No message outstanding; or the last one older than requeue_after * 2^resends and its queue
    not backed up (a message sent into a long queue is most likely still waiting there: it is
    re-sent once the queue has drained, not duplicated while it drains)."""
    bands = [
        (ArchiveItem.resends == n if n < MAX_RESEND_DOUBLINGS else ArchiveItem.resends >= n)
        & (ArchiveItem.enqueued_at < now - timedelta(seconds=requeue_after * 2**n))
        for n in range(MAX_RESEND_DOUBLINGS + 1)
    ]
    waiting = [
        (ArchiveItem.state == state)
        & (
            ArchiveItem.backfill_run_id.is_not(None)
            if from_backfill
            else ArchiveItem.backfill_run_id.is_(None)
        )
        for state, step in STATE_STEP.items()
        for from_backfill in (False, True)
        if queue_for(step, from_backfill) in busy_queues
    ]
    resend = and_(or_(*bands), not_(or_(*waiting))) if waiting else or_(*bands)
    return or_(ArchiveItem.enqueued_at.is_(None), resend)


def sweep_due_items(
    ctx: PipelineContext, max_batches: int = 50, also: Sequence[Callable[[PipelineContext], object]] = ()
) -> SweepReport:
    """Send every due item no live worker holds (in batches, ``SKIP LOCKED``), warn of retention
    risk, run the ``also`` sweeps (the backfill runs'), then check the paused accounts."""
    report = SweepReport()
    batch_size = ctx.settings.sweep_batch_size
    backlog = ctx.dispatcher.backlog() or {}
    busy_queues = {queue for queue, depth in backlog.items() if depth > batch_size}
    for _ in range(max_batches):
        now = ctx.clock.now()
        with ctx.db.transaction() as uow:
            items = uow.session.scalars(
                select(ArchiveItem)
                .where(
                    ArchiveItem.state.in_([s.value for s in ACTIVE_STATES]),
                    ArchiveItem.due_at <= now,
                    or_(ArchiveItem.lease_owner.is_(None), ArchiveItem.lease_expires_at < now),
                    _resend_due(now, ctx.settings.requeue_after_seconds, busy_queues),
                    not_paused(),  # a paused account's items wait for it (pipeline/accounts.py)
                )
                .order_by(ArchiveItem.due_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for item in items:
                # A first send after a due wait is not a re-send; a message that may still be queued is.
                item.resends = item.resends + 1 if item.enqueued_at is not None else 0
                item.enqueued_at = now
                step = STATE_STEP[item.state]
                queue = queue_for(step, item.backfill_run_id is not None)
                uow.after_commit(partial(ctx.dispatcher.enqueue, step, item.id, item.ref, queue))
                report.by_state[item.state] = report.by_state.get(item.state, 0) + 1
            report.enqueued += len(items)
        if len(items) < batch_size:
            break
    if report.enqueued:
        log.info("sweep enqueued %d item(s): %s", report.enqueued, report.by_state)
    warn_retention_risk(ctx)
    for sweep in also:
        sweep(ctx)
    # Last: a slow provider delays no item. An account resumed here has its items swept next time.
    check_paused_accounts(ctx)
    return report


_last_risk_warning = 0.0
RISK_WARNING_INTERVAL = 300.0


def warn_retention_risk(ctx: PipelineContext) -> int:
    """Log (at most every 5 minutes per process) how many recordings are near Bandwidth's deletion."""
    global _last_risk_warning
    if time.monotonic() - _last_risk_warning < RISK_WARNING_INTERVAL:
        return 0
    with ctx.db.sessionmaker() as session:
        retention = retention_by_account(ctx.accounts.current())
        risk = at_risk(session, ctx.settings, ctx.clock.now(), limit=5, retention=retention)
    if risk["count"]:
        _last_risk_warning = time.monotonic()
        soonest = risk["items"][0]
        log.warning(
            "%d recording(s) not archived within %.0f days of Bandwidth's %.0f-day retention; soonest: %s "
            "(deleted by the provider at %s); see `archiver status`",
            risk["count"],
            ctx.settings.retention_margin_days,
            ctx.settings.retention_days,
            soonest["ref"],
            soonest["provider_deletes_at"],
        )
    return int(risk["count"])
