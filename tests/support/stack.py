"""What the tests share besides fixtures: the test services' addresses and secrets, the short
pipeline timings, waiting for a condition, the clock the stack's processes share, a client for the
simulator's admin API, and cleaning up between end-to-end tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from archiver.db.session import Database
from archiver.local.devstack import LocalStack, scratch_postgres_database

PG_ADMIN_DSN = os.environ.get(
    "ARCHIVER_TEST_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


PG_URL_BASE = os.environ.get("ARCHIVER_TEST_PG_URL_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432")


#: Redis databases by role, four per pytest-xdist worker (7-10 for the first, 11-14 for the
#: second): two workers' stacks and tests never share a database.
REDIS_ROLES = ("budget", "spare", "stack", "demo")


def test_redis_url(role: str) -> str:
    """The Redis database of ``role`` for this test process (``ARCHIVER_TEST_REDIS_BASE``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = os.environ.get("ARCHIVER_TEST_REDIS_BASE", "redis://127.0.0.1:6379")
    return f"{base}/{7 + REDIS_ROLES.index(role) + 4 * int(worker or 0)}"


test_redis_url.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test

TEST_REDIS_URL = os.environ.get("ARCHIVER_TEST_REDIS_URL") or test_redis_url("stack")
SPARE_REDIS_URL = test_redis_url("spare")


#: Secrets of the test stack: distinctive, so that a test can prove they never reach a log.
SECRETS = {
    "intake_password": "intake-SECRET-7f3a9c",
    "bandwidth_client_secret": "bandwidth-SECRET-51d2e8",
    "twilio_auth_token": "twilio-SECRET-0c4d7b",
    "twilio_api_key_secret": "twilio-key-SECRET-3e8f21",
    "twilio_secondary_auth_token": "twilio-second-SECRET-77ab0e",
}


#: Short waits, so that retries, leases and sweeps happen within a test.
TEST_PIPELINE_ENV = {
    # Short, so that a killed worker's item is taken again within a test; long enough that the
    # step time limits (80 %/90 % of it) fit a 200 MiB recording on a slow, loaded machine.
    "ARCHIVER_LEASE_SECONDS": "20",
    "ARCHIVER_MAX_ATTEMPTS": "5",
    "ARCHIVER_RETRY_BACKOFF_BASE_SECONDS": "0.3",
    "ARCHIVER_RETRY_BACKOFF_MAX_SECONDS": "2",
    "ARCHIVER_MAX_COUNTDOWN_SECONDS": "60",
    "ARCHIVER_SWEEP_INTERVAL_SECONDS": "1",
    "ARCHIVER_REQUEUE_AFTER_SECONDS": "20",
    "ARCHIVER_LOG_LEVEL": "INFO",
    "ARCHIVER_REQUEST_TRANSCRIPTIONS": "true",
    "ARCHIVER_TWILIO_POLL_SECONDS": "1",
    "ARCHIVER_LOG_FORMAT": "json",  # what log collectors get; tests/e2e/test_observability.py reads it
    "ARCHIVER_METRICS_CACHE_SECONDS": "0",
    "ARCHIVER_WORKER_SOFT_SHUTDOWN_SECONDS": "3",  # a quick soft shutdown at the end of the session
    # Slow or silent clients are cut off within a test (tests/e2e/test_intake_hardening.py).
    "ARCHIVER_INTAKE_HEADER_TIMEOUT_SECONDS": "2",
    "ARCHIVER_INTAKE_KEEP_ALIVE_SECONDS": "2",
    # A paused account's credentials checked again after 1 s, then 2 s, then every 3 s.
    "ARCHIVER_ACCOUNT_PAUSE_SECONDS": "1",
    "ARCHIVER_ACCOUNT_PAUSE_MAX_SECONDS": "3",
}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def wait_while_progressing(
    progress: Callable[[], int], target: int, stall: float, what: str, timeout: float = 1800.0
) -> None:
    """Wait until ``progress()`` reaches ``target``, failing only if it stops moving for ``stall``
    seconds (or after ``timeout``): a slow machine is not a failure, a stuck pipeline is."""
    deadline = time.monotonic() + timeout
    last, moved = progress(), time.monotonic()
    while last < target:
        now = time.monotonic()
        if now - moved > stall or now > deadline:
            raise AssertionError(f"{what}: {last} of {target}, stuck for {now - moved:.0f}s")
        time.sleep(0.5)
        if (current := progress()) != last:
            last, moved = current, time.monotonic()


def new_postgres_database(prefix: str = "archiver_iso") -> AbstractContextManager[str]:
    """An empty PostgreSQL database (its SQLAlchemy URL, no migrations), dropped afterwards."""
    return scratch_postgres_database(PG_ADMIN_DSN, PG_URL_BASE, prefix)


def truncate_all(database: Database, attempts: int = 5) -> None:
    """Empty the tables. A worker still finishing an earlier test's items can deadlock with the
    TRUNCATE (seen in CI after a failed test): PostgreSQL aborts one side, and this tries again."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(attempts):
        try:
            with database.engine.begin() as connection:
                connection.execute(
                    text(
                        "TRUNCATE webhook_events, transcript_segments, item_history, archived_objects, archive_items, backfill_runs, provider_accounts CASCADE"
                    )
                )
            return
        except OperationalError as error:
            if attempt == attempts - 1 or "deadlock" not in str(error):
                raise
            time.sleep(1.0)


class SharedClock:
    """Moves the clock of every archiver process of the stack (ARCHIVER_CLOCK_OFFSET_FILE)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.path.write_text(repr(self.offset))

    def reset(self) -> None:
        self.offset = 0.0
        self.path.write_text("0")


class Simulator:
    """The simulator's admin API, for tests."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def reset(self) -> None:
        self.client.post("/admin/reset").raise_for_status()

    def create_realtime(self, count: int = 1, **options: Any) -> list[dict[str, Any]]:
        response = self.client.post("/admin/realtime-transcriptions", json={"count": count, **options})
        response.raise_for_status()
        created: list[dict[str, Any]] = response.json()["created"]
        return created

    def send_webhooks(self, **options: Any) -> list[dict[str, Any]]:
        response = self.client.post("/admin/webhooks", json=options)
        response.raise_for_status()
        deliveries: list[dict[str, Any]] = response.json()["deliveries"]
        return deliveries

    def set_faults(self, *rules: dict[str, Any]) -> None:
        self.client.put("/admin/faults", json={"rules": list(rules)}).raise_for_status()

    def oauth(self, **body: Any) -> dict[str, Any]:
        """Bandwidth's OAuth credential: its state, or (with ``body``) changed (lifetime, secret,
        scope)."""
        if body:
            response = self.client.put("/admin/bandwidth/oauth", json=body)
        else:
            response = self.client.get("/admin/bandwidth/oauth")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def revoke_tokens(self) -> int:
        response = self.client.post("/admin/bandwidth/oauth/revoke")
        response.raise_for_status()
        return int(response.json()["revoked"])

    def twilio_credentials(self, **body: Any) -> dict[str, Any]:
        response = self.client.put("/admin/twilio/credentials", json=body)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def audit(
        self, method: str | None = None, path_contains: str | None = None, *, tokens: bool = True
    ) -> list[dict[str, Any]]:
        """The simulator's request log; ``tokens=False`` leaves out OAuth token requests, which a
        worker makes whenever its cached token nears its end, whatever the test is about."""
        params = {k: v for k, v in {"method": method, "path_contains": path_contains}.items() if v}
        response = self.client.get("/admin/audit", params=params)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["entries"]
        if not tokens:
            entries = [e for e in entries if not e["path"].endswith("/oauth2/token")]
        return entries


def empty_bucket(stack: LocalStack) -> None:
    """Delete every object and abandoned part upload in the stack's bucket."""
    store = stack.object_store()
    client, bucket = store.client, store.bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def wait_until_quiet(database: Database, clock_offset: float, timeout: float = 40.0) -> None:
    """Let work a test started finish, so that it cannot act on the next test's simulator."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, or_, select

    from archiver.db.models import ArchiveItem, ItemState

    def busy() -> int:
        now = datetime.now(UTC) + timedelta(seconds=clock_offset)
        with database.sessionmaker() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(ArchiveItem)
                    .where(
                        or_(
                            ArchiveItem.lease_expires_at > now,
                            ArchiveItem.state.in_([ItemState.PENDING, ItemState.ARCHIVED])
                            & (ArchiveItem.due_at <= now + timedelta(seconds=2)),
                        )
                    )
                )
                or 0
            )

    deadline = time.monotonic() + timeout
    while busy() and time.monotonic() < deadline:
        time.sleep(0.2)


# --- a standalone simulator, for the simulator's own tests ------------------------------------------


SIM_TWILIO_SID = "AC" + "ab" * 16


SIM_TWILIO_TOKEN = "twilio-SECRET-93c1aa"


SIM_CLIENT_ID = "sim-client"


SIM_CLIENT_SECRET = "client-SECRET-x41"


class SimulatorUnderTest:
    """A simulator process, its admin API, Bandwidth (OAuth) and Twilio API clients, and a webhook
    receiver."""

    def __init__(self, url: str, admin: httpx.Client, receiver: Any) -> None:
        from archiver.providers.credentials import SecretSource
        from archiver.providers.oauth import BearerAuth, TokenSource

        self.url = url
        #: A configured webhook target on which nothing listens.
        self.closed_url = ""
        self.admin = Simulator(admin)
        self.receiver = receiver
        self.token_url = f"{url}/api/v1/oauth2/token"
        self.tokens = TokenSource(
            token_url=self.token_url, client_id=SIM_CLIENT_ID, secret=SecretSource(SIM_CLIENT_SECRET)
        )
        self.bandwidth = httpx.Client(
            base_url=f"{url}/api/v2", auth=BearerAuth(self.tokens, f"{url}/api/v2"), timeout=30
        )
        self.twilio = httpx.Client(base_url=url, auth=(SIM_TWILIO_SID, SIM_TWILIO_TOKEN), timeout=30)
        self.account = "9900000"

    def close(self) -> None:
        self.bandwidth.close()
        self.twilio.close()
        self.tokens.close()


def start_s3_fault_proxy(stack: Any, port: int, rate: float = 0.0) -> str:
    """The S3 fault proxy (tests/support/s3_fault_proxy.py) in front of ``stack``'s S3 server, in
    its process group; its URL."""
    import sys

    from archiver.local.supervisor import ManagedProcess, http_ok, wait_until

    proxy = ManagedProcess(
        "s3-proxy",
        [sys.executable, "-m", "tests.support.s3_fault_proxy", "--port", str(port),
         "--upstream", stack.s3_url, "--rate", str(rate)],
        log_path=stack.workdir / "s3-proxy.log",
        cwd=str(Path(__file__).resolve().parents[2]),
    )  # fmt: skip
    stack.group.start(proxy)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/__faults__"), 30, "the S3 fault proxy")
    return url
