"""Benchmark: how much of a provider's rate limit four worker processes turn into useful requests,
and how many 429s they draw, with the shared rate budget (and, for comparison, without it).

The simulator limits the Bandwidth account to ``RATE`` requests per second (token bucket, burst =
rate). A backlog of real-time transcriptions arrives through the intake; one worker with four
processes archives and deletes them (a GET and a DELETE each), authenticated with OAuth 2.0 bearer
tokens. Useful requests per second are the
2xx API answers over the span from the first API request to the last. Targets (issue 8): useful
>= 0.9 x RATE, 429 answers <= 5 % of all requests.

    .venv/bin/python -m bench.rate_limit_efficiency
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from archiver.db.models import ArchiveItem, ItemState
from archiver.db.session import Database
from bench.results import write_section
from bench.scratch import running_stack, scratch_database

RATE = 20.0
ITEMS = 600
BASELINE_ITEMS = 200


def run(items: int, budget: bool) -> dict[str, Any]:
    env = {"ARCHIVER_LOG_LEVEL": "WARNING", "ARCHIVER_SWEEP_INTERVAL_SECONDS": "5"}
    if budget:
        env["ARCHIVER_BANDWIDTH_REQUESTS_PER_SECOND"] = str(RATE)
    with (
        scratch_database() as url,
        running_stack(url, env, worker_processes=4) as stack,
        stack.admin() as admin,
    ):
        db = Database(url)
        limits = {f"bandwidth:{stack.account_id}": {"rate": RATE, "burst": RATE}}
        admin.put("/admin/rate-limits", json={"limits": limits}).raise_for_status()
        admin.post("/admin/realtime-transcriptions", json={"count": items}).raise_for_status()
        admin.post("/admin/webhooks", json={"event": "available"}).raise_for_status()
        deadline = time.monotonic() + 20 * items / RATE + 120
        while (done := deletions_requested(db)) < items:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {done} of {items} items done")
            time.sleep(1)
        db.dispose()
        audit = admin.get("/admin/audit").json()["entries"]
        entries = [e for e in audit if e["path"].startswith("/api/v2/")]
        tokens = sum(1 for e in audit if e["path"].endswith("/oauth2/token"))
    useful = [e for e in entries if 200 <= e["status"] < 300]
    limited = [e for e in entries if e["status"] == 429]
    span = max(e["monotonic"] for e in entries) - min(e["monotonic"] for e in entries)
    result = {
        "items": items,
        "requests": len(entries),
        "useful": len(useful),
        "limited": len(limited),
        "span": span,
        "useful_rate": len(useful) / span,
        "limited_share": len(limited) / len(entries),
        "token_requests": tokens,
    }
    print(("with" if budget else "without") + " the shared budget:", result)
    return result


def deletions_requested(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(
            session.scalar(select(func.count()).where(ArchiveItem.state == ItemState.DELETION_REQUESTED)) or 0
        )


def main() -> None:
    shared = run(ITEMS, budget=True)
    alone = run(BASELINE_ITEMS, budget=False)

    def row(label: str, r: dict[str, Any]) -> str:
        return (
            f"| {label} | {r['items']} | {r['requests']} | {r['useful']} | {r['useful_rate']:.1f}/s "
            f"({r['useful_rate'] / RATE:.2f} x R) | {r['limited']} ({r['limited_share']:.1%}) | {r['span']:.0f} s "
            f"| {r['token_requests']} |"
        )

    write_section(
        "Rate-limit efficiency",
        ".venv/bin/python -m bench.rate_limit_efficiency",
        f"""
The simulator limits the account to R = {RATE:g} requests/s (burst {RATE:g}); one worker with four
processes archives and deletes a backlog of real-time transcriptions (a GET and a DELETE each).

| run | items | API requests | useful (2xx) | useful rate | 429 answers | span | OAuth token requests |
|---|---|---|---|---|---|---|---|
{row("shared budget (ARCHIVER_BANDWIDTH_REQUESTS_PER_SECOND=R)", shared)}
{row("no shared budget (429 + Retry-After only)", alone)}

Targets: useful >= 0.9 x R, 429 <= 5 % of requests. Bandwidth's API is reached with OAuth 2.0
client credentials: one token per worker process (the token endpoint is not rate-limited, and its
requests are not API requests).
""",
    )


if __name__ == "__main__":
    main()
