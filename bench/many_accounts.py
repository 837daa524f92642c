"""Benchmark: many accounts in one deployment (issue 22). 100 Bandwidth accounts, 50 real-time
transcriptions each, through the whole pipeline (each account's webhooks on its own path with its
own credentials; each item fetched with its account's token, stored under its account's prefix),
as a ratio of the same pipeline serving one account (bench/small_items's pipeline side), in the
same run: one-account run, many-accounts run, one-account run again. Targets: ratio >= 0.9; the
worker's resident memory grows by at most 20 MiB from one account to 100.

Memory: the resident set (VmRSS) of each worker child process after its run, the largest child
of each side compared (a worker process serves every account; what it keeps per account is an
OAuth client with its token, a rate budget and a store; the HTTP pool and the S3 client are shared).

    .venv/bin/python -m bench.many_accounts
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from archiver.db.migrate import upgrade
from archiver.db.session import Database
from archiver.local.devstack import LocalStack
from bench.rate_limit_efficiency import deletions_requested
from bench.results import write_section
from bench.scratch import BROKER, fresh_broker, running_stack, scratch_database

ACCOUNTS = 100
PER_ACCOUNT = 50
ONE_ACCOUNT_ITEMS = 1000
CONCURRENCY = 2
ENV = {"ARCHIVER_LOG_LEVEL": "WARNING", "ARCHIVER_SWEEP_INTERVAL_SECONDS": "5"}


def account_ids() -> list[str]:
    return [str(9_800_000 + i) for i in range(ACCOUNTS)]


def worker_children_rss(stack: LocalStack) -> list[float]:
    """VmRSS (MiB) of the worker's prefork children."""
    main = next(p for p in stack.group.processes if p.name == "worker")
    assert main.proc is not None
    children = Path(f"/proc/{main.proc.pid}/task/{main.proc.pid}/children").read_text().split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        sizes.append(kb / 1024)
    return sizes


def wait_done(db: Database, already: int, expected: int, started: float) -> float:
    while (done := deletions_requested(db) - already) < expected:
        if time.perf_counter() - started > 1800:
            raise AssertionError(f"only {done} of {expected} done")
        time.sleep(0.2)
    return time.perf_counter() - started


def one_account_run() -> tuple[float, list[float]]:
    """items/s of the single-account pipeline (as bench.small_items), and its workers' RSS."""
    with scratch_database() as url, running_stack(url, ENV, worker_processes=CONCURRENCY) as stack:
        db = Database(url)
        with stack.admin() as admin:
            created = admin.post("/admin/realtime-transcriptions", json={"count": ONE_ACCOUNT_ITEMS}).json()
            ids = [t["transcriptionId"] for t in created["created"]]
            started = time.perf_counter()
            admin.post("/admin/webhooks", json={"event": "available", "ids": ids}).raise_for_status()
            seconds = wait_done(db, 0, ONE_ACCOUNT_ITEMS, started)
        rss = worker_children_rss(stack)
        db.dispose()
    return ONE_ACCOUNT_ITEMS / seconds, rss


def registry(folder: Path, accounts: list[str]) -> Path:
    secrets = folder / "account-secrets"
    secrets.mkdir()
    lines = []
    for account in accounts:
        (secrets / f"client-{account}").write_text(f"bench-client-secret-{account}")
        (secrets / f"hooks-{account}").write_text(f"bench-hook-password-{account}")
        lines.append(
            f'[[bandwidth]]\naccount_id = "{account}"\nclient_id = "client-{account}"\n'
            f'client_secret = {{ file = "{secrets}/client-{account}" }}\n'
            f'callback_username = "hooks-{account}"\ncallback_password = {{ file = "{secrets}/hooks-{account}" }}\n'
            f'storage = {{ prefix = "tenant-{account}" }}\n'
        )
    path = folder / "accounts.toml"
    path.write_text("\n".join(lines))
    return path


def many_accounts_run() -> tuple[float, list[float]]:
    accounts = account_ids()
    fresh_broker()
    with scratch_database() as url, tempfile.TemporaryDirectory() as workdir:
        upgrade(url)
        folder = Path(workdir)
        stack = LocalStack(
            workdir=folder,
            database_url=url,
            broker_url=BROKER,
            extra_env={**ENV, "ARCHIVER_S3_BUCKET": "archiver-local"},
            accounts_file=registry(folder, accounts),
        )
        db = Database(url)
        try:
            stack.start_s3()
            stack.start_simulator()
            stack.start_intake()
            stack.start_worker(concurrency=CONCURRENCY)
            stack.start_beat()
            with stack.admin() as admin:
                admin.post("/admin/reset").raise_for_status()
                ids: dict[str, list[str]] = {}
                for account in accounts:
                    admin.post(
                        "/admin/bandwidth/clients",
                        json={"client_id": f"client-{account}", "client_secret": f"bench-client-secret-{account}",
                              "accounts": [account]},
                    ).raise_for_status()  # fmt: skip
                    made = admin.post(
                        "/admin/realtime-transcriptions", json={"count": PER_ACCOUNT, "account_id": account}
                    ).json()
                    ids[account] = [t["transcriptionId"] for t in made["created"]]
                started = time.perf_counter()
                for account in accounts:
                    admin.post(
                        "/admin/webhooks",
                        json={"event": "available", "ids": ids[account],
                              "intake_url": f"{stack.intake_url}/webhooks/bandwidth/{account}",
                              "username": f"hooks-{account}", "password": f"bench-hook-password-{account}"},
                    ).raise_for_status()  # fmt: skip
                seconds = wait_done(db, 0, ACCOUNTS * PER_ACCOUNT, started)
                audit = admin.get("/admin/audit", params={"method": "DELETE"}).json()["entries"]
            credentials = {(e["path"].split("/")[4], e["credential"]) for e in audit}
            assert credentials == {(a, f"client-{a}") for a in accounts}, (
                "an item went out with another's token"
            )
            rss = worker_children_rss(stack)
        finally:
            db.dispose()
            stack.stop()
            fresh_broker()
    return ACCOUNTS * PER_ACCOUNT / seconds, rss


def main() -> None:
    before, rss_one = one_account_run()
    many, rss_many = many_accounts_run()
    after, rss_one_again = one_account_run()
    baseline = statistics.mean([before, after])
    ratio = many / baseline
    growth = max(rss_many) - max(*rss_one, *rss_one_again)
    print(
        f"one account {before:.1f}/{after:.1f} items/s; {ACCOUNTS} accounts {many:.1f} items/s: ratio {ratio:.2f}"
    )
    print(f"worker children RSS: one {rss_one} / {rss_one_again}, many {rss_many}: growth {growth:+.1f} MiB")
    write_section(
        "Many accounts",
        ".venv/bin/python -m bench.many_accounts",
        f"""
{ACCOUNTS} Bandwidth accounts from an accounts registry, {PER_ACCOUNT} real-time transcriptions each
({ACCOUNTS * PER_ACCOUNT} items), each account's webhooks on its own path with its own credentials,
each item fetched with its account's OAuth token and stored under its account's prefix, against
the same pipeline serving one account ({ONE_ACCOUNT_ITEMS} items), run before and after. One worker
with {CONCURRENCY} processes, PostgreSQL, Redis, moto, the simulator.

| | items/s | worker children VmRSS after the run (MiB) |
|---|---|---|
| one account (before) | {before:.1f} | {", ".join(f"{r:.1f}" for r in rss_one)} |
| {ACCOUNTS} accounts | {many:.1f} | {", ".join(f"{r:.1f}" for r in rss_many)} |
| one account (after) | {after:.1f} | {", ".join(f"{r:.1f}" for r in rss_one_again)} |

Rate ratio: {ratio:.2f} of the mean one-account rate (target >= 0.9). Memory growth from one account
to {ACCOUNTS}: {growth:+.1f} MiB, largest worker child against largest (target <= 20 MiB). The
simulator's audit showed every DELETE carrying its own account's client. The one-account runs are
shorter (1,000 items against 5,000): the first seconds, before both worker processes are busy,
weigh more in them, which favours the many-accounts side by a few per cent.
""",
    )


if __name__ == "__main__":
    main()
