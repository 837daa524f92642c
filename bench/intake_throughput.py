"""Benchmark: the intake's sustained accepted webhooks per second and its latency, as a ratio of a
bare endpoint that answers 204, served the same way (uvicorn, one process), in the same run.

1. Closed loops for ``SECONDS`` with ``PROCESSES`` x ``LOW`` and then ``PROCESSES`` x ``HIGH``
   connections: the bare endpoint's rate, then the intake's (distinct
   ``realTimeTranscriptionAvailable`` events, Basic auth, PostgreSQL, Redis). Target: intake >= 0.5
   x bare.
2. Open loop at half the bare endpoint's rate: the intake's p50/p99 latency. Target: p99 < 50 ms.
   Then the bare endpoint on the same schedule: what the machine and the load generators add.
   Requests arrive independently, as a provider's webhooks do: each is sent at its scheduled time
   on an idle keep-alive connection, or a new one, whatever became of the requests before it
   (:func:`arrivals`, a lean asyncio HTTP/1.1 client, so that the load generators take little of
   the machine the servers share). The previous method is measured too, for comparison: each of
   ``PROCESSES`` x ``HIGH`` httpx connections sends its share of the schedule one request at a time,
   so an answer that comes late delays every later request on its connection.
3. Every event answered 204 is in the database afterwards.

The closed loops' load comes from separate processes (keep-alive httpx connections, each sending
one request at a time), the same for both servers. Each phase measures from an instant after every
load process has started and opened its connections (``START_DELAY``).

    .venv/bin/python -m bench.intake_throughput
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import httpx
from sqlalchemy import func, select

from archiver.core.config import Settings
from archiver.db.models import WebhookEvent
from archiver.db.session import Database
from archiver.local.supervisor import ManagedProcess, bin_path, free_port, http_ok, wait_until
from bench.results import write_section
from bench.scratch import BROKER, fresh_broker, scratch_database

SECONDS = 15.0
CORES = os.cpu_count() or 1
#: Load processes; each holds keep-alive connections that send one request at a time.
PROCESSES = 6
#: Connections per load process: one (6 requests in flight at most, as webhooks trickle in) and
#: enough to keep the server busy, which is what "sustained" throughput asks.
LOW, HIGH = 1, int(os.environ.get("BENCH_INTAKE_CONNECTIONS_PER_PROCESS", "8"))
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


#: Seconds from the start of a phase's load processes to its first measured request: time for
#: every process to start and every connection to open (unmeasured), so that neither server's
#: figures include the load generators' own start-up.
START_DELAY = 3.0


def _connected(url: str) -> httpx.Client:
    """A client whose keep-alive connection is open (one unmeasured request to ``/healthz``)."""
    client = _client()
    client.get(url.rsplit("/webhooks/", 1)[0] + "/healthz")
    return client


def _wait_until(start_at: float) -> None:
    delay = start_at - time.time()  # wall time: the same instant in every load process
    if delay > 0:
        time.sleep(delay)


def _closed_loop(url: str, seconds: float, worker: int, run: str, start_at: float) -> dict[str, Any]:
    """One connection sending back to back from ``start_at`` until ``seconds`` later."""
    latencies: list[float] = []
    accepted = 0
    with closing(_connected(url)) as client:
        _wait_until(start_at)
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = client.post(url, content=event(worker * 10**7 + n, run))
            latencies.append(time.perf_counter() - started)
            accepted += response.status_code == 204
            n += 1
    return {"accepted": accepted, "latencies": latencies, "seconds": seconds}


def _open_loop(
    url: str, seconds: float, rate: float, worker: int, run: str, start_at: float
) -> dict[str, Any]:
    """Requests on a fixed schedule from ``start_at``; latency counted from the scheduled time (a
    late send is part of the wait), so a slow server cannot hide its queue."""
    latencies: list[float] = []
    accepted = 0
    with closing(_connected(url)) as client:
        _wait_until(start_at)
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


def _worker(
    kind: str,
    url: str,
    seconds: float,
    rate: float,
    worker: int,
    run: str,
    connections: int,
    start_at: float,
    out: Any,
) -> None:
    """``connections`` threads, each one connection sending one request at a time."""

    def one(connection: int) -> dict[str, Any]:
        number = worker * connections + connection
        if kind == "closed":
            return _closed_loop(url, seconds, number, run, start_at)
        return _open_loop(url, seconds, rate / connections, number, run, start_at)

    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(one, range(connections)))
    out.send(
        {
            "accepted": sum(r["accepted"] for r in results),
            "latencies": [x for r in results for x in r["latencies"]],
        }
    )


def load(kind: str, url: str, seconds: float, rate: float, run: str, connections: int = 1) -> dict[str, Any]:
    """``PROCESSES`` load processes, apart from the servers, each with ``connections`` connections
    sending one request at a time, all from the same instant; ``rate`` (open loop) is split between
    all connections."""
    return _in_processes(
        _worker,
        lambda worker, start_at: (kind, url, seconds, rate / PROCESSES, worker, run, connections, start_at),
        seconds,
    )


def _in_processes(target: Any, args_of: Any, seconds: float) -> dict[str, Any]:
    """Run ``target(*args_of(worker, start_at), pipe)`` in ``PROCESSES`` processes that start sending
    at ``start_at``; their answers, latencies and CPU per request, together."""
    pipes, processes = [], []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start_at = time.time() + START_DELAY
    for worker in range(PROCESSES):
        receive, send = multiprocessing.Pipe(duplex=False)
        processes.append(multiprocessing.Process(target=target, args=(*args_of(worker, start_at), send)))
        pipes.append(receive)
    for process in processes:
        process.start()
    results = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    window = time.time() - start_at  # longer than ``seconds`` when answers come late
    accepted = sum(r["accepted"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "rate": accepted / seconds,
        "accepted": accepted,
        "sent": len(latencies),
        "latencies": latencies,
        "client_cpu_ms": client_cpu * 1000 / max(len(latencies), 1),
        "window": window,
        "connections": sum(r.get("opened", 0) for r in results),
    }


#: Connections each arrivals process may open; beyond that a request waits for an idle one (its
#: latency still counts from its scheduled time).
ARRIVAL_CONNECTIONS = 400


class _Arrivals:
    """One load process's share of an open loop: each request sent at its scheduled time on an
    idle keep-alive connection or a new one, with a minimal HTTP/1.1 client (a fixed request, an
    answer read by its ``Content-Length``)."""

    def __init__(self, url: str, run: str, worker: int) -> None:
        parsed = httpx.URL(url)
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.path
        credentials = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
        self.head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Basic {credentials}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.run, self.worker = run, worker
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(ARRIVAL_CONNECTIONS)
        self.latencies: list[float] = []
        self.accepted = 0
        self.opened = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def exchange(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], body: bytes
    ) -> int:
        reader, writer = connection
        writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        return int(head[9:12])

    async def send(self, n: int, due: float) -> None:
        body = event(self.worker * 10**7 + n, self.run)
        async with self.slots:
            connection = self.idle.pop() if self.idle else None
            status = None
            if connection is not None:
                try:
                    status = await self.exchange(connection, body)
                except (asyncio.IncompleteReadError, ConnectionError):
                    # The server closed it while idle (keep-alive timeout) before reading the
                    # request, as HTTP clients expect: send it again on a new connection.
                    connection[1].close()
                    connection = None
            if connection is None:
                connection = await self.connect()
                status = await self.exchange(connection, body)
            self.idle.append(connection)
        self.latencies.append(time.perf_counter() - due)
        self.accepted += status == 204

    async def schedule(self, seconds: float, rate: float, start_at: float) -> None:
        self.idle = [await self.connect() for _ in range(HIGH)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.perf_counter()
        sent = []
        for n in range(int(seconds * rate)):
            due = began + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(asyncio.ensure_future(self.send(n, due)))
        await asyncio.gather(*sent)
        for _reader, writer in self.idle:
            writer.close()


def _arrivals_worker(
    url: str, seconds: float, rate: float, worker: int, run: str, start_at: float, out: Any
) -> None:
    import uvloop

    async def main() -> dict[str, Any]:
        arrivals = _Arrivals(url, run, worker)
        await arrivals.schedule(seconds, rate, start_at)
        return {"accepted": arrivals.accepted, "latencies": arrivals.latencies, "opened": arrivals.opened}

    out.send(uvloop.run(main()))


def arrivals(url: str, seconds: float, rate: float, run: str) -> dict[str, Any]:
    """The open loop with independent arrivals: ``PROCESSES`` processes, each sending its share of
    ``rate`` on schedule (:class:`_Arrivals`); the same result as :func:`load`, with the
    connections opened."""
    return _in_processes(
        _arrivals_worker,
        lambda worker, start_at: (url, seconds, rate / PROCESSES, worker, run, start_at),
        seconds,
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time used so far by the PostgreSQL processes running now (its backends and helpers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
                fields = text.rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def handled_within(port: int, seconds: str) -> tuple[float, float]:
    """The intake's ``archiver_intake_request_seconds`` so far: requests within ``seconds`` (a
    bucket bound), and all requests."""
    within = total = 0.0
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("archiver_intake_request_seconds_bucket") and 'provider="bandwidth"' in line:
            if f'le="{seconds}"' in line:
                within = float(line.rsplit(" ", 1)[1])
            elif 'le="+Inf"' in line:
                total = float(line.rsplit(" ", 1)[1])
    return within, total


def open_phase(
    url: str, pid: int, rate: float, run: str, metrics_port: int, independent: bool = True
) -> dict[str, Any]:
    """The open loop at ``rate`` (:func:`arrivals`, or with ``independent=False`` the previous
    method), with where the machine's CPU went per request and the share of requests the intake's
    handler answered within 50 ms (its own latency histogram)."""
    cpu, pg_cpu, handled = cpu_seconds(pid), postgres_cpu_seconds(), handled_within(metrics_port, "0.05")
    result = arrivals(url, SECONDS, rate, run) if independent else load("open", url, SECONDS, rate, run, HIGH)
    sent = max(result["sent"], 1)
    result["cpu_ms"] = (cpu_seconds(pid) - cpu) * 1000 / sent
    result["postgres_cpu_ms"] = (postgres_cpu_seconds() - pg_cpu) * 1000 / sent
    after = handled_within(metrics_port, "0.05")
    result["handled_50ms"] = (after[0] - handled[0]) / max(after[1] - handled[1], 1)
    return result


def batch_metrics(port: int) -> tuple[float, float]:
    """The intake's ``archiver_intake_batch_events`` sum and count so far."""
    values = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    return float(values["archiver_intake_batch_events_sum"]), float(
        values["archiver_intake_batch_events_count"]
    )


def closed_phase(
    url: str, pid: int, per_process: int, run: str, metrics_port: int | None = None
) -> dict[str, Any]:
    """A closed-loop phase, with the server's CPU per request and (intake) its mean batch size."""
    cpu = cpu_seconds(pid)
    batches = batch_metrics(metrics_port) if metrics_port else (0.0, 0.0)
    result = load("closed", url, SECONDS, 0, run, per_process)
    result["cpu_ms"] = (cpu_seconds(pid) - cpu) * 1000 / max(result["sent"], 1)
    if metrics_port:
        after = batch_metrics(metrics_port)
        result["batch"] = (after[0] - batches[0]) / max(after[1] - batches[1], 1)
    return result


#: Alternated bare/intake pairs of closed-loop phases at ``HIGH`` connections.
ROUNDS = 2


def combined(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Closed-loop phases of one server taken together: the rate over their total time."""
    sent = sum(r["sent"] for r in rounds)
    return {
        "rate": sum(r["accepted"] for r in rounds) / (SECONDS * len(rounds)),
        "accepted": sum(r["accepted"] for r in rounds),
        "sent": sent,
        "latencies": [x for r in rounds for x in r["latencies"]],
        "cpu_ms": sum(r["cpu_ms"] * r["sent"] for r in rounds) / max(sent, 1),
        "batch": sum(r.get("batch", 0.0) for r in rounds) / len(rounds),
        "rounds": [r["rate"] for r in rounds],
    }


def measure(
    database_url: str,
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[str, Any], dict[str, Any], int]:
    """Bare and intake closed loops at ``LOW`` and ``HIGH`` connections per load process, then the
    open loop at half the bare endpoint's ``HIGH`` rate; and the events stored afterwards."""
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
    bare_port, intake_port, metrics_port = free_port(), free_port(), free_port()
    env["ARCHIVER_METRICS_PORT"] = str(metrics_port)
    bare = ManagedProcess("bare", [sys.executable, "-c", BARE_APP, str(bare_port)]).start()
    intake = ManagedProcess(
        "intake", [bin_path("archiver"), "serve", "--port", str(intake_port)], env=env
    ).start()
    bare_runs: dict[int, dict[str, Any]] = {}
    intake_runs: dict[int, dict[str, Any]] = {}
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{bare_port}/healthz"), 30, "the bare endpoint")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{intake_port}/healthz"), 30, "the intake")
        assert bare.proc is not None and intake.proc is not None
        bare_url = f"http://127.0.0.1:{bare_port}/webhooks/bandwidth"
        intake_url = f"http://127.0.0.1:{intake_port}/webhooks/bandwidth"
        load("closed", bare_url, 2, 0, "warm")  # warm-up
        for per_process in (LOW, HIGH):
            # Alternated, ROUNDS pairs at the sustained concurrency: the machine's speed drifts
            # (shared hosts), and both servers then see the same drift.
            bare_rounds, intake_rounds = [], []
            for round_ in range(ROUNDS if per_process == HIGH else 1):
                bare_rounds.append(closed_phase(bare_url, bare.proc.pid, per_process, f"bare{round_}"))
                intake_rounds.append(
                    closed_phase(
                        intake_url,
                        intake.proc.pid,
                        per_process,
                        f"closed{per_process}-{round_}",
                        metrics_port,
                    )
                )
            bare_runs[per_process], intake_runs[per_process] = combined(bare_rounds), combined(intake_rounds)
        half = bare_runs[HIGH]["rate"] / 2
        paced = open_phase(intake_url, intake.proc.pid, half, "open", metrics_port)
        # The same schedule against the bare endpoint: the latency the machine and the load
        # generators add by themselves.
        paced_bare = arrivals(bare_url, SECONDS, half, "open-bare")
        # The previous method, for comparison with earlier results.
        paced["per_connection"] = open_phase(
            intake_url, intake.proc.pid, half, "open-httpx", metrics_port, independent=False
        )
    finally:
        intake.stop()
        bare.stop()
        fresh_broker()  # no worker runs here: the accepted events' messages are not for later
    db = Database(database_url)
    with db.sessionmaker() as session:
        stored = int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)
    db.dispose()
    return bare_runs, intake_runs, paced, paced_bare, stored


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else 0.0


def row(per_process: int, bare: dict[str, Any], intake: dict[str, Any]) -> str:
    ratio = intake["rate"] / bare["rate"]
    connections = PROCESSES * per_process
    return (
        f"| {connections} | {bare['rate']:.0f} | {intake['rate']:.0f} | **{ratio:.2f}** | "
        f"{pct(bare['latencies'], 50):.1f} / {pct(bare['latencies'], 99):.1f} ms | "
        f"{pct(intake['latencies'], 50):.1f} / {pct(intake['latencies'], 99):.1f} ms | "
        f"{bare['cpu_ms']:.2f} / {intake['cpu_ms']:.2f} ms | {intake['batch']:.1f} |"
    )


#: ``ARCHIVER_INTAKE_RELAY_MIN_MESSAGES`` and ``ARCHIVER_INTAKE_WRITERS``, as the intake under test
#: has them (the environment, else the defaults).
_SETTINGS = Settings(database_url="sqlite://")
RELAY_MIN, WRITERS = _SETTINGS.intake_relay_min_messages, _SETTINGS.intake_writers


def round_rates(bare: dict[str, Any], intake: dict[str, Any]) -> str:
    """Each round's rates, bare / intake: how much the rounds of one phase agree."""
    return ", ".join(f"{b:.0f} / {i:.0f}" for b, i in zip(bare["rounds"], intake["rounds"], strict=True))


def main() -> None:
    with scratch_database() as database_url:
        bare_runs, intake_runs, paced, paced_bare, stored = measure(database_url)
    half = bare_runs[HIGH]["rate"] / 2
    per_connection = paced["per_connection"]
    accepted = (
        sum(r["accepted"] for r in intake_runs.values()) + paced["accepted"] + per_connection["accepted"]
    )
    old_p50, old_p99 = pct(per_connection["latencies"], 50), pct(per_connection["latencies"], 99)
    p50, p99 = pct(paced["latencies"], 50), pct(paced["latencies"], 99)
    bare_p50, bare_p99 = pct(paced_bare["latencies"], 50), pct(paced_bare["latencies"], 99)
    per_request = paced["client_cpu_ms"] + paced["cpu_ms"] + paced["postgres_cpu_ms"]
    busy = per_request / 1000 * paced["sent"] / paced["window"] / CORES
    for per_process in (LOW, HIGH):
        bare, intake = bare_runs[per_process], intake_runs[per_process]
        print(
            f"{PROCESSES * per_process} connections: bare {bare['rate']:.0f}/s, intake {intake['rate']:.0f}/s "
            f"(ratio {intake['rate'] / bare['rate']:.2f}, {intake['batch']:.1f} events per commit); rounds: "
            + round_rates(bare, intake)
        )
    print(
        f"at {half:.0f}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms (bare: {bare_p50:.1f} / {bare_p99:.1f} ms); "
        f"accepted {accepted}, stored {stored}"
    )
    print(
        f"  handler within 50 ms: {paced['handled_50ms']:.1%}; CPU per request: load generators "
        f"{paced['client_cpu_ms']:.2f} ms, intake {paced['cpu_ms']:.2f} ms, PostgreSQL "
        f"{paced['postgres_cpu_ms']:.2f} ms ({busy:.0%} of {CORES} cores); {paced['connections']} connections"
    )
    print(
        f"  previous method (httpx, one request at a time per connection): p50 {old_p50:.1f} ms, "
        f"p99 {old_p99:.1f} ms; load generators {per_connection['client_cpu_ms']:.2f} ms CPU per request"
    )
    write_section(
        "Intake throughput and latency",
        ".venv/bin/python -m bench.intake_throughput",
        f"""
One uvicorn process each (httptools, uvloop); PostgreSQL and Redis local. Closed loops: load from {PROCESSES}
separate processes, each with keep-alive httpx connections sending one request at a time
({SECONDS:.0f} s per phase, measured once every connection is open); distinct
`realTimeTranscriptionAvailable` events. Closed loops at two
concurrencies: one connection per load process, and {HIGH}, which keeps both servers busy (the
sustained rate the target is about; {ROUNDS} alternated pairs of phases, taken together:
{round_rates(bare_runs[HIGH], intake_runs[HIGH])} requests/s). No worker runs: a batch of {RELAY_MIN} or more events hands
its items' messages to a worker in one relay message, so publishing them one by one is a worker's
CPU, not counted here; smaller batches publish directly, counted.

| connections | bare 204 endpoint, requests/s | intake, requests/s | ratio (target ≥ 0.5) | bare p50 / p99 | intake p50 / p99 | server CPU per request, bare / intake | intake events per commit |
|---|---|---|---|---|---|---|---|
{row(LOW, bare_runs[LOW], intake_runs[LOW])}
{row(HIGH, bare_runs[HIGH], intake_runs[HIGH])}

The intake commits concurrent requests together (group commit), {WRITERS} transaction at a time
(`ARCHIVER_INTAKE_WRITERS`); the last column is the mean batch.

At half the bare endpoint's rate ({half:.0f}/s, open loop, requests arriving independently on
{PROCESSES} load processes' keep-alive connections, {paced["connections"]} opened): intake
p50 {p50:.1f} ms, **p99 {p99:.1f} ms** (target p99 < 50 ms); {paced["accepted"]} of {paced["sent"]} answered 204.
The bare endpoint on the same schedule, for the latency the machine and the load generators add
themselves: p50 {bare_p50:.1f} ms, p99 {bare_p99:.1f} ms.
The intake's handler (from the request reaching the application to its answer,
`archiver_intake_request_seconds`) answered {paced["handled_50ms"]:.1%} of these within 50 ms.
CPU per request in this phase: load generators {paced["client_cpu_ms"]:.2f} ms, intake
{paced["cpu_ms"]:.2f} ms, PostgreSQL {paced["postgres_cpu_ms"]:.2f} ms; {busy:.0%} of the machine's
{CORES} cores from the phase's start to its last answer.

The previous method, on the same schedule: {PROCESSES * HIGH} httpx connections, each sending its
share one request at a time, so that one late answer delays every later request on its connection,
and load generators that take {per_connection["client_cpu_ms"]:.2f} ms of CPU per request on the
machine the intake runs on (the intake: {per_connection["cpu_ms"]:.2f} ms): p50 {old_p50:.1f} ms,
p99 {old_p99:.1f} ms.

Events answered 204: {accepted}; in the database afterwards: {stored}.
""",
    )
    assert stored == accepted, (stored, accepted)


if __name__ == "__main__":
    main()
