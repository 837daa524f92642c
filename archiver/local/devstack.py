"""A whole archiver stack on one machine: S3 server (moto), simulator, intake, worker and beat.

The demo (``archiver demo``) and the end-to-end tests start their processes through this module, so
both run exactly the commands a deployment runs (``archiver serve``, ``celery -A workers worker``…).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

from archiver.local.supervisor import ManagedProcess, ProcessGroup, bin_path, free_port, http_ok, wait_until
from archiver.storage.objects import ObjectStore, make_s3_client

LOCAL_AWS = {
    "AWS_ACCESS_KEY_ID": "local-access-key",
    "AWS_SECRET_ACCESS_KEY": "local-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class RedisUnavailable(RuntimeError):
    pass


@contextmanager
def scratch_postgres_database(admin_dsn: str, url_base: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards: for tests and
    benchmarks that must not share a database."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{url_base}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_redis(url: str, group: ProcessGroup, workdir: Path, echo: bool) -> None:
    """Use the Redis at ``url``; start a local ``redis-server`` if none answers and one is installed."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
        return
    except redis.RedisError:
        pass
    finally:
        client.close()
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or shutil.which("redis-server") is None:
        raise RedisUnavailable(
            f"no Redis answers at {url}, and none can be started here: install Redis "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
            "or point ARCHIVER_BROKER_URL at a running one."
        )
    group.start(
        ManagedProcess(
            "redis",
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                port or "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            log_path=workdir / "redis.log",
            echo=echo,
        )
    )
    wait_until(lambda: bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping()), 15, "redis-server")


#: What a registry file replaces (archiver.accounts.loading.PER_ACCOUNT_SETTINGS).
SINGLE_ACCOUNT_ENV = (
    "ARCHIVER_BANDWIDTH_ACCOUNT_ID",
    "ARCHIVER_BANDWIDTH_CLIENT_ID",
    "ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE",
    "ARCHIVER_INTAKE_USERNAME",
    "ARCHIVER_INTAKE_PASSWORD",
    "ARCHIVER_TWILIO_ACCOUNT_SID",
    "ARCHIVER_TWILIO_AUTH_TOKEN",
    "ARCHIVER_TWILIO_SECONDARY_AUTH_TOKEN",
    "ARCHIVER_TWILIO_API_KEY_SID",
    "ARCHIVER_TWILIO_API_KEY_SECRET",
)


@dataclass
class LocalStack:
    workdir: Path
    database_url: str
    broker_url: str
    echo: bool = False
    bucket: str = "archiver-local"
    intake_username: str = "intake-user"
    intake_password: str = "intake-password-local"  # noqa: S105 - local stack only
    #: Bandwidth's OAuth client credentials; the secret reaches the archiver as a file
    #: (ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE), which can be rewritten to rotate it.
    client_id: str = "archiver-local"
    client_secret: str = "client-secret-local"  # noqa: S105
    simulator_admin_token: str = "sim-admin-local"  # noqa: S105
    account_id: str = "9900000"
    twilio_account_sid: str = "AC" + "5" * 32
    twilio_auth_token: str = "twilio-token-local"  # noqa: S105
    #: Accepted on webhook signatures too (an auth token being rotated), when set.
    twilio_secondary_auth_token: str | None = None
    #: Twilio REST credentials: an API key (the auth token stays the key of webhook signatures).
    twilio_api_key_sid: str = "SK" + "6" * 32
    twilio_api_key_secret: str = "twilio-key-secret-local"  # noqa: S105
    extra_env: dict[str, str] = field(default_factory=dict)
    #: An accounts registry (ARCHIVER_ACCOUNTS_FILE): the single-account settings are then left out.
    accounts_file: Path | None = None
    s3_port: int = field(default_factory=free_port)
    simulator_port: int = field(default_factory=free_port)
    intake_port: int = field(default_factory=free_port)
    flower_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    #: A second intake's port (tests): the simulator may deliver webhooks there too.
    spare_intake_port: int = field(default_factory=free_port)
    group: ProcessGroup = field(default_factory=ProcessGroup)

    def __post_init__(self) -> None:
        self.write_secret("bandwidth_client_secret", self.client_secret)

    def secret_path(self, name: str) -> Path:
        """The file holding the secret ``name`` (e.g. ``bandwidth_client_secret``) for the stack."""
        return self.workdir / "secrets" / name

    def write_secret(self, name: str, value: str) -> Path:
        path = self.secret_path(name)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return path

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    @property
    def metrics_url(self) -> str:
        """The intake's Prometheus metrics (a port of their own, not the webhook port)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def env(self) -> dict[str, str]:
        """The environment every archiver process of this stack runs with."""
        env = self._env()
        if self.accounts_file is not None:
            for name in SINGLE_ACCOUNT_ENV:
                env.pop(name, None)
            env["ARCHIVER_ACCOUNTS_FILE"] = str(self.accounts_file)
        return {**env, **self.extra_env}

    def _env(self) -> dict[str, str]:
        return {
            **LOCAL_AWS,
            "ARCHIVER_DATABASE_URL": self.database_url,
            "ARCHIVER_BROKER_URL": self.broker_url,
            "ARCHIVER_S3_BUCKET": self.bucket,
            "ARCHIVER_S3_ENDPOINT_URL": self.s3_url,
            "ARCHIVER_S3_REGION": "us-east-1",
            "ARCHIVER_BANDWIDTH_ACCOUNT_ID": self.account_id,
            "ARCHIVER_BANDWIDTH_CLIENT_ID": self.client_id,
            "ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE": str(self.secret_path("bandwidth_client_secret")),
            "ARCHIVER_BANDWIDTH_TOKEN_URL": f"{self.simulator_url}/api/v1/oauth2/token",
            "ARCHIVER_BANDWIDTH_BASE_URL": f"{self.simulator_url}/api/v2",
            "ARCHIVER_INTAKE_USERNAME": self.intake_username,
            "ARCHIVER_INTAKE_PASSWORD": self.intake_password,
            "ARCHIVER_PUBLIC_BASE_URL": self.intake_url,
            "ARCHIVER_METRICS_PORT": str(self.metrics_port),
            "ARCHIVER_TWILIO_ACCOUNT_SID": self.twilio_account_sid,
            "ARCHIVER_TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            **(
                {"ARCHIVER_TWILIO_SECONDARY_AUTH_TOKEN": self.twilio_secondary_auth_token}
                if self.twilio_secondary_auth_token
                else {}
            ),
            "ARCHIVER_TWILIO_API_KEY_SID": self.twilio_api_key_sid,
            "ARCHIVER_TWILIO_API_KEY_SECRET": self.twilio_api_key_secret,
            "ARCHIVER_TWILIO_BASE_URL": self.simulator_url,
            "ARCHIVER_TWILIO_MEDIA_HOSTS": self.simulator_url,  # http and a port: named as an origin
        }

    def _start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, restart: bool = False
    ) -> ManagedProcess:
        process = ManagedProcess(
            name,
            argv,
            env={**self.env(), **(env or {})},
            log_path=self.workdir / f"{name}.log",
            echo=self.echo,
            restart=restart,
        )
        return self.group.start(process)

    # --- components -----------------------------------------------------------------------------

    def start_s3(self) -> ManagedProcess:
        process = self._start("s3", [bin_path("moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)])
        wait_until(lambda: http_ok(self.s3_url + "/moto-api/"), 30, "the S3 server")
        self.object_store().ensure_bucket()
        return process

    def object_store(self) -> ObjectStore:
        keys = (LOCAL_AWS["AWS_ACCESS_KEY_ID"], LOCAL_AWS["AWS_SECRET_ACCESS_KEY"])
        client = make_s3_client(region="us-east-1", endpoint_url=self.s3_url, credentials=keys)
        return ObjectStore(client, self.bucket)

    def start_simulator(self) -> ManagedProcess:
        argv = [
            bin_path("archiver"),
            "simulator",
            "--port",
            str(self.simulator_port),
            "--client-id",
            self.client_id,
            "--twilio-api-key-sid",
            self.twilio_api_key_sid,
            "--account-id",
            self.account_id,
            "--intake-url",
            f"{self.intake_url}/webhooks/bandwidth",
            "--intake-username",
            self.intake_username,
            "--twilio-account-sid",
            self.twilio_account_sid,
            "--twilio-intake-url",
            f"{self.intake_url}/webhooks/twilio",
            "--webhook-target",
            f"http://127.0.0.1:{self.spare_intake_port}",
        ]
        process = ManagedProcess(
            "simulator",
            argv,
            env={
                "SIMULATOR_CLIENT_SECRET": self.client_secret,
                "SIMULATOR_TWILIO_API_KEY_SECRET": self.twilio_api_key_secret,
                "SIMULATOR_ADMIN_TOKEN": self.simulator_admin_token,
                "SIMULATOR_INTAKE_PASSWORD": self.intake_password,
                "SIMULATOR_TWILIO_AUTH_TOKEN": self.twilio_auth_token,
                **(
                    {"SIMULATOR_TWILIO_SECONDARY_AUTH_TOKEN": self.twilio_secondary_auth_token}
                    if self.twilio_secondary_auth_token
                    else {}
                ),
            },
            log_path=self.workdir / "simulator.log",
            echo=self.echo,
        )
        self.group.start(process)
        wait_until(lambda: http_ok(self.simulator_url + "/healthz"), 30, "the simulator")
        return process

    def migrate(self) -> None:
        subprocess.run(
            [bin_path("archiver"), "db", "upgrade"],
            env={**_os_env(), **self.env()},
            check=True,
            capture_output=not self.echo,
        )

    def start_intake(self) -> ManagedProcess:
        process = self._start("intake", [bin_path("archiver"), "serve", "--port", str(self.intake_port)])
        wait_until(lambda: http_ok(self.intake_url + "/healthz"), 30, "the intake")
        return process

    def start_worker(
        self,
        name: str = "worker",
        concurrency: int = 2,
        restart: bool = False,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        """``restart``: started again if it exits unasked, as systemd and Kubernetes would; ``env``:
        settings of this worker's own (a wrong secret, say)."""
        log_path = self.workdir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        process = self._start(
            name,
            [
                bin_path("celery"),
                "-A",
                "workers",
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
                "--without-mingle",
                "--without-gossip",
            ],
            # As deployed: SIGTERM starts the soft shutdown (ARCHIVER_WORKER_SOFT_SHUTDOWN_SECONDS).
            env={"REMAP_SIGTERM": "SIGQUIT", **(env or {})},
            restart=restart,
        )
        wait_until(lambda: " ready." in log_path.read_text("utf-8", "replace")[offset:], 60, f"the {name}")
        return process

    def start_beat(self) -> ManagedProcess:
        schedule = self.workdir / "celerybeat-schedule"
        return self._start(
            "beat",
            [bin_path("celery"), "-A", "workers", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
        )

    def start_flower(self) -> ManagedProcess:
        """Flower on the stack's broker: what the workers run, queued, retried and failed."""
        process = self._start(
            "flower",
            # Local only (127.0.0.1): its HTTP API without credentials. Production sets FLOWER_BASIC_AUTH.
            [bin_path("archiver"), "flower", f"--port={self.flower_port}", "--local-unauthenticated"],
        )
        wait_until(lambda: http_ok(self.flower_url + "/healthcheck"), 60, "Flower")
        return process

    def admin(self) -> httpx.Client:
        """A client for the simulator's admin API."""
        return httpx.Client(
            base_url=self.simulator_url,
            headers={"Authorization": f"Bearer {self.simulator_admin_token}"},
            timeout=60.0,
        )

    def stop(self) -> None:
        self.group.stop()


def _os_env() -> dict[str, str]:
    import os

    return dict(os.environ)
