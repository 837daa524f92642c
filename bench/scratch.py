"""A scratch PostgreSQL database and a running local stack for the benchmarks that need them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from archiver.local.devstack import LocalStack, scratch_postgres_database
from archiver.local.supervisor import ManagedProcess, bin_path, free_port, http_ok, wait_until

PG_ADMIN = os.environ.get("ARCHIVER_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BASE = os.environ.get("ARCHIVER_TEST_PG_URL_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432")
#: A Redis database of the benchmarks' own (the tests use 8-10).
BROKER = "redis://127.0.0.1:6379/4"


def fresh_broker() -> None:
    """Empty the benchmarks' broker database. A benchmark without a worker (the intake's) leaves
    thousands of messages naming items of a database since dropped; the next benchmark's worker
    would spend its time skipping them."""
    client = redis.Redis.from_url(BROKER)
    try:
        client.flushdb()
    finally:
        client.close()


def scratch_database() -> AbstractContextManager[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards."""
    return scratch_postgres_database(PG_ADMIN, PG_BASE, "archiver_bench")


@contextmanager
def running_stack(database_url: str, env: dict[str, str], worker_processes: int) -> Iterator[LocalStack]:
    """S3, the simulator (reset), migrations, the intake, one worker and beat; stopped afterwards."""
    fresh_broker()
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(workdir=Path(workdir), database_url=database_url, broker_url=BROKER, extra_env=env)
        try:
            stack.start_s3()
            stack.start_simulator()
            stack.migrate()
            stack.start_intake()
            stack.start_worker(concurrency=worker_processes)
            stack.start_beat()
            stack.object_store()  # creates the bucket
            with stack.admin() as admin:
                admin.post("/admin/reset").raise_for_status()
            yield stack
        finally:
            stack.stop()
            fresh_broker()


#: The Bandwidth OAuth client of :func:`standalone_simulator`.
BENCH_CLIENT_ID = "sim-client"
BENCH_CLIENT_SECRET = "bench-secret"


def bandwidth_token(token_url: str, client_id: str, client_secret: str) -> str:
    """An access token of the simulator's Bandwidth API (for the baselines that call it directly)."""
    response = httpx.post(
        token_url, data={"grant_type": "client_credentials"}, auth=(client_id, client_secret), timeout=30
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


@dataclass
class StandaloneSimulator:
    url: str
    process: ManagedProcess
    admin: httpx.Client

    @property
    def token_url(self) -> str:
        return f"{self.url}/api/v1/oauth2/token"

    def bearer(self) -> dict[str, str]:
        """Headers carrying a new access token of its Bandwidth API."""
        return {
            "Authorization": f"Bearer {bandwidth_token(self.token_url, BENCH_CLIENT_ID, BENCH_CLIENT_SECRET)}"
        }


@contextmanager
def standalone_simulator(admin_timeout: float = 60.0) -> Iterator[StandaloneSimulator]:
    """A simulator process of its own (OAuth client ``sim-client`` with :data:`BENCH_CLIENT_SECRET`, the
    default admin token) and a client for its admin API; stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "simulator",
        [bin_path("archiver"), "simulator", "--port", str(port)],
        env={"SIMULATOR_CLIENT_SECRET": BENCH_CLIENT_SECRET},
    ).start()
    try:
        wait_until(lambda: http_ok(url + "/healthz"), 30, "the simulator")
        headers = {"Authorization": "Bearer sim-admin-token"}
        with httpx.Client(base_url=url, headers=headers, timeout=admin_timeout) as admin:
            yield StandaloneSimulator(url, process, admin)
    finally:
        process.stop()
