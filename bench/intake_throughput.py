"""Benchmark: the intake's sustained accepted webhooks per second and its latency, as a ratio of a
bare endpoint that answers 204, served the same way (uvicorn, one process), in the same run.

1. Closed loop, ``CONNECTIONS`` connections for ``SECONDS``: the bare endpoint's rate, then the
   intake's (distinct ``realTimeTranscriptionAvailable`` events, Basic auth, PostgreSQL, Redis).
   Target: intake >= 0.5 x bare.
2. Open loop at half the bare endpoint's rate: the intake's p50/p99 latency. Target: p99 < 50 ms.
3. Every event answered 204 is in the database afterwards.

The load comes from separate processes (one keep-alive httpx connection each), the same for both
servers.

    .venv/bin/python -m bench.intake_throughput
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
from sqlalchemy import func, select

from archiver.db.models import WebhookEvent
from archiver.db.session import Database
from archiver.supervisor import ManagedProcess, bin_path, free_port, http_ok, wait_until
from bench.results import write_section
from bench.scratch import BROKER, fresh_broker, scratch_database

SECONDS = 15.0
#: Load processes, each one keep-alive connection sending one request at a time.
CONNECTIONS = 6
AUTH = ("bench-intake", "bench-intake-password")

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
import uvicorn, sys

async def hook(request):
    await request.body()
    return Response(status_code=204)

app = Starlette(routes=[Route("/webhooks/bandwidth", hook, methods=["POST"]), Route("/healthz", hook)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            timeout_graceful_shutdown=10)
"""


def event(n: int, run: str) -> bytes:
    return json.dumps(
        {
            "eventType": "realTimeTranscriptionAvailable",
            "eventTime": "2026-11-21T10:00:00.000Z",
            "accountId": "9900000",
            "callId": f"c-{run}-{n:08d}",
            "realTimeTranscription": {"id": f"t-{run}-{n:08d}", "status": "available"},
        }
    ).encode()


def _client() -> httpx.Client:
    return httpx.Client(auth=AUTH, timeout=30, headers={"Content-Type": "application/json"})


def _closed_loop(url: str, seconds: float, worker: int, run: str) -> dict[str, Any]:
    """One connection sending back to back until the deadline."""
    latencies: list[float] = []
    accepted = 0
    deadline = time.perf_counter() + seconds
    with _client() as client:
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = client.post(url, content=event(worker * 10**7 + n, run))
            latencies.append(time.perf_counter() - started)
            accepted += response.status_code == 204
            n += 1
    return {"accepted": accepted, "latencies": latencies, "seconds": seconds}


def _open_loop(url: str, seconds: float, rate: float, worker: int, run: str) -> dict[str, Any]:
    """Requests on a fixed schedule; latency counted from the scheduled time (a late send is part of
    the wait), so a slow server cannot hide its queue."""
    latencies: list[float] = []
    accepted = 0
    with _client() as client:
        began = time.perf_counter()
        for n in range(int(seconds * rate)):
            due = began + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            response = client.post(url, content=event(worker * 10**7 + n, run))
            latencies.append(time.perf_counter() - due)
            accepted += response.status_code == 204
    return {"accepted": accepted, "latencies": latencies, "seconds": seconds}


def _worker(kind: str, url: str, seconds: float, rate: float, worker: int, run: str, out: Any) -> None:
    if kind == "closed":
        out.send(_closed_loop(url, seconds, worker, run))
    else:
        out.send(_open_loop(url, seconds, rate, worker, run))


def load(kind: str, url: str, seconds: float, rate: float, run: str) -> dict[str, Any]:
    """``CONNECTIONS`` load processes (each one connection, one request at a time), apart from the
    servers; ``rate`` (open loop) is split between them."""
    pipes, processes = [], []
    for worker in range(CONNECTIONS):
        receive, send = multiprocessing.Pipe(duplex=False)
        args = (kind, url, seconds, rate / CONNECTIONS, worker, run, send)
        processes.append(multiprocessing.Process(target=_worker, args=args))
        pipes.append(receive)
    for process in processes:
        process.start()
    results = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join()
    accepted = sum(r["accepted"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return {"rate": accepted / seconds, "accepted": accepted, "sent": len(latencies), "latencies": latencies}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_metrics(port: int) -> tuple[float, float]:
    """The intake's ``archiver_intake_batch_events`` sum and count so far."""
    values = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    return float(values["archiver_intake_batch_events_sum"]), float(
        values["archiver_intake_batch_events_count"]
    )


def measure(database_url: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
    env = {
        **os.environ,
        "ARCHIVER_DATABASE_URL": database_url,
        "ARCHIVER_BROKER_URL": BROKER,
        "ARCHIVER_INTAKE_USERNAME": AUTH[0],
        "ARCHIVER_INTAKE_PASSWORD": AUTH[1],
        "ARCHIVER_LOG_LEVEL": "WARNING",
    }
    subprocess.run([bin_path("archiver"), "db", "upgrade"], env=env, check=True, capture_output=True)
    fresh_broker()
    bare_port, intake_port = free_port(), free_port()
    bare = ManagedProcess("bare", [sys.executable, "-c", BARE_APP, str(bare_port)]).start()
    intake = ManagedProcess(
        "intake", [bin_path("archiver"), "serve", "--port", str(intake_port)], env=env
    ).start()
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{bare_port}/healthz"), 30, "the bare endpoint")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{intake_port}/healthz"), 30, "the intake")
        load("closed", f"http://127.0.0.1:{bare_port}/webhooks/bandwidth", 2, 0, "warm")  # warm-up
        assert bare.proc is not None and intake.proc is not None
        bare_pid, intake_pid = bare.proc.pid, intake.proc.pid
        bare_cpu = cpu_seconds(bare_pid)
        bare_run = load("closed", f"http://127.0.0.1:{bare_port}/webhooks/bandwidth", SECONDS, 0, "bare")
        bare_run["cpu_ms"] = (cpu_seconds(bare_pid) - bare_cpu) * 1000 / max(bare_run["sent"], 1)
        intake_url = f"http://127.0.0.1:{intake_port}/webhooks/bandwidth"
        intake_cpu = cpu_seconds(intake_pid)
        batches_before = batch_metrics(intake_port)
        intake_run = load("closed", intake_url, SECONDS, 0, "closed")
        intake_run["cpu_ms"] = (cpu_seconds(intake_pid) - intake_cpu) * 1000 / max(intake_run["sent"], 1)
        batches_after = batch_metrics(intake_port)
        intake_run["batch"] = (batches_after[0] - batches_before[0]) / max(
            batches_after[1] - batches_before[1], 1
        )
        paced = load("open", intake_url, SECONDS, bare_run["rate"] / 2, "open")
    finally:
        intake.stop()
        bare.stop()
        fresh_broker()  # no worker runs here: the accepted events' messages are not for later
    db = Database(database_url)
    with db.sessionmaker() as session:
        stored = int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)
    db.dispose()
    return bare_run, intake_run, paced, stored


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else 0.0


def main() -> None:
    with scratch_database() as database_url:
        bare_run, intake_run, paced, stored = measure(database_url)
    half = bare_run["rate"] / 2
    accepted = intake_run["accepted"] + paced["accepted"]
    ratio = intake_run["rate"] / bare_run["rate"]
    p50, p99 = pct(paced["latencies"], 50), pct(paced["latencies"], 99)
    print(
        f"bare {bare_run['rate']:.0f}/s, intake {intake_run['rate']:.0f}/s (ratio {ratio:.2f}); at {half:.0f}/s: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; accepted {accepted}, stored {stored}"
    )
    write_section(
        "Intake throughput and latency",
        ".venv/bin/python -m bench.intake_throughput",
        f"""
One uvicorn process each; PostgreSQL and Redis local; load from a separate process ({CONNECTIONS} processes,
each one keep-alive httpx connection, {SECONDS:.0f} s per phase); distinct `realTimeTranscriptionAvailable` events.

| | bare 204 endpoint | intake | ratio | target |
|---|---|---|---|---|
| closed loop, requests/s | {bare_run["rate"]:.0f} | {intake_run["rate"]:.0f} | {ratio:.2f} | ≥ 0.5 |
| closed loop p50 / p99 | {pct(bare_run["latencies"], 50):.1f} / {pct(bare_run["latencies"], 99):.1f} ms | {pct(intake_run["latencies"], 50):.1f} / {pct(intake_run["latencies"], 99):.1f} ms | | |
| server process CPU per request | {bare_run["cpu_ms"]:.2f} ms | {intake_run["cpu_ms"]:.2f} ms | | |

The intake commits concurrent requests together (group commit): {intake_run["batch"]:.1f} events per
transaction on average in the closed loop, where at most {CONNECTIONS} requests are in flight.

At half the bare endpoint's rate ({half:.0f}/s, open loop): intake p50 {p50:.1f} ms, p99 {p99:.1f} ms
(target p99 < 50 ms); {paced["accepted"]} of {paced["sent"]} answered 204.

Events answered 204: {accepted}; in the database afterwards: {stored}.
""",
    )
    assert stored == accepted, (stored, accepted)


if __name__ == "__main__":
    main()
