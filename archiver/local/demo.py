"""``archiver demo``: the whole pipeline on embedded defaults, with demo traffic.

SQLite in ``.demo/``, a local S3 server, the simulator as Bandwidth, the intake, a worker, beat and
Flower,
all supervised from this terminal with labelled logs. It sends real-time transcription and recording
webhooks through the simulator, shows the items being archived, their deletions requested and (with a short
demo purge window) their purges confirmed, then keeps running until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from archiver.db.session import Database
from archiver.local.devstack import LocalStack, RedisUnavailable, ensure_redis
from archiver.ops.status import collect_status, format_status

DEMO_PURGE_SECONDS = 20


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
        stack.start_s3()
        stack.start_simulator()
        stack.migrate()
        stack.start_intake()
        stack.start_worker()
        stack.start_beat()
        stack.start_flower()
        say(f"intake {stack.intake_url}, simulator {stack.simulator_url}, S3 {stack.s3_url}")
        say(f"Flower (tasks, queues, workers): {stack.flower_url}")
        say(
            f"Bandwidth API: OAuth 2.0 client credentials (client {stack.client_id}, the secret read "
            f"from {stack.secret_path('bandwidth_client_secret')}); Twilio REST: API key "
            f"{stack.twilio_api_key_sid}"
        )
        say(f"items and dead letters: ARCHIVER_DATABASE_URL=sqlite:///{database} archiver status")
        with stack.admin() as admin:
            admin.post("/admin/reset").raise_for_status()
            admin.post("/admin/realtime-transcriptions", json={"count": transcriptions}).raise_for_status()
            say(f"the simulator holds {transcriptions} real-time transcriptions; sending their webhooks")
            sent = admin.post("/admin/webhooks", json={"event": "available"}).json()["deliveries"]
            rejected = admin.post(
                "/admin/webhooks", json={"event": "rejected", "ids": [sent[0]["id"]]}
            ).json()
            say(
                f"delivered {len(sent)} realTimeTranscriptionAvailable and "
                f"{len(rejected['deliveries'])} realTimeTranscriptionRejected callbacks"
            )
            if recordings:
                admin.post(
                    "/admin/recordings", json={"count": recordings, "duration": 12.5}
                ).raise_for_status()
                available = admin.post("/admin/webhooks", json={"event": "recordingAvailable"}).json()
                say(
                    f"delivered {len(available['deliveries'])} recordingAvailable callbacks "
                    "(each recording's metadata, media and transcription get archived)"
                )
        done = watch(stack.database_url, transcriptions + recordings, timeout)
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
    print(
        f"    S3 objects: AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --endpoint-url {stack.s3_url} "
        f"s3 ls --recursive s3://{stack.bucket}/"
    )
    print(
        f"    simulator audit: curl -H 'Authorization: Bearer {stack.simulator_admin_token}' "
        f"{stack.simulator_url}/admin/audit"
    )
    sys.stdout.flush()


def say(message: str) -> None:
    print(f"{'[demo]':<11} {message}")
    sys.stdout.flush()
