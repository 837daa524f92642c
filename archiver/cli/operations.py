"""``archiver items``, ``archiver deletions`` and ``archiver reconcile``: the operator's commands
over :mod:`archiver.ops.operations`. Exit status 0 when all is well, 1 when something needs a look
(mismatches found), 2 for a request that cannot be carried out."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from archiver.core.terminal import printable
from archiver.ops import operations
from archiver.pipeline.context import PipelineContext


def _when(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_parsers(sub: Any) -> None:
    items = sub.add_parser("items", help="dead letters, retries and an item's history")
    items_sub = items.add_subparsers(dest="items_command", required=True)
    dead = items_sub.add_parser("dead", help="dead-lettered items with their reasons")
    dead.add_argument("--limit", type=int, default=1000)
    dead.add_argument("--json", action="store_true")
    retry = items_sub.add_parser("retry", help="retry dead items from the step where they stopped")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], help="item ids")
    which.add_argument("--all-dead", action="store_true", help="every dead-lettered item")
    show = items_sub.add_parser("show", help="an item's row, full history and archived objects")
    show.add_argument("item", help="the item's id or its provider id")
    show.add_argument("--json", action="store_true")

    deletions = sub.add_parser("deletions", help="the deletion audit")
    deletions_sub = deletions.add_subparsers(dest="deletions_command", required=True)
    report = deletions_sub.add_parser(
        "report", help="what was deleted at the provider, when, and when its purge was confirmed"
    )
    report.add_argument("--format", choices=["csv", "json"], default="csv")
    report.add_argument("--since", type=_when, help="deletions requested at or after (ISO-8601)")
    report.add_argument("--until", type=_when, help="deletions requested before (ISO-8601)")
    report.add_argument("--account", help="one account's deletions only (its id or AccountSid)")

    reconcile = sub.add_parser(
        "reconcile", help="re-read every archived object's length and checksums from S3; report mismatches"
    )
    reconcile.add_argument("--read-back", action="store_true", help="also download and re-hash every object")
    reconcile.add_argument("--json", action="store_true")


def run_command(args: argparse.Namespace, ctx: PipelineContext) -> int:
    try:
        if args.command == "items":
            return _items(args, ctx)
        if args.command == "deletions":
            rows = operations.deletion_audit(ctx, args.since, args.until, args.account)
            if args.format == "csv":
                for chunk in operations.deletion_audit_csv(rows):
                    sys.stdout.write(chunk)
            else:
                json.dump(list(rows), sys.stdout, indent=2)
                sys.stdout.write("\n")
            return 0
        report = operations.reconcile(ctx, read_back=args.read_back)
        result = report.as_dict()
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            for m in result["mismatches"]:
                print(
                    f"MISMATCH item {m['item_id']} {printable(m['ref'])} {m['role']} {printable(m['uri'])}: "
                    f"{printable(m['problem'])}"
                )
            print(
                f"{result['checked']} object(s), {result['bytes']} bytes checked; "
                f"{len(result['mismatches'])} mismatch(es)"
            )
        return 1 if result["mismatches"] else 0
    except operations.OperationError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return 2


def _items(args: argparse.Namespace, ctx: PipelineContext) -> int:
    if args.items_command == "dead":
        dead = operations.dead_letters(ctx, args.limit)
        if args.json:
            print(json.dumps(dead, indent=2))
        else:
            for d in dead:
                ref, reason = printable(d["ref"]), printable(d["reason"])
                print(f"{d['id']}\t{ref}\tstopped at {d['stopped_at']}\t{reason}")
            print(f"{len(dead)} dead letter(s)", file=sys.stderr)
        return 0
    if args.items_command == "retry":
        retried = operations.retry_dead(ctx, None if args.all_dead else args.ids)
        print(f"retrying {len(retried)} item(s): {retried}")
        return 0
    shown = operations.item_history(ctx, operations.find_item(ctx, args.item))
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    item = shown["item"]
    print(f"item {item['id']} {printable(shown['ref'])} (call {printable(item['call_id'])}): {item['state']}")
    if item["last_error"]:
        print(f"  last error: {printable(item['last_error'])}")
    for h in shown["history"]:
        print(f"  {h['at']}  {h['from'] or '-'} -> {h['to']}  {printable(h['detail'])}")
    for o in shown["objects"]:
        print(f"  object {o['role']}: {printable(o['uri'])} ({o['size_bytes']} bytes, sha256 {o['sha256']})")
    return 0
