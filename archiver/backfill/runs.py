"""Starting and steering backfill runs: a run is a row of ``backfill_runs``, its parameters,
progress and checkpoint; the same parameters are the same run, so starting it again continues where
it stopped. Pausing, cancelling, failing, waiting for a paused account, and the status of runs."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select

from archiver.core.ids import validate
from archiver.core.timestamps import iso_millis
from archiver.db.models import ArchiveItem, BackfillRun, BackfillState, ItemState, Provider
from archiver.pipeline.accounts import pause_account
from archiver.pipeline.context import PipelineContext

log = logging.getLogger(__name__)

CAP = 1000
DONE_STATES = (BackfillState.DONE, BackfillState.CANCELLED, BackfillState.FAILED)


def to_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def ms_iso(ms: int) -> str:
    return iso_millis(datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000))


class BackfillError(Exception):
    """A backfill that cannot start or go on (bad parameters, a finished run)."""


# --- starting and steering runs ---------------------------------------------------------------------


def _params_key(provider: str, scope: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"provider": provider, "scope": scope, **params}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _start(
    ctx: PipelineContext, provider: str, scope: str, params: dict[str, Any], checkpoint: Any
) -> BackfillRun:
    key = _params_key(provider, scope, params)
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        run = uow.session.scalars(select(BackfillRun).where(BackfillRun.params_key == key)).one_or_none()
        if run is None:
            run = BackfillRun(
                provider=provider,
                scope=scope,
                params_key=key,
                params=json.dumps(params),
                dry_run=bool(params.get("dry_run")),
                state=BackfillState.RUNNING,
                checkpoint=json.dumps(checkpoint),
                windows_done=0,
                list_requests=0,
                found=0,
                enqueued=0,
                skipped_known=0,
                truncated_windows="[]",
                created_at=now,
                updated_at=now,
            )
            uow.session.add(run)
        elif run.state == BackfillState.PAUSED:
            run.state, run.updated_at = BackfillState.RUNNING, now
    return run


def start_bandwidth_backfill(
    ctx: PipelineContext,
    account_id: str,
    since: datetime,
    until: datetime,
    *,
    to: str | None = None,
    from_: str | None = None,
    realtime: bool = True,
    dry_run: bool = False,
) -> BackfillRun:
    """Create (or find, to continue) the run for these parameters. Run it with :func:`run_backfill`."""
    validate("bandwidth_account", account_id)
    if since.tzinfo is None or until.tzinfo is None or since >= until:
        raise BackfillError("since and until must be timezone-aware, with since before until")
    params = {
        "since": ms_iso(to_ms(since)),
        "until": ms_iso(to_ms(until)),
        "to": to,
        "from": from_,
        "realtime": realtime,
        "dry_run": dry_run,
    }
    return _start(ctx, Provider.BANDWIDTH, account_id, params, {"windows": [[to_ms(since), to_ms(until)]]})


def start_twilio_backfill(
    ctx: PipelineContext,
    service_sid: str,
    since: datetime,
    until: datetime | None = None,
    *,
    dry_run: bool = False,
    account_sid: str | None = None,
) -> BackfillRun:
    """``account_sid``: the Service's account, whose credentials list it (default: the only one)."""
    validate("twilio_service", service_sid)
    params = {
        "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if until else None,
        "dry_run": dry_run,
        "account": validate("twilio_account", account_sid) if account_sid else None,
    }
    return _start(ctx, Provider.TWILIO, service_sid, params, {"next_url": None, "started": False})


def set_state(ctx: PipelineContext, run_id: int, state: BackfillState) -> BackfillRun:
    """Pause, resume (RUNNING) or cancel a run. The row is locked first: a worker committing the
    run's last page at the same moment makes it done, and a pause must not then overwrite that."""
    with ctx.db.transaction() as uow:
        run = uow.session.get(BackfillRun, run_id, with_for_update=True)
        if run is None:
            raise BackfillError(f"no backfill run {run_id}")
        if run.state in DONE_STATES and state != run.state:
            raise BackfillError(f"run {run_id} is {run.state}")
        run.state, run.updated_at = state, ctx.clock.now()
        if state == BackfillState.CANCELLED:
            run.finished_at = run.updated_at
    return run


def fail_run(ctx: PipelineContext, run_id: int, reason: str) -> None:
    with ctx.db.transaction() as uow:
        run = uow.session.get(BackfillRun, run_id)
        if run is not None and run.state == BackfillState.RUNNING:
            run.state, run.last_error = BackfillState.FAILED, reason
            run.finished_at = run.updated_at = ctx.clock.now()
            run.lease_owner = run.lease_expires_at = None
    log.error("backfill run %d failed: %s", run_id, reason)


def wait_for_account(ctx: PipelineContext, run_id: int, provider: str, account_id: str, reason: str) -> None:
    """The provider refused the account's credentials during a slice: pause the account; the run
    waits (a due time, swept by :func:`resume_orphaned_runs`), it does not fail."""
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        account = pause_account(uow.session, ctx.settings, provider, account_id, reason, now)
        run = uow.session.get(BackfillRun, run_id, with_for_update=True)
        if run is not None and run.state == BackfillState.RUNNING:
            run.due_at, run.updated_at = account.check_at, now
            run.last_error = f"waiting for the account: {reason}"


def run_account(ctx: PipelineContext, run_id: int) -> str:
    """The provider account a run lists: a Bandwidth run's scope; Twilio's configured account."""
    with ctx.db.sessionmaker() as session:
        run = session.get(BackfillRun, run_id)
        if run is None:
            raise BackfillError(f"no backfill run {run_id}")
        return run.scope if run.provider == Provider.BANDWIDTH else str(ctx.settings.twilio_account_sid)


def resume_orphaned_runs(ctx: PipelineContext) -> int:
    """Send again every running run that nobody works on: its last message was lost (a task killed
    by its time limit, a broker restarted) or never sent, or it waited for its account and is due.
    Dry runs are driven by their own command. A duplicate message is harmless: only one worker can
    hold a run."""
    now = ctx.clock.now()
    stale = now - timedelta(seconds=ctx.settings.requeue_after_seconds)
    with ctx.db.transaction() as uow:
        runs = uow.session.scalars(
            select(BackfillRun)
            .where(
                BackfillRun.state == BackfillState.RUNNING,
                BackfillRun.dry_run.is_(False),
                (BackfillRun.lease_owner.is_(None)) | (BackfillRun.lease_expires_at < now),
                ((BackfillRun.due_at.is_(None)) & (BackfillRun.updated_at < stale))
                | (BackfillRun.due_at <= now),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for run in runs:
            if run.due_at is None:
                log.warning("backfill run %d had no worker for a while: sent again", run.id)
            run.updated_at, run.due_at = now, None
            uow.after_commit(partial(ctx.dispatcher.enqueue_backfill, run.id))
    return len(runs)


def enqueue_backfill(app: Any, run_id: int) -> None:
    """Send the run's first message (``app``: the Celery app)."""
    from archiver.pipeline.dispatch import BACKFILL_TASK_NAME, QUEUE_MAINTENANCE

    app.send_task(BACKFILL_TASK_NAME, args=[run_id], queue=QUEUE_MAINTENANCE)


def backfill_status(ctx: PipelineContext, run_id: int | None = None) -> list[dict[str, Any]]:
    with ctx.db.sessionmaker() as session:
        query = select(BackfillRun).order_by(BackfillRun.id.desc())
        runs = (
            [session.get(BackfillRun, run_id)]
            if run_id is not None
            else list(session.scalars(query.limit(20)))
        )
        out = []
        for run in runs:
            if run is None:
                raise BackfillError(f"no backfill run {run_id}")
            archived = session.scalar(
                select(func.count())
                .select_from(ArchiveItem)
                .where(
                    ArchiveItem.backfill_run_id == run.id,
                    ArchiveItem.state.in_(
                        [ItemState.ARCHIVED, ItemState.DELETION_REQUESTED, ItemState.PURGED]
                    ),
                )
            )
            out.append(
                {
                    "id": run.id,
                    "provider": run.provider,
                    "scope": run.scope,
                    "params": json.loads(run.params),
                    "state": run.state,
                    "dry_run": run.dry_run,
                    "windows_done": run.windows_done,
                    "list_requests": run.list_requests,
                    "found": run.found,
                    "enqueued": run.enqueued,
                    "skipped_known": run.skipped_known,
                    "archived": int(archived or 0),
                    "truncated_windows": json.loads(run.truncated_windows),
                    "last_error": run.last_error,
                    "created_at": run.created_at.isoformat(),
                    "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                }
            )
    return out
