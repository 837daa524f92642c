"""Working on a run: one task at a time holds it (a lease on the row), a slice of about 20 s at a
time; the provider's own step lists and commits its progress after every list request."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update

from archiver.backfill.bandwidth import bandwidth_step
from archiver.backfill.runs import BackfillError
from archiver.backfill.twilio import twilio_step
from archiver.db.models import BackfillRun, BackfillState, Provider
from archiver.pipeline.context import PipelineContext


@dataclass
class SliceResult:
    state: str
    more: bool  # call again to go on
    busy: bool = False  # another worker holds the run now


def _claim(ctx: PipelineContext, run_id: int, owner: str) -> BackfillRun | None:
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        claimed = uow.session.execute(
            update(BackfillRun)
            .where(
                BackfillRun.id == run_id,
                BackfillRun.state == BackfillState.RUNNING,
                (BackfillRun.lease_owner.is_(None)) | (BackfillRun.lease_expires_at < now),
            )
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=ctx.settings.lease_seconds),
                due_at=None,  # whatever sent it, it is under way: not due again
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        run = uow.session.get(BackfillRun, run_id, populate_existing=True)
    return run if claimed == 1 else None


def run_backfill(ctx: PipelineContext, run_id: int, budget_seconds: float = 20.0) -> SliceResult:
    """Work on a run for about ``budget_seconds``; committed progress after every list request."""
    owner = ctx.new_lease_owner()
    run = _claim(ctx, run_id, owner)
    if run is None:
        with ctx.db.sessionmaker() as session:
            current = session.get(BackfillRun, run_id)
        if current is None:
            raise BackfillError(f"no backfill run {run_id}")
        busy = current.state == BackfillState.RUNNING  # another worker holds it
        return SliceResult(current.state, more=busy, busy=busy)
    step = bandwidth_step if run.provider == Provider.BANDWIDTH else twilio_step
    deadline = time.monotonic() + budget_seconds
    try:
        while time.monotonic() < deadline:
            if not step(ctx, run_id, owner):
                break
    finally:
        with ctx.db.transaction() as uow:
            uow.session.execute(
                update(BackfillRun)
                .where(BackfillRun.id == run_id, BackfillRun.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
    with ctx.db.sessionmaker() as session:
        final = session.get(BackfillRun, run_id)
        assert final is not None
        return SliceResult(final.state, more=final.state == BackfillState.RUNNING)
