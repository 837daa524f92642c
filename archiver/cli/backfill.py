"""``archiver backfill …``: start or continue a run, follow it with a live progress bar, steer it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from archiver.backfill import (
    BackfillError,
    backfill_status,
    enqueue_backfill,
    run_backfill,
    set_state,
    start_bandwidth_backfill,
    start_twilio_backfill,
)
from archiver.core.config import Settings
from archiver.core.timestamps import parse_timestamp
from archiver.db.models import BackfillState
from archiver.pipeline.context import PipelineContext


def _when(value: str) -> datetime:
    parsed = parse_timestamp(value if "T" in value else f"{value}T00:00:00Z")
    if parsed is None:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or date-time: {value!r}")
    return parsed


def add_parser(sub: Any) -> None:
    backfill = sub.add_parser("backfill", help="sweep what a provider still holds (started by hand)")
    commands = backfill.add_subparsers(dest="backfill_command", required=True)
    bw = commands.add_parser("bandwidth", help="recordings (and real-time transcriptions) of an account")
    bw.add_argument(
        "--account", help="the account id (default: every Bandwidth account of the registry, one run each)"
    )
    bw.add_argument("--since", required=True, type=_when, help="inclusive, ISO-8601 (UTC if no zone)")
    bw.add_argument("--until", type=_when, help="exclusive (default: now)")
    bw.add_argument("--to", help="only recordings to this number (E.164, +…)")
    bw.add_argument("--from", dest="from_", help="only recordings from this number")
    bw.add_argument(
        "--no-realtime", action="store_true", help="do not list real-time transcriptions of the calls"
    )
    tw = commands.add_parser("twilio", help="transcripts of an Intelligence Service")
    tw.add_argument("--service", required=True)
    tw.add_argument("--account", help="the Service's AccountSid (default: the only Twilio account)")
    tw.add_argument("--since", required=True, type=_when)
    tw.add_argument("--until", type=_when)
    for parser in (bw, tw):
        parser.add_argument(
            "--dry-run", action="store_true", help="count only: nothing is created or enqueued"
        )
        parser.add_argument("--no-wait", action="store_true", help="start (or continue) the run and return")
        parser.add_argument("--json", action="store_true", help="print the final status as JSON")
    status = commands.add_parser("status", help="a run's progress (default: the recent runs)")
    status.add_argument("run", nargs="?", type=int)
    status.add_argument("--json", action="store_true")
    for name in ("pause", "resume", "cancel"):
        steer = commands.add_parser(name, help=f"{name} a run")
        steer.add_argument("run", type=int)
        steer.set_defaults(steer=name)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    from workers.celery_app import create_celery_app
    from workers.wiring import build_context

    app = create_celery_app(settings, include_tasks=False)
    ctx = build_context(settings, app=app)
    try:
        return _run(args, ctx, app)
    except BackfillError as exc:
        print(f"archiver backfill: {exc}", file=sys.stderr)
        return 2
    finally:
        ctx.close()


def _run(args: argparse.Namespace, ctx: PipelineContext, app: Any) -> int:
    command = args.backfill_command
    if command == "status":
        runs = backfill_status(ctx, args.run)
        print(
            json.dumps(runs if args.run is None else runs[0], indent=2)
            if args.json
            else "\n".join(map(_line, runs))
        )
        return 0
    if command in ("pause", "resume", "cancel"):
        state = {
            "pause": BackfillState.PAUSED,
            "resume": BackfillState.RUNNING,
            "cancel": BackfillState.CANCELLED,
        }
        run = set_state(ctx, args.run, state[command])
        if command == "resume":
            enqueue_backfill(app, run.id)
        print(_line(backfill_status(ctx, run.id)[0]))
        return 0
    until = args.until or datetime.now(UTC)
    if command == "bandwidth":
        accounts = [args.account] if args.account else ctx.accounts.current().named("bandwidth")
        if not accounts:
            raise BackfillError("name the account (--account): the environment's account has no id")
        started = [
            start_bandwidth_backfill(
                ctx,
                account,
                args.since,
                until,
                to=args.to,
                from_=args.from_,
                realtime=not args.no_realtime,
                dry_run=args.dry_run,
            )
            for account in accounts
        ]
        if len(started) > 1:
            return _several(args, ctx, app, started)
        [run] = started
    else:
        run = start_twilio_backfill(
            ctx, args.service, args.since, args.until, dry_run=args.dry_run, account_sid=args.account
        )
    print(f"backfill run {run.id} ({run.state})", file=sys.stderr)
    if run.state != BackfillState.RUNNING:
        final = backfill_status(ctx, run.id)[0]
    elif args.dry_run:
        while run_backfill(ctx, run.id, budget_seconds=3600).more:  # counting only: here, not by workers
            time.sleep(0.5)
        final = backfill_status(ctx, run.id)[0]
    else:
        enqueue_backfill(app, run.id)
        if args.no_wait:
            print(
                json.dumps({"run": run.id})
                if args.json
                else f"run {run.id} started; follow it with `archiver backfill status {run.id}`"
            )
            return 0
        final = _follow(ctx, run.id)
    print(json.dumps(final, indent=2) if args.json else _line(final))
    return 0 if final["state"] in (BackfillState.DONE, BackfillState.RUNNING) else 1


def _several(args: argparse.Namespace, ctx: PipelineContext, app: Any, runs: list[Any]) -> int:
    """One run per account: all started at once (the workers share them), then followed together."""
    for run in runs:
        print(f"backfill run {run.id} ({run.state}) for account {run.scope}", file=sys.stderr)
        if run.state == BackfillState.RUNNING:
            if args.dry_run:
                while run_backfill(ctx, run.id, budget_seconds=3600).more:
                    time.sleep(0.5)
            else:
                enqueue_backfill(app, run.id)
    if args.no_wait and not args.dry_run:
        print(
            json.dumps({"runs": [r.id for r in runs]})
            if args.json
            else f"runs {[r.id for r in runs]} started"
        )
        return 0
    while True:
        finals = [backfill_status(ctx, run.id)[0] for run in runs]
        if all(f["state"] != BackfillState.RUNNING for f in finals) or args.dry_run:
            break
        time.sleep(0.5)
    print(json.dumps(finals, indent=2) if args.json else "\n".join(map(_line, finals)))
    return 0 if all(f["state"] == BackfillState.DONE for f in finals) else 1


def _follow(ctx: PipelineContext, run_id: int) -> dict[str, Any]:
    """A live progress bar until the run stops listing (Ctrl-C stops following, not the run)."""
    with tqdm(desc=f"run {run_id}", unit="item", file=sys.stderr, dynamic_ncols=True, leave=True) as bar:
        try:
            while True:
                status = backfill_status(ctx, run_id)[0]
                show_progress(bar, status)
                if status["state"] != BackfillState.RUNNING:
                    return status
                time.sleep(0.5)
        except KeyboardInterrupt:
            bar.write("stopped following; the run goes on")
            return backfill_status(ctx, run_id)[0]


def show_progress(bar: tqdm[Any], status: dict[str, Any]) -> None:
    """The bar counts archived items out of those found so far; the rest is its postfix."""
    bar.total = max(status["found"], 1)
    bar.n = min(status["archived"], bar.total)
    bar.set_postfix_str(
        f"{status['state']}: windows {status['windows_done']}, list requests {status['list_requests']}, "
        f"enqueued {status['enqueued']}, already known {status['skipped_known']}",
        refresh=False,
    )
    bar.refresh()


def _line(status: dict[str, Any]) -> str:
    truncated = status["truncated_windows"]
    note = f"; {len(truncated)} window(s) hidden by the 1000 cap: {truncated}" if truncated else ""
    return (
        f"run {status['id']} {status['provider']} {status['scope']} {status['state']}"
        f"{' (dry run)' if status['dry_run'] else ''}: windows {status['windows_done']}, list requests "
        f"{status['list_requests']}, found {status['found']}, enqueued {status['enqueued']}, already known "
        f"{status['skipped_known']}, archived {status['archived']}{note}"
    )
