"""Starting and stopping the local processes of a whole stack (the demo, the tests, benchmarks).

Each process's output is either echoed with a label (``[worker] …``), interleaved on one terminal,
or written to a log file. Stopping sends SIGTERM, waits, then SIGKILLs what is left. A process
started with ``restart=True`` is started again whenever it exits unasked, as the deployments' own
supervisors do (systemd ``Restart=always``, Kubernetes).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def bin_path(name: str) -> str:
    """A console script of this environment (next to the running interpreter), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        echo: bool = False,
        cwd: str | None = None,
        restart: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.echo = echo
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.restart = restart
        #: Exit codes of the unasked exits after which the process was started again.
        self.restarts: list[int] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> ManagedProcess:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._spawn()
        if self.restart:
            self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-supervisor", daemon=True)
            self._watcher.start()
        return self

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE if self.echo else (self._log_file or subprocess.DEVNULL),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C reaches only us; we stop children ourselves
        )
        if self.echo:
            self._pump = threading.Thread(target=self._echo, daemon=True)
            self._pump.start()

    def _watch(self, restart_after: float = 1.0) -> None:
        """Start the process again after an exit nobody asked for (``RestartSec=1``)."""
        while not self._stopping.wait(0.5):
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            if self._stopping.wait(restart_after):
                return
            self.restarts.append(proc.returncode)
            notice = f"[supervisor] {self.name} exited with {proc.returncode}; starting it again\n"
            if self._log_file is not None:
                self._log_file.write(notice.encode())
                self._log_file.flush()
            if self.echo:
                sys.stdout.write(notice)
            self._spawn()

    def _echo(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        label = f"[{self.name}]"
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            sys.stdout.write(f"{label:<11} {line}\n")
            sys.stdout.flush()
            if self._log_file is not None:
                self._log_file.write(raw)
                self._log_file.flush()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self._pump is not None:
            self._pump.join(timeout=2)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path and self.log_path.exists() else ""


class ProcessGroup:
    """Processes stopped together, in reverse order of start."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process.start())
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
