"""``archiver demo``: the whole pipeline on embedded defaults, with demo traffic.

SQLite in ``.demo/``, a local S3 server, the simulator as Bandwidth and Twilio, the intake, a worker,
beat and Flower, all supervised from this terminal with labelled logs. Three accounts are served from
an accounts registry (``.demo/accounts.toml``, docs/accounts.md): two Bandwidth customers, each with
its own OAuth client and callback credentials, and one Twilio account, archived into two buckets.
It sends real-time transcription, recording and Twilio transcript webhooks to each account's own
path, shows the items being archived, their deletions requested and (with a short demo purge
window) their purges confirmed, then keeps running until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from archiver.db.session import Database
from archiver.local.devstack import LocalStack, RedisUnavailable, ensure_redis
from archiver.ops.status import collect_status, format_status

DEMO_PURGE_SECONDS = 20

#: The demo's customers: two Bandwidth accounts and one Twilio account, and where each one's archive goes.
CUSTOMERS = {"9900001": ("archiver-demo", "customer-one"), "9900002": ("archiver-demo-two", "customer-two")}
TWILIO_ACCOUNT = "AC" + "d" * 32
TWILIO_KEY = "SK" + "d" * 32


def write_registry(stack: LocalStack) -> Path:
    """The accounts registry of the demo, its secrets in files beside it (never inline)."""
    lines = ['[defaults.storage]\nbucket = "archiver-demo"\n']
    for account, (bucket, prefix) in CUSTOMERS.items():
        stack.write_secret(f"client-{account}", f"demo-client-secret-{account}")
        stack.write_secret(f"hooks-{account}", f"demo-hook-password-{account}")
        lines.append(
            f'[[bandwidth]]\naccount_id = "{account}"\nclient_id = "demo-client-{account}"\n'
            f'client_secret = {{ file = "{stack.secret_path(f"client-{account}")}" }}\n'
            f'callback_username = "hooks-{account}"\n'
            f'callback_password = {{ file = "{stack.secret_path(f"hooks-{account}")}" }}\n'
            f'[bandwidth.storage]\nbucket = "{bucket}"\nprefix = "{prefix}"\n'
        )
    stack.write_secret("twilio-key", "demo-twilio-key-secret")
    stack.write_secret("twilio-token", "demo-twilio-auth-token")
    lines.append(
        f'[[twilio]]\naccount_sid = "{TWILIO_ACCOUNT}"\napi_key_sid = "{TWILIO_KEY}"\n'
        f'api_key_secret = {{ file = "{stack.secret_path("twilio-key")}" }}\n'
        f'auth_token = {{ file = "{stack.secret_path("twilio-token")}" }}\n'
        '[twilio.storage]\nprefix = "twilio"\n'
    )
    path = stack.workdir / "accounts.toml"
    path.write_text("\n".join(lines))
    return path


def add_simulator_accounts(admin: httpx.Client) -> None:
    for account in CUSTOMERS:
        admin.post(
            "/admin/bandwidth/clients",
            json={"client_id": f"demo-client-{account}", "client_secret": f"demo-client-secret-{account}",
                  "accounts": [account]},
        ).raise_for_status()  # fmt: skip
    admin.post(
        "/admin/twilio/accounts",
        json={"account_sid": TWILIO_ACCOUNT, "auth_token": "demo-twilio-auth-token",
              "api_keys": {TWILIO_KEY: "demo-twilio-key-secret"}},
    ).raise_for_status()  # fmt: skip


def send_traffic(stack: LocalStack, admin: httpx.Client, transcriptions: int, recordings: int) -> int:
    """Each customer's webhooks, to its own path with its own credentials; the number of items."""
    first, second = CUSTOMERS
    hooks = {a: {"username": f"hooks-{a}", "password": f"demo-hook-password-{a}"} for a in CUSTOMERS}
    paths = {a: f"{stack.intake_url}/webhooks/bandwidth/{a}" for a in CUSTOMERS}
    split = {first: transcriptions - transcriptions // 2, second: transcriptions // 2}
    sent = []
    for account, count in split.items():
        made = admin.post("/admin/realtime-transcriptions", json={"count": count, "account_id": account})
        ids = [t["transcriptionId"] for t in made.json()["created"]]
        if ids:
            body = {"event": "available", "ids": ids, "intake_url": paths[account], **hooks[account]}
            sent += admin.post("/admin/webhooks", json=body).json()["deliveries"]
    say(f"delivered {len(sent)} realTimeTranscriptionAvailable callbacks to {len(CUSTOMERS)} accounts' paths")
    if sent:
        rejected = admin.post(
            "/admin/webhooks",
            json={"event": "rejected", "ids": [sent[0]["id"]], "intake_url": paths[first], **hooks[first]},
        ).json()
        say(f"delivered {len(rejected['deliveries'])} realTimeTranscriptionRejected callback")
    if recordings:
        made = admin.post(
            "/admin/recordings", json={"count": recordings, "duration": 12.5, "account_id": second}
        ).json()
        ids = [r["recordingId"] for r in made["created"]]
        available = admin.post(
            "/admin/webhooks",
            json={"event": "recordingAvailable", "ids": ids, "intake_url": paths[second], **hooks[second]},
        ).json()
        say(
            f"delivered {len(available['deliveries'])} recordingAvailable callbacks for account {second} "
            "(each recording's metadata, media and transcription get archived)"
        )
    made = admin.post(
        "/admin/twilio/transcripts",
        json={"account_sid": TWILIO_ACCOUNT, "count": 1, "queued_seconds": 0, "processing_seconds": 0,
              "sentences": 12, "operator_results": 1, "media_duration": 5},
    ).json()  # fmt: skip
    admin.post(
        "/admin/webhooks",
        json={"event": "twilio", "ids": [t["sid"] for t in made["created"]],
              "intake_url": f"{stack.intake_url}/webhooks/twilio/{TWILIO_ACCOUNT}"},
    ).raise_for_status()  # fmt: skip
    say(f"delivered 1 Twilio transcript-available webhook for account {TWILIO_ACCOUNT}")
    return transcriptions + recordings + 1


def run_demo(
    transcriptions: int, exit_when_done: bool, workdir: str, timeout: float, recordings: int = 3
) -> int:
    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    database = root / "archiver.db"
    database.unlink(missing_ok=True)
    broker_url = os.environ.get("ARCHIVER_BROKER_URL", "redis://127.0.0.1:6379/0")
    stack = LocalStack(
        workdir=root,
        database_url=f"sqlite:///{database}",
        broker_url=broker_url,
        echo=True,
        bucket="archiver-demo",
        extra_env={
            "ARCHIVER_ACCOUNT_PAUSE_SECONDS": "5",
            "ARCHIVER_PURGE_DELAY_SECONDS": str(DEMO_PURGE_SECONDS),
            "ARCHIVER_SWEEP_INTERVAL_SECONDS": "3",
            "ARCHIVER_LOG_LEVEL": "INFO",
            "ARCHIVER_WORKER_SOFT_SHUTDOWN_SECONDS": "3",  # Ctrl-C: a quick soft shutdown
        },
    )

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        ensure_redis(broker_url, stack.group, root, echo=True)
        say(f"starting the stack in {root} (logs: {root}/*.log)")
        stack.accounts_file = write_registry(stack)
        say(f"accounts: {stack.accounts_file} (two Bandwidth customers, one Twilio account, two buckets)")
        stack.start_s3()
        stack.object_store().client.create_bucket(Bucket=CUSTOMERS["9900002"][0])
        stack.start_simulator()
        stack.migrate()
        stack.start_intake()
        stack.start_worker()
        stack.start_beat()
        stack.start_flower()
        say(f"intake {stack.intake_url}, simulator {stack.simulator_url}, S3 {stack.s3_url}")
        say(f"Flower (tasks, queues, workers): {stack.flower_url}")
        say(
            "Bandwidth API: each customer's own OAuth 2.0 client (its secret read from a file); "
            f"Twilio REST: API key {TWILIO_KEY}"
        )
        say(f"items and dead letters: ARCHIVER_DATABASE_URL=sqlite:///{database} archiver status")
        with stack.admin() as admin:
            admin.post("/admin/reset").raise_for_status()
            add_simulator_accounts(admin)
            expected = send_traffic(stack, admin, transcriptions, recordings)
        done = watch(stack.database_url, expected, timeout)
        print_where_to_look(stack, database)
        if exit_when_done:
            return 0 if done else 1
        say("running; press Ctrl-C to stop everything")
        while True:
            time.sleep(3600)
    except RedisUnavailable as exc:
        print(f"archiver demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stack.stop()


def watch(database_url: str, expected: int, timeout: float) -> bool:
    """Print the items' progress until every archived item's purge is confirmed."""
    db = Database(database_url)
    deadline = time.monotonic() + timeout
    last = ""
    try:
        while time.monotonic() < deadline:
            status = collect_status(db)
            states = status["items_by_state"]
            line = ", ".join(f"{state} {count}" for state, count in states.items() if count)
            if line != last:
                say(f"items: {line or 'none yet'}")
                last = line
            if states["purged"] >= expected:
                say("everything archived, verified, deleted at the provider, purge confirmed")
                print(format_status(status))
                return True
            time.sleep(1)
    finally:
        db.dispose()
    say("timed out before every item was purged")
    return False


def print_where_to_look(stack: LocalStack, database: Path) -> None:
    say("where to look:")
    print(f"    ARCHIVER_DATABASE_URL=sqlite:///{database} archiver status")
    print(f"    ARCHIVER_ACCOUNTS_FILE={stack.accounts_file} archiver accounts list")
    for bucket in sorted({b for b, _ in CUSTOMERS.values()}):
        print(
            f"    S3 objects: AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --endpoint-url {stack.s3_url} "
            f"s3 ls --recursive s3://{bucket}/"
        )
    print(
        f"    simulator audit: curl -H 'Authorization: Bearer {stack.simulator_admin_token}' "
        f"{stack.simulator_url}/admin/audit"
    )
    sys.stdout.flush()


def say(message: str) -> None:
    print(f"{'[demo]':<11} {message}")
    sys.stdout.flush()
