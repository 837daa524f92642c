"""Backfill: manually started sweeps of what the providers still hold.

A run is a row of ``backfill_runs``: its parameters, progress and a checkpoint (what is left to
list). The same parameters are the same run, so starting it again continues where it stopped.
A run is worked on by one task at a time (a lease on the row), a slice at a time, committing its
checkpoint together with the items it found, so a killed worker loses at most one list request.

**Bandwidth** lists recordings of an account in ``[since, until)``; the list is capped at 1000 with
no paging, in an order Bandwidth does not document. A page of fewer than 1000 is the whole window.
A full page in start order (oldest or newest first) is a cursor from its end of the window: about
one request per 1000 recordings. A full page in no order is split at its median. Each recording is
counted from the one page that proves it complete (:func:`split_window`). When 1000 share one
millisecond, that millisecond cannot be split: it is reported (``truncated_windows``), its 1000 are
kept, and the run goes on around it. For the calls found, real-time transcriptions are listed too.
**Twilio** lists a Service's transcripts by creation date, following ``meta.next_page_url`` (the
checkpoint), and archives the completed ones.

Every artifact found becomes an item exactly as if its webhook had arrived, on the backfill queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from archiver.db.models import ArchiveItem, ArtifactKind, BackfillRun, BackfillState, ItemState, Provider
from archiver.ids import InvalidId, validate
from archiver.pipeline.accounts import pause_account
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import QUEUE_BACKFILL
from archiver.pipeline.events import Action, AnnouncedItem, get_or_create_item
from archiver.providers.errors import ProviderError
from archiver.providers.http import ProviderHttp
from archiver.timestamps import iso_millis, parse_timestamp

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
) -> BackfillRun:
    validate("twilio_service", service_sid)
    params = {
        "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if until else None,
        "dry_run": dry_run,
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


# --- running ------------------------------------------------------------------------------------------


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
    step = _bandwidth_step if run.provider == Provider.BANDWIDTH else _twilio_step
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


def _commit_progress(
    ctx: PipelineContext,
    run_id: int,
    owner: str,
    found: list[AnnouncedItem],
    checkpoint: Any,
    *,
    windows_done: int = 0,
    requests: int = 0,
    truncated: list[list[int]] | None = None,
    done: bool = False,
) -> bool:
    """Create the items found (or count them, in a dry run) and move the checkpoint, in one
    transaction; ``False`` if the run is no longer ours or no longer running."""
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        session = uow.session
        run = session.scalars(
            select(BackfillRun)
            .where(BackfillRun.id == run_id, BackfillRun.lease_owner == owner)
            .with_for_update()
        ).one_or_none()
        if run is None or run.state != BackfillState.RUNNING:
            # Superseded (the lease expired and another worker took the run) or paused: the
            # progress is not ours to commit, but the request was made and counts.
            _count_requests(session, run_id, requests)
            return False
        new = known = 0
        for announced in found:
            if run.dry_run:
                exists = session.scalar(
                    select(func.count())
                    .select_from(ArchiveItem)
                    .where(
                        ArchiveItem.provider == announced.provider,
                        ArchiveItem.account_id == announced.account_id,
                        ArchiveItem.kind == announced.kind,
                        ArchiveItem.provider_id == announced.provider_id,
                    )
                )
                known += 1 if exists else 0
                continue
            _item, is_new = get_or_create_item(
                uow, ctx, announced, now, backfill_run_id=run_id, queue=QUEUE_BACKFILL
            )
            new, known = new + int(is_new), known + int(not is_new)
        run.found += len(found)
        run.enqueued += new
        run.skipped_known += known
        run.windows_done += windows_done
        run.list_requests += requests
        if truncated:
            run.truncated_windows = json.dumps([*json.loads(run.truncated_windows), *truncated])
        run.checkpoint = json.dumps(checkpoint)
        run.updated_at = now
        run.lease_expires_at = now + timedelta(seconds=ctx.settings.lease_seconds)  # heartbeat
        if done:
            run.state, run.finished_at = BackfillState.DONE, now
            log.info(
                "backfill run %d done: %d found, %d enqueued, %d already known, %d list requests",
                run_id,
                run.found,
                run.enqueued,
                run.skipped_known,
                run.list_requests,
            )
    return not done


def _count_requests(session: Session, run_id: int, requests: int) -> None:
    if requests:
        session.execute(
            update(BackfillRun)
            .where(BackfillRun.id == run_id)
            .values(list_requests=BackfillRun.list_requests + requests)
        )


@dataclass
class _Answered:
    """How many responses the provider client received during a list request (set at its end)."""

    count: int = 0


@contextmanager
def _list_request(ctx: PipelineContext, run_id: int, client: ProviderHttp) -> Iterator[_Answered]:
    """Counts the list requests the provider answered, retries in place and errors (a 429, a 5xx)
    included, as the provider counts them; one that never got an answer (a timeout, a refused
    connection, the shared budget spent) is not counted. A failed request is counted at once."""
    start, answered = client.answered, _Answered()
    try:
        yield answered
    except ProviderError:
        answered.count = client.answered - start
        if answered.count:
            with ctx.db.transaction() as uow:
                _count_requests(uow.session, run_id, answered.count)
        raise
    answered.count = client.answered - start


def _load(ctx: PipelineContext, run_id: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The run's scope (account or Service), parameters and checkpoint."""
    with ctx.db.sessionmaker() as session:
        run = session.get(BackfillRun, run_id)
        assert run is not None
        return run.scope, json.loads(run.params), json.loads(run.checkpoint)


def _recording_item(account_id: str, r: dict[str, Any]) -> AnnouncedItem | None:
    try:
        call_id = validate("bandwidth_call", r.get("callId"))
        recording_id = validate("bandwidth_recording", r.get("recordingId"))
    except InvalidId as exc:
        log.warning("backfill: skipped a recording with an invalid id: %s", exc)
        return None
    status = str(r.get("status") or "").lower()
    action = (
        Action.REJECT if status == "error" else Action.ARCHIVE if r.get("mediaUrl") else Action.ARCHIVE_LATER
    )
    return AnnouncedItem(
        provider=Provider.BANDWIDTH,
        account_id=account_id,
        kind=ArtifactKind.RECORDING,
        provider_id=recording_id,
        call_id=call_id,
        action=action,
        outcome="recording status 'error': no media to fetch" if action is Action.REJECT else None,
        provider_started_at=parse_timestamp(r.get("startTime")),
        provider_completed_at=parse_timestamp(r.get("endTime")),
        partial=status == "partial",
    )


@dataclass(frozen=True)
class Split:
    """What one page of ``[since, until)`` settles: the start times it proves complete (``keep``,
    half-open, in milliseconds), the windows still to list, and the millisecond the cap hid."""

    keep: tuple[int, int] | None
    windows: list[list[int]]
    finished: int = 0
    truncated: list[list[int]] = field(default_factory=list)

    def keeps(self, start: int) -> bool:
        return self.keep is not None and self.keep[0] <= start < self.keep[1]


def split_window(since: int, until: int, starts: list[int], *, full: bool) -> Split:
    """How a page answered for ``[since, until)`` moves the listing on (pure: tested on its own).

    Bandwidth caps the list at 1000 and documents no order, so each recording is counted from the
    one page that proves it complete, and from no other:

    * a page of fewer than 1000 is the whole window: all of it is kept;
    * a full page in start order is the window's oldest 1000: those before its last millisecond are
      complete; the window goes on from that millisecond (a cursor);
    * a full page in reverse start order is the newest 1000: those after its first millisecond are
      complete; the window goes on up to and including that millisecond (the cursor from the end);
    * a full page in no order proves nothing: none of it is kept, the window is split at its median;
    * a full page all in one millisecond cannot be split: its 1000 are kept, the millisecond reported.
    """
    if not full:
        return Split((since, until), [], finished=1)
    # A start outside the window (a provider's rounding) says nothing about it: read as its edge.
    starts = [min(max(s, since), until - 1) for s in starts]
    lo, hi = min(starts), max(starts)
    if lo == hi:
        windows = [w for w in ([lo + 1, until], [since, lo]) if w[0] < w[1]]
        return Split((lo, lo + 1), windows, truncated=[[lo, lo + 1]])
    if starts == sorted(starts):
        return Split((since, hi), [[hi, until]])
    if starts == sorted(starts, reverse=True):
        return Split((lo + 1, until), [[since, lo + 1]])
    middle = min(max(sorted(starts)[len(starts) // 2], since + 1), until - 1)
    return Split(None, [[middle, until], [since, middle]])


def _bandwidth_step(ctx: PipelineContext, run_id: int, owner: str) -> bool:
    account, params, checkpoint = _load(ctx, run_id)
    windows: list[list[int]] = checkpoint["windows"]
    if not windows:
        return _commit_progress(ctx, run_id, owner, [], checkpoint, requests=0, done=True)
    since, until = windows.pop()
    with _list_request(ctx, run_id, ctx.bandwidth) as answered:
        page = ctx.bandwidth.list_recordings(
            account, ms_iso(since), ms_iso(until), to=params.get("to"), from_=params.get("from")
        )
    starts = [
        to_ms(parse_timestamp(r.get("startTime")) or datetime.fromtimestamp(since / 1000, UTC)) for r in page
    ]
    split = split_window(since, until, starts, full=len(page) >= CAP)
    if split.truncated:
        log.warning(
            "backfill run %d: more than %d recordings start at %s; the cap hides the rest",
            run_id,
            CAP - 1,
            ms_iso(split.truncated[0][0]),
        )
    keep = [r for r, s in zip(page, starts, strict=True) if split.keeps(s)]
    windows += split.windows
    truncated, finished_window = split.truncated, split.finished
    found = [a for r in keep if (a := _recording_item(account, r)) is not None]
    if params.get("realtime", True):
        for call_id in sorted({a.call_id for a in found if a.call_id}):
            for t in ctx.bandwidth.list_realtime_transcriptions(account, call_id):
                try:
                    tid = validate("bandwidth_transcription", t.get("transcriptionId"))
                except InvalidId:
                    continue
                found.append(
                    AnnouncedItem(
                        provider=Provider.BANDWIDTH,
                        account_id=account,
                        kind=ArtifactKind.REALTIME_TRANSCRIPTION,
                        provider_id=tid,
                        call_id=call_id,
                        action=Action.ARCHIVE,
                    )
                )
    checkpoint["windows"] = windows
    return _commit_progress(
        ctx,
        run_id,
        owner,
        found,
        checkpoint,
        windows_done=finished_window,
        requests=answered.count,
        truncated=truncated,
        done=not windows,
    )


def _twilio_step(ctx: PipelineContext, run_id: int, owner: str) -> bool:
    service, params, checkpoint = _load(ctx, run_id)
    query = {"ServiceSid": service, "PageSize": "1000", "AfterDateCreated": params["since"]}
    if params.get("until"):
        query["BeforeDateCreated"] = params["until"]
    with _list_request(ctx, run_id, ctx.twilio) as answered:
        items, next_url = ctx.twilio.transcript_page(checkpoint.get("next_url"), query)
    found = []
    for t in items:
        try:
            sid = validate("twilio_transcript", t.get("sid"))
            account = validate("twilio_account", t.get("account_sid"))
        except InvalidId:
            continue
        if t.get("status") == "completed":
            found.append(AnnouncedItem.twilio_transcript(account, sid))
    checkpoint = {"next_url": next_url, "started": True}
    return _commit_progress(
        ctx, run_id, owner, found, checkpoint, windows_done=1, requests=answered.count, done=next_url is None
    )
