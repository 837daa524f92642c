"""A PostgreSQL cluster and a Redis server of the test's own, which it may restart at will.

The fault suite restarts both mid-run; doing that to the machine's shared servers would also cut
off every other test's connections. The binaries are the machine's (Debian's postgresql and
redis-server packages, the same servers the rest of the suite uses).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from archiver.local.supervisor import free_port, wait_until


def _postgres_bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
        if (Path(out.strip()) / "initdb").exists():
            return Path(out.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL's initdb was not found (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


class PrivatePostgres:
    """``initdb`` in a temporary directory, a server on a free port; as ``postgres`` when run as root
    (initdb refuses root)."""

    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        self.port = free_port()
        self.datadir = Path(tempfile.mkdtemp(prefix="archiver-faults-pg-"))
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.datadir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd="/")

    def start(self) -> PrivatePostgres:
        if not (self.datadir / "data" / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.datadir / "data"), "-U", "postgres", "-A", "trust", "--no-sync"
            )
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off"  # a process crash here, not an OS crash: the page cache survives it
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir / "data"),
            "-o",
            options,
            "-l",
            str(self.datadir / "log"),
            "-w",
            "start",
        )
        wait_until(self._accepts, 30, "the private PostgreSQL")
        return self

    def _accepts(self) -> bool:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=2
        ):
            return True

    def crash_restart(self, down_seconds: float = 2.0) -> None:
        """An immediate shutdown (no checkpoint: crash recovery at start), a pause, a start."""
        self._run("pg_ctl", "-D", str(self.datadir / "data"), "-m", "immediate", "-w", "stop")
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.datadir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.datadir, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` on a free port, persisting nothing: a restart loses every queued message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        wait_until(
            lambda: bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping()), 15, "redis-server"
        )
        return self

    def kill_restart(self, down_seconds: float = 2.0) -> None:
        """SIGKILL: every queued and unacknowledged message is gone, as after a crash."""
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()
