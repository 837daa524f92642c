"""``archiver accounts list`` and ``archiver accounts check [ACCOUNT]`` (:mod:`archiver.ops.accounts`).
Exit status: 0 when every check passed, 1 when one failed, 2 when the account is unknown."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from archiver.core.config import get_settings
from archiver.core.logging import configure_logging
from archiver.core.terminal import printable

if TYPE_CHECKING:
    from archiver.pipeline.context import PipelineContext

__all__ = ["add_parser", "run", "run_command"]


def add_parser(sub: Any) -> None:
    accounts = sub.add_parser("accounts", help="the provider accounts served, and a check of each")
    commands = accounts.add_subparsers(dest="accounts_command", required=True)
    listing = commands.add_parser("list", help="every account: credential, bucket, state, items")
    listing.add_argument("--json", action="store_true")
    check = commands.add_parser(
        "check", help="an account's credentials, bucket (a probe write), Object Lock and state"
    )
    check.add_argument("account", nargs="?", help="an account id or provider/id (default: every account)")
    check.add_argument("--json", action="store_true")
    accounts.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workers.wiring import build_context

    settings = get_settings()
    configure_logging(settings.log_level, settings.secret_values(), settings.log_format)
    ctx = build_context(settings)
    try:
        return run_command(args, ctx)
    finally:
        ctx.close()


def run_command(args: argparse.Namespace, ctx: PipelineContext) -> int:
    from archiver.ops.accounts import check_accounts, list_accounts

    if args.accounts_command == "list":
        listed = list_accounts(ctx)
        if args.json:
            print(json.dumps(listed, indent=2))
            return 0
        print(f"accounts from {printable(listed['source'])}")
        for a in listed["accounts"]:
            where = f"s3://{a['bucket']}/{a['prefix']}" if a.get("bucket") else ""
            items = ", ".join(f"{n} {state}" for state, n in sorted(a["items"].items())) or "no items"
            print(f"{a['provider']:<9} {printable(a['account_id']):<34} {a['state']:<8} {where}  ({items})")
            if a.get("why"):
                print(f"          {printable(a['why'])}: {printable(a.get('message'))}")
        return 0
    results = check_accounts(ctx, args.account)
    if not results:
        print(f"archiver: no account {printable(args.account)} in the registry", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            print(f"{result.provider} {result.account_id}: {'ok' if result.ok else 'FAILED'}")
            for c in result.checks:
                print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']:<12} {printable(c['detail'])}")
    return 0 if all(r.ok for r in results) else 1
