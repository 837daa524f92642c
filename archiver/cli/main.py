"""The ``archiver`` command.

archiver db upgrade            apply the database migrations
archiver serve                 run the webhook intake
archiver simulator             run the provider simulator
archiver status [--json]       items per state, paused accounts, dead letters with reasons
archiver items|deletions|reconcile   operator commands (archiver/cli/operations.py)
archiver backfill …            start, follow and steer backfill runs (archiver/cli/backfill.py)
archiver twilio request-transcript   ask Twilio for a transcript and archive it
archiver flower                Flower, only behind FLOWER_BASIC_AUTH (archiver/cli/flower.py)
archiver worker-health         a worker's liveness probe
archiver demo                  the whole pipeline on embedded defaults, with demo traffic
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence

from archiver.core.config import ConfigError, Settings, get_settings
from archiver.core.logging import configure_logging


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.secret_values(), settings.log_format)
    return settings


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from archiver.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.migrations_database_url or settings.database_url)
    print("database is at the latest revision")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from archiver.intake.app import create_app
    from archiver.intake.server import serve
    from workers.wiring import build_context

    settings = _settings()
    if settings.accounts_file is None:  # with a registry, each account has its own (checked at start)
        settings.require("intake_username", "intake_password")
    # No pre-ping: a round trip per batch; the intake retries on a new connection instead.
    app = create_app(build_context(settings, pre_ping=False))
    # The modules and objects loaded so far live as long as the process: out of the collector's
    # sight, so that its full collections (which hold every request) scan only what requests made.
    gc.collect()
    gc.freeze()
    serve(app, settings, args.host, args.port, args.access_log)
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from archiver.simulator.app import create_simulator_app
    from archiver.simulator.config import SimulatorConfig
    from archiver.simulator.exposure import refuse_exposed_defaults
    from archiver.simulator.faults import FaultRule, Faults, TokenBucket
    from archiver.simulator.webhooks import IntakeTarget

    faults = Faults()
    if args.rate_429_share:
        faults.rules.append(
            FaultRule(
                status=429,
                share=args.rate_429_share,
                retry_after=args.retry_after,
                retry_after_format=args.retry_after_format,
            )
        )
    if args.error_share:
        faults.rules.append(FaultRule(status=500, share=args.error_share))
    if args.reset_share:
        faults.rules.append(FaultRule(status=0, share=args.reset_share, reset_after_bytes=1024))
    if args.latency:
        faults.rules.append(FaultRule(status=0, share=1.0, latency_seconds=args.latency))
    if args.rate_limit:
        burst = args.rate_limit_burst or args.rate_limit
        faults.rate_limits[f"bandwidth:{args.account_id}"] = TokenBucket(
            args.rate_limit, burst, args.retry_after_format
        )
        faults.rate_limits[f"twilio:{args.twilio_account_sid}"] = TokenBucket(args.rate_limit, burst)
    api_keys = {}
    if args.twilio_api_key_sid:
        api_keys[args.twilio_api_key_sid] = os.environ.get("SIMULATOR_TWILIO_API_KEY_SECRET", "")
        if not api_keys[args.twilio_api_key_sid]:
            raise SystemExit("--twilio-api-key-sid needs SIMULATOR_TWILIO_API_KEY_SECRET")
    config = SimulatorConfig(
        client_id=args.client_id,
        client_secret=os.environ.get("SIMULATOR_CLIENT_SECRET", args.client_secret),
        token_lifetime=args.token_lifetime,
        legacy_username=args.username if args.legacy_basic_auth else None,
        legacy_password=os.environ.get("SIMULATOR_PASSWORD", args.password)
        if args.legacy_basic_auth
        else None,
        admin_token=os.environ.get("SIMULATOR_ADMIN_TOKEN", args.admin_token),
        account_id=args.account_id,
        list_order=args.list_order,
        twilio_account_sid=args.twilio_account_sid,
        twilio_auth_token=os.environ.get("SIMULATOR_TWILIO_AUTH_TOKEN", args.twilio_auth_token),
        twilio_secondary_auth_token=os.environ.get("SIMULATOR_TWILIO_SECONDARY_AUTH_TOKEN"),
        twilio_api_keys=api_keys,
        public_root=(args.public_url or f"http://{args.host}:{args.port}").rstrip("/"),
        seed=args.seed,
        intake=IntakeTarget(
            args.intake_url,
            args.intake_username,
            os.environ.get("SIMULATOR_INTAKE_PASSWORD", args.intake_password),
        )
        if args.intake_url
        else None,
        twilio_intake_url=args.twilio_intake_url,
        twilio_webhook_format=args.twilio_webhook_format,
        duplicate_webhooks=args.duplicate_webhooks,
        webhook_targets=tuple(args.webhook_target or ()),
    )
    defaults = SimulatorConfig()
    refuse_exposed_defaults(
        args.host,
        [
            name
            for name, value, default in (
                ("SIMULATOR_CLIENT_SECRET", config.client_secret, defaults.client_secret),
                ("SIMULATOR_ADMIN_TOKEN", config.admin_token, defaults.admin_token),
                ("SIMULATOR_TWILIO_AUTH_TOKEN", config.twilio_auth_token, defaults.twilio_auth_token),
                ("SIMULATOR_PASSWORD", config.legacy_password, "sim-password"),
            )
            if value == default
        ],
    )
    configure_logging(
        "INFO",
        [
            config.client_secret,
            config.legacy_password or "",
            config.admin_token,
            config.twilio_auth_token,
            config.twilio_secondary_auth_token or "",
            *api_keys.values(),
        ],
    )
    print(
        f"simulator: Bandwidth API at {config.bandwidth_base_url}, Twilio API at {config.public_root}/v2, "
        f"admin API at {config.public_root}/admin",
        flush=True,
    )
    app = create_simulator_app(config, faults)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from archiver.ops.status import format_status, status_of

    status = status_of(_settings())
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_twilio_request(args: argparse.Namespace) -> int:
    from archiver.pipeline.twilio_requests import request_transcript
    from archiver.providers.errors import ProviderError
    from workers.wiring import build_context

    ctx = build_context(_settings())
    try:
        sid, item_id = request_transcript(
            ctx,
            args.service,
            media_url=args.media_url,
            source_sid=args.source_sid,
            customer_key=args.customer_key,
            account_sid=args.account,
        )
    except (ValueError, ProviderError) as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return 2
    finally:
        ctx.close()
    print(json.dumps({"transcript_sid": sid, "item_id": item_id}))
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from archiver.cli.backfill import run_command

    return run_command(args, _settings())


def cmd_operations(args: argparse.Namespace) -> int:
    from archiver.cli.operations import run_command
    from workers.wiring import build_context

    ctx = build_context(_settings())
    try:
        return run_command(args, ctx)
    finally:
        ctx.close()


def cmd_flower(args: argparse.Namespace) -> int:
    from archiver.cli import flower

    return flower.run(
        args.address, args.port, args.flower_args, local_unauthenticated=args.local_unauthenticated
    )


def cmd_worker_health(args: argparse.Namespace) -> int:
    """Liveness of one worker: its main process answers a broker ping within the timeout."""
    import socket

    from workers.celery_app import create_celery_app

    app = create_celery_app(_settings(), include_tasks=False)
    name = args.hostname or f"worker@{socket.gethostname()}"
    replies = app.control.ping(destination=[name], timeout=args.timeout)
    alive = any(name in reply for reply in replies or [])
    print(f"{name}: {'alive' if alive else 'no answer'}")
    return 0 if alive else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from archiver.local.demo import run_demo

    return run_demo(
        recordings=args.recordings,
        transcriptions=args.transcriptions,
        exit_when_done=args.exit_when_done,
        workdir=args.workdir,
        timeout=args.timeout,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archiver", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply all migrations").set_defaults(func=cmd_db_upgrade)

    serve = sub.add_parser("serve", help="run the webhook intake (ASGI, uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    sim = sub.add_parser("simulator", help="run the provider simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9000)
    sim.add_argument("--client-id", default="sim-client", help="Bandwidth OAuth client id")
    sim.add_argument("--client-secret", default="sim-client-secret", help="(or SIMULATOR_CLIENT_SECRET)")
    sim.add_argument("--token-lifetime", type=float, default=3600.0, help="Bandwidth tokens' lifetime, s")
    sim.add_argument(
        "--legacy-basic-auth",
        action="store_true",
        help="also accept the decommissioned API user (--username/--password) with HTTP Basic",
    )
    sim.add_argument("--username", default="sim-user", help="the legacy API user (--legacy-basic-auth)")
    sim.add_argument("--password", default="sim-password", help="(or SIMULATOR_PASSWORD)")
    sim.add_argument(
        "--list-order",
        choices=["oldest-first", "newest-first", "shuffled"],
        default="oldest-first",
        help="order of the capped account recordings list (Bandwidth documents none)",
    )
    sim.add_argument("--admin-token", default="sim-admin-token", help="(or SIMULATOR_ADMIN_TOKEN)")
    sim.add_argument("--account-id", default="9900000")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--public-url", help="root URL written into resources (default: http://HOST:PORT)")
    sim.add_argument("--twilio-account-sid", default="AC" + "0" * 32)
    sim.add_argument(
        "--twilio-auth-token", default="sim-twilio-token", help="(or SIMULATOR_TWILIO_AUTH_TOKEN)"
    )
    sim.add_argument(
        "--twilio-api-key-sid",
        help="an API key (SK…) the API accepts; its secret: SIMULATOR_TWILIO_API_KEY_SECRET",
    )
    sim.add_argument("--intake-url", help="where Bandwidth webhooks are delivered")
    sim.add_argument("--twilio-intake-url", help="where Twilio webhooks go when a Service names none")
    sim.add_argument("--twilio-webhook-format", choices=["form", "json"], default="form")
    sim.add_argument("--duplicate-webhooks", action="store_true", help="deliver every webhook twice")
    sim.add_argument(
        "--webhook-target",
        action="append",
        metavar="URL",
        help="a further origin /admin/webhooks may deliver to (repeatable; the intake URLs always are)",
    )
    sim.add_argument("--intake-username")
    sim.add_argument("--intake-password", help="(or SIMULATOR_INTAKE_PASSWORD)")
    sim.add_argument("--rate-429-share", type=float, default=0.0, help="share of API requests answered 429")
    sim.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of those 429s, seconds")
    sim.add_argument("--retry-after-format", choices=["seconds", "http-date", "absent"], default="seconds")
    sim.add_argument("--error-share", type=float, default=0.0, help="share of API requests answered 500")
    sim.add_argument("--reset-share", type=float, default=0.0, help="share of responses cut after 1 KiB")
    sim.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    sim.add_argument(
        "--rate-limit", type=float, default=0.0, help="requests per second per account (0: none)"
    )
    sim.add_argument(
        "--rate-limit-burst", type=float, default=0.0, help="token bucket size (default: the rate)"
    )
    sim.set_defaults(func=cmd_simulator)

    status = sub.add_parser("status", help="items per state and dead letters")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    twilio = sub.add_parser("twilio", help="Twilio Conversational Intelligence")
    twilio_sub = twilio.add_subparsers(dest="twilio_command", required=True)
    req = twilio_sub.add_parser(
        "request-transcript", help="ask Twilio for a transcript and archive it when done"
    )
    req.add_argument("--service", required=True, help="the Intelligence Service SID (GA…)")
    source = req.add_mutually_exclusive_group(required=True)
    source.add_argument("--media-url", help="a media URL Twilio can fetch")
    source.add_argument("--source-sid", help="a Twilio recording SID (RE…)")
    req.add_argument("--customer-key", help="your own reference (at most 64 characters)")
    req.add_argument("--account", help="the Service's AccountSid (default: the only Twilio account)")
    req.set_defaults(func=cmd_twilio_request)

    from archiver.cli.backfill import add_parser

    add_parser(sub)
    sub.choices["backfill"].set_defaults(func=cmd_backfill)

    flower = sub.add_parser(
        "flower", help="run Flower, refusing to start without FLOWER_BASIC_AUTH (user:password)"
    )
    flower.add_argument("--address", default="127.0.0.1", help="listen address (default: loopback only)")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument(
        "--local-unauthenticated",
        action="store_true",
        help="no credentials, and Flower's API open: the local stack only (a loopback address)",
    )
    flower.add_argument("flower_args", nargs="*", help="further Flower options (after --)")
    flower.set_defaults(func=cmd_flower)

    health = sub.add_parser("worker-health", help="exit 0 if the worker answers a ping (liveness probe)")
    health.add_argument("--hostname", help="the worker's node name (default: worker@HOSTNAME)")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(func=cmd_worker_health)

    from archiver.cli.operations import add_parsers

    add_parsers(sub)
    from archiver.cli.accounts import add_parser as add_accounts_parser

    add_accounts_parser(sub)
    for name in ("items", "deletions", "reconcile"):
        sub.choices[name].set_defaults(func=cmd_operations)

    demo = sub.add_parser("demo", help="run everything locally on embedded defaults with demo traffic")
    demo.add_argument("--transcriptions", type=int, default=20)
    demo.add_argument("--recordings", type=int, default=3)
    demo.add_argument("--workdir", default=".demo")
    demo.add_argument("--exit-when-done", action="store_true", help="stop once the demo traffic is processed")
    demo.add_argument("--timeout", type=float, default=180.0)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"archiver: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
