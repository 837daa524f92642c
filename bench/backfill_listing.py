"""Benchmark: list requests a Bandwidth backfill uses for 50,000 recordings with bursts, as a ratio
of the minimum the 1000-entry cap forces (target ≤ 1.2).

The simulator holds 50,000 recordings over one day: 40,000 spread out, and bursts of 5,000 in
10 ms, 3,000 in 200 ms and 2,000 in one second. A dry run (counting, no archiving) lists them with
the archiver's own backfill code against a scratch SQLite database, once per order in which the
capped list may answer (oldest-first, newest-first, shuffled); the simulator's audit counts the
requests it answered. The minimum is ``50,000 // 1000 + 1``: a full page never proves a window
complete, so at least one page per 1,000 plus one that comes back short.

    .venv/bin/python -m bench.backfill_listing
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.backfill import backfill_status, run_backfill, start_bandwidth_backfill
from archiver.core.config import Settings
from archiver.db.migrate import upgrade
from bench.results import write_section
from bench.scratch import BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, StandaloneSimulator, standalone_simulator
from workers.wiring import build_context

TOTAL = 50_000
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
BURSTS = [(timedelta(hours=3), 5000, 10), (timedelta(hours=9), 3000, 200), (timedelta(hours=15), 2000, 1000)]


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class NoDispatch:
    """A dry run sends nothing."""

    def enqueue(self, *_args: object) -> None:
        raise AssertionError("a dry run enqueues nothing")

    def enqueue_many(self, *_args: object) -> None:
        raise AssertionError("a dry run enqueues nothing")

    def relay(self, *_args: object) -> None:
        raise AssertionError("a dry run enqueues nothing")

    def enqueue_backfill(self, run_id: int) -> None:
        raise AssertionError("a dry run enqueues nothing")

    def backlog(self) -> dict[str, int] | None:
        return None


ORDERS = ("oldest-first", "newest-first", "shuffled")


def dry_run(sim: StandaloneSimulator, order: str) -> tuple[dict[str, Any], int, float]:
    """One dry run with the list answered in ``order``: the run's status, the list requests the
    simulator served, and the seconds it took."""
    sim.admin.put("/admin/bandwidth/list-order", json={"order": order}).raise_for_status()
    since_seq = sim.admin.get("/admin/audit", params={"count_only": 1}).json()["count"]
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite:///{Path(scratch) / 'bench.db'}",
            bandwidth_client_id=BENCH_CLIENT_ID,
            bandwidth_client_secret=BENCH_CLIENT_SECRET,  # type: ignore[arg-type]
            bandwidth_token_url=sim.token_url,
            bandwidth_base_url=f"{sim.url}/api/v2",
        )
        upgrade(settings.database_url)
        ctx = build_context(settings, dispatcher=NoDispatch())
        started = time.perf_counter()
        run = start_bandwidth_backfill(ctx, "9900000", SINCE, UNTIL, realtime=False, dry_run=True)
        while run_backfill(ctx, run.id, budget_seconds=3600).more:
            pass
        elapsed = time.perf_counter() - started
        [status] = backfill_status(ctx, run.id)
        ctx.close()
    entries = sim.admin.get("/admin/audit", params={"method": "GET", "since_seq": since_seq}).json()[
        "entries"
    ]
    served = sum(1 for e in entries if e["path"].endswith("/recordings"))
    return status, served, elapsed


def main() -> None:
    rows = []
    with standalone_simulator(admin_timeout=600) as sim:
        bursts = [{"at": iso(SINCE + at), "count": n, "span_ms": span} for at, n, span in BURSTS]
        spread = TOTAL - sum(n for _, n, _ in BURSTS)
        scenario = {
            "since": iso(SINCE),
            "until": iso(UNTIL),
            "recordings": spread,
            "bursts": bursts,
            "realtime": 0,
        }
        created = sim.admin.post("/admin/scenario", json=scenario).json()
        assert created["recordings"] == TOTAL, created
        for order in ORDERS:
            status, served, elapsed = dry_run(sim, order)
            assert status["found"] == TOTAL and not status["truncated_windows"], (order, status)
            assert served == status["list_requests"], (order, served, status["list_requests"])
            rows.append((order, status, elapsed))
    minimum = TOTAL // 1000 + 1
    table = []
    for order, status, elapsed in rows:
        ratio = status["list_requests"] / minimum
        target = "≤ 1.2" if order != "shuffled" else "none (a page in no order proves nothing)"
        print(f"{order}: {status['found']} found with {status['list_requests']} list requests: {ratio:.3f}")
        table.append(
            f"| {order} | {status['found']:,} | {status['list_requests']} | {minimum} | {ratio:.3f} | {target} "
            f"| {elapsed:.1f} s |"
        )
    rows_text = "\n".join(table)
    write_section(
        "Backfill listing (50,000 recordings with bursts)",
        ".venv/bin/python -m bench.backfill_listing",
        f"""
Recordings: {TOTAL:,} in one day ({spread:,} spread out; bursts of 5,000 in 10 ms, 3,000 in 200 ms,
2,000 in 1 s). A dry run of `archiver backfill bandwidth` against the simulator, once for each order
in which the capped list may answer (Bandwidth documents none; `PUT /admin/bandwidth/list-order`).

| list order | found | list requests | minimum (cap of 1000) | ratio | target | time |
|---|---|---|---|---|---|---|
{rows_text}

Every run found each recording exactly once, and the simulator's audit counted the same list
requests as the run.
""",
    )


if __name__ == "__main__":
    main()
