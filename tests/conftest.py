"""Fixtures: real PostgreSQL, Redis, an S3 server process, the simulator over HTTP, and a real Celery
worker and beat, started once per session through :mod:`archiver.local.devstack`.

Isolation between tests: tables are truncated, the simulator reset and the shared clock put back to
zero before each end-to-end test. Item ids are never reused (no RESTART IDENTITY), so a message left
over from an earlier test names a row that no longer exists and does nothing. A test whose data
no other process must see takes ``rolled_back_db`` instead: everything it commits is rolled back.
What the tests share besides fixtures is in :mod:`tests.support.stack`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from archiver.db.migrate import upgrade
from archiver.db.session import Database
from archiver.local.devstack import LocalStack
from tests.support.stack import (
    SECRETS,
    SIM_CLIENT_ID,
    SIM_CLIENT_SECRET,
    SIM_TWILIO_SID,
    SIM_TWILIO_TOKEN,
    TEST_PIPELINE_ENV,
    TEST_REDIS_URL,
    SharedClock,
    Simulator,
    SimulatorUnderTest,
    empty_bucket,
    new_postgres_database,
    truncate_all,
    wait_until_quiet,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests (about 3 minutes each) start first, one at the head of each test process's
    share: pytest-xdist's worksteal splits the list into contiguous halves, so the first long test
    goes first and the second to the middle. Alone, the order changes nothing."""
    long = [item for item in items if item.get_closest_marker("long")]
    rest = [item for item in items if not item.get_closest_marker("long")]
    if len(long) == 2:
        middle = (len(items) - 2) // 2
        items[:] = [long[0], *rest[:middle], long[1], *rest[middle:]]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with new_postgres_database("archiver_test") as url:
        upgrade(url)
        yield url


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """An empty database of its own (no migrations), for tests that must not share the stack's."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def isolated_db(fresh_postgres: str) -> Iterator[Database]:
    """A migrated database of its own, which the session's worker and beat never touch."""
    upgrade(fresh_postgres)
    database = Database(fresh_postgres)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def rollback_postgres_url() -> Iterator[str]:
    """One migrated database for the tests that run in a rolled-back transaction."""
    with new_postgres_database("archiver_rollback") as url:
        upgrade(url)
        yield url


@pytest.fixture
def rolled_back_db(rollback_postgres_url: str) -> Iterator[Database]:
    """A database for one test, in a transaction rolled back at its end: nothing it commits stays,
    and no other process sees it (tests/support/rollback.py)."""
    from tests.support.rollback import RolledBackDatabase

    engine = Database(rollback_postgres_url).engine
    connection = engine.connect()
    outer = connection.begin()
    try:
        yield RolledBackDatabase(rollback_postgres_url, connection)
    finally:
        outer.rollback()
        connection.close()
        engine.dispose()


@pytest.fixture(scope="session")
def db(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "offset"
    path.write_text("0")
    return path


@pytest.fixture(scope="session")
def stack(
    postgres_url: str, clock_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    broker.flushdb()
    broker.close()
    workdir = tmp_path_factory.mktemp("stack")
    local = LocalStack(
        workdir=workdir,
        database_url=postgres_url,
        broker_url=TEST_REDIS_URL,
        intake_password=SECRETS["intake_password"],
        client_secret=SECRETS["bandwidth_client_secret"],
        twilio_auth_token=SECRETS["twilio_auth_token"],
        twilio_api_key_secret=SECRETS["twilio_api_key_secret"],
        twilio_secondary_auth_token=SECRETS["twilio_secondary_auth_token"],
        bucket="archiver-test",
        extra_env={**TEST_PIPELINE_ENV, "ARCHIVER_CLOCK_OFFSET_FILE": str(clock_file)},
    )
    try:
        local.start_s3()
        local.start_simulator()
        local.start_intake()
        local.start_worker(concurrency=4)
        local.start_beat()
        yield local
    finally:
        local.stop()


@pytest.fixture
def e2e(
    stack: LocalStack, db: Database, clock_file: Path
) -> Iterator[tuple[LocalStack, Simulator, SharedClock]]:
    """A clean slate on the running stack: empty tables, an empty bucket, a reset simulator, the
    clock at zero. (The simulator's ids repeat after a reset: without emptying the bucket, a test
    would find the previous test's object at its key, which the archive refuses to overwrite.)"""
    truncate_all(db)
    empty_bucket(stack)
    clock = SharedClock(clock_file)
    clock.reset()
    with stack.admin() as admin:
        simulator = Simulator(admin)
        simulator.reset()
        yield stack, simulator, clock
    wait_until_quiet(db, clock.offset)
    clock.reset()


@pytest.fixture(scope="session")
def standalone_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorUnderTest]:
    from archiver.local.supervisor import ManagedProcess, bin_path, free_port, http_ok, wait_until
    from tests.support.receiver import start_receiver

    receiver = start_receiver()
    port, closed = free_port(), free_port()  # nothing listens on ``closed``: a target that is down
    process = ManagedProcess(
        "simulator",
        [bin_path("archiver"), "simulator", "--port", str(port), "--client-id", SIM_CLIENT_ID,
         "--webhook-target", f"http://127.0.0.1:{closed}",
         "--intake-url", f"{receiver.url}/bandwidth", "--intake-username", "hook-user",
         "--twilio-account-sid", SIM_TWILIO_SID, "--twilio-intake-url", f"{receiver.url}/twilio"],
        env={"SIMULATOR_CLIENT_SECRET": SIM_CLIENT_SECRET, "SIMULATOR_ADMIN_TOKEN": "admin-x",
             "SIMULATOR_INTAKE_PASSWORD": "hook-pass", "SIMULATOR_TWILIO_AUTH_TOKEN": SIM_TWILIO_TOKEN},
        log_path=tmp_path_factory.mktemp("sim") / "simulator.log",
    ).start()  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(url + "/healthz"), 30, "the simulator")
        admin = httpx.Client(base_url=url, headers={"Authorization": "Bearer admin-x"}, timeout=120)
        sim = SimulatorUnderTest(url, admin, receiver)
        sim.closed_url = f"http://127.0.0.1:{closed}"
        yield sim
        sim.close()
        admin.close()
    finally:
        process.stop()
        receiver.stop()


@pytest.fixture
def sim(standalone_simulator: SimulatorUnderTest) -> SimulatorUnderTest:
    standalone_simulator.admin.reset()  # tokens issued before stay valid; the credential's defaults return
    standalone_simulator.tokens.refresh()  # one the test's faults cannot touch ...
    standalone_simulator.admin.client.post("/admin/reset").raise_for_status()  # ... and an empty audit
    standalone_simulator.receiver.clear()
    return standalone_simulator
