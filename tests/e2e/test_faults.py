"""The fault suite: 1,000 mixed items through a stack that is failing in every way at once.

The stack is the fault suite's own, so that it can be broken without touching the other tests':
a private PostgreSQL cluster and Redis server (each restarted once, mid-run), an S3 server behind a
fault-injecting proxy (10 % of requests refused, answered with an error after being applied, or
reset), and a simulator that answers 20 % 429, 5 % 503 and resets connections. A pool process of the
worker is SIGKILLed every few seconds throughout.

Webhooks are sent by the test through the simulator, so that each delivery's answer is known: an
event the intake refused (while PostgreSQL was down) is sent again, as a provider retries or an
operator's backfill finds it; an event answered 2xx must never need that.

Afterwards, with the clocks past the purge window, every item must be archived and verified (each
object re-read from S3 itself, not through the proxy), deleted at the provider only after its
verified archive (the simulator's audit), without duplicates, purge-confirmed, and nothing dead.
Run alone with ``pytest -m faults``.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from archiver.db.migrate import upgrade
from archiver.db.models import ArchivedObject, ArchiveItem, ItemHistory, ItemState, WebhookEvent
from archiver.db.session import Database
from archiver.local.devstack import LocalStack
from archiver.local.supervisor import ManagedProcess, free_port, wait_until
from tests.support.helpers import parse_time
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.stack import SECRETS, TEST_PIPELINE_ENV, SharedClock, Simulator, start_s3_fault_proxy

pytestmark = [pytest.mark.faults, pytest.mark.long]

REALTIME, RECORDINGS, TWILIO, REJECTED = 450, 250, 290, 10  # 1,000 items
KILL_EVERY_SECONDS = 3.0
SEND_SECONDS = 40.0
REDIS_RESTART_AT, POSTGRES_RESTART_AT = 10.0, 25.0  # seconds into the run, while webhooks still arrive
SIMULATOR_FAULTS = (
    {"status": 429, "share": 0.20, "retry_after": 1},
    {"status": 503, "share": 0.0625},  # 5 % of all requests: 0.0625 of the 80 % not already 429
    {"status": 0, "share": 0.04, "reset_after_bytes": 16},  # ~3 %: the connection drops mid-body
)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FaultStack:
    stack: LocalStack
    postgres: PrivatePostgres
    redis: PrivateRedis
    proxy_url: str
    clock: SharedClock
    db: Database

    def proxy_faults(self, rate: float | None = None) -> dict[str, Any]:
        if rate is None:
            response = httpx.get(f"{self.proxy_url}/__faults__", timeout=10)
        else:
            response = httpx.put(f"{self.proxy_url}/__faults__", json={"rate": rate}, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    workdir = tmp_path_factory.mktemp("faults")
    postgres = PrivatePostgres()
    redis_server = PrivateRedis(workdir)
    clock_file = workdir / "clock-offset"
    clock_file.write_text("0")
    proxy_port = free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    stack = LocalStack(
        workdir=workdir,
        database_url=postgres.url,
        broker_url="",
        intake_password=SECRETS["intake_password"],
        client_secret=SECRETS["bandwidth_client_secret"],
        twilio_auth_token=SECRETS["twilio_auth_token"],
        twilio_api_key_secret=SECRETS["twilio_api_key_secret"],
        bucket="archiver-faults",
    )
    database = None
    try:
        postgres.start()
        upgrade(postgres.url)
        redis_server.start()
        stack.broker_url = redis_server.url(0)
        stack.extra_env = {
            **TEST_PIPELINE_ENV,
            "ARCHIVER_MAX_ATTEMPTS": "8",  # the default: faults are expected, not fatal
            "ARCHIVER_CLOCK_OFFSET_FILE": str(clock_file),
            "ARCHIVER_S3_ENDPOINT_URL": proxy_url,  # every archiver process goes through the proxy
        }
        stack.start_s3()  # the bucket is made directly; the proxy starts with no faults
        start_s3_fault_proxy(stack, proxy_port)
        stack.start_simulator()
        stack.start_intake()
        # Mostly waiting (backoffs, Retry-After, botocore's retries): more processes than cores.
        # Started again if it exits, as systemd (Restart=always) and Kubernetes do in a deployment.
        stack.start_worker(concurrency=8, restart=True)
        stack.start_beat()
        database = Database(postgres.url)
        yield FaultStack(stack, postgres, redis_server, proxy_url, SharedClock(clock_file), database)
    finally:
        if database is not None:
            database.dispose()
        stack.stop()
        redis_server.stop()
        postgres.stop()


# --- chaos -------------------------------------------------------------------------------------------


def pool_processes(parent: int) -> list[int]:
    """The worker's pool processes: its direct children, read from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry))
    return children


@dataclass
class Chaos:
    """SIGKILLs a pool process every few seconds; restarts Redis once and PostgreSQL once."""

    faults: FaultStack
    worker: ManagedProcess
    rng: random.Random = field(default_factory=lambda: random.Random(5))
    kills: int = 0
    redis_restarted: bool = False
    postgres_restarted: bool = False
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        started = time.monotonic()
        next_kill = started + KILL_EVERY_SECONDS
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                if not self.redis_restarted and now - started >= REDIS_RESTART_AT:
                    self.faults.redis.kill_restart()
                    self.redis_restarted = True
                if not self.postgres_restarted and now - started >= POSTGRES_RESTART_AT:
                    self.faults.postgres.crash_restart()
                    self.postgres_restarted = True
                if now >= next_kill:
                    pool = pool_processes(self.worker.pid)  # the current process, if restarted
                    if pool:
                        os.kill(self.rng.choice(pool), signal.SIGKILL)
                        self.kills += 1
                    next_kill = now + KILL_EVERY_SECONDS
            except Exception as exc:  # reported by the test: chaos that did not happen proves nothing
                self.errors.append(repr(exc))
            self.stop.wait(0.2)

    @property
    def restarts_done(self) -> bool:
        return self.redis_restarted and self.postgres_restarted


# --- helpers -----------------------------------------------------------------------------------------


def accepted(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def deliver(simulator: Simulator, event: str, ids: list[str], refused: list[tuple[str, str]]) -> list[str]:
    """Send the events; returns the ids answered 2xx and appends the others to ``refused``."""
    deliveries = simulator.send_webhooks(event=event, ids=ids)
    if event == "rejected":
        # Each rejected event names a new id; deliveries come in the order the sources were
        # created (as ``ids`` is), and the source transcription is what is sent again.
        assert len(deliveries) == len(ids)
        refused.extend(
            (event, source) for source, d in zip(ids, deliveries, strict=True) if not accepted(d["status"])
        )
        return [d["id"] for d in deliveries if accepted(d["status"])]
    ok = {d["id"] for d in deliveries if accepted(d["status"])}
    refused.extend((event, i) for i in ids if i not in ok)
    return sorted(ok)


def counts_by_state(database: Database) -> Counter[str]:
    try:
        with database.sessionmaker() as session:
            rows = session.execute(select(ArchiveItem.state, func.count()).group_by(ArchiveItem.state))
            return Counter({state: n for state, n in rows})
    except OperationalError:
        return Counter()  # PostgreSQL is restarting


def wait_for_states(database: Database, expected: int, states: set[str], stall: float, what: str) -> None:
    """Wait for ``expected`` items in ``states``, failing when none has moved for ``stall`` seconds
    (or after 30 minutes): a slow machine is not a failure, a stuck pipeline is."""
    start = time.monotonic()
    deadline, report, moved = start + 1800, start, start
    seen: Counter[str] = Counter()
    while time.monotonic() < min(deadline, moved + stall):
        before, seen = seen, counts_by_state(database)
        if seen != before:
            moved = time.monotonic()
        if time.monotonic() >= report:  # shown with -s: where the time goes
            print(f"  {what}: {time.monotonic() - start:4.0f}s {dict(seen)}", flush=True)
            report += 10
        if sum(n for s, n in seen.items() if s in states) >= expected:
            return
        if seen.get(ItemState.DEAD):
            break
        time.sleep(1)
    with database.sessionmaker() as session:
        stuck = session.execute(
            select(ArchiveItem.provider_id, ArchiveItem.state, ArchiveItem.last_error)
            .where(ArchiveItem.state.not_in(states | {ItemState.REJECTED}))
            .limit(5)
        ).all()
    raise AssertionError(f"{what}: {dict(seen)} (want {expected} in {sorted(states)}); e.g. {stuck}")


# --- the suite ---------------------------------------------------------------------------------------


def test_thousand_items_through_faults_kills_and_restarts(fault_stack: FaultStack) -> None:
    faults, stack, database = fault_stack, fault_stack.stack, fault_stack.db
    with stack.admin() as admin:
        simulator = Simulator(admin)
        # The simulator's own background callbacks are off: every webhook goes through deliver().
        admin.put("/admin/callbacks", json={"drop": True}).raise_for_status()
        realtime = [t["transcriptionId"] for t in simulator.create_realtime(REALTIME)]
        to_reject = [t["transcriptionId"] for t in simulator.create_realtime(REJECTED)]
        response = admin.post("/admin/recordings", json={"count": RECORDINGS, "duration": 3.0, "channels": 1,
                                                         "file_format": "wav", "with_transcription": True})  # fmt: skip
        response.raise_for_status()
        recordings = [r["recordingId"] for r in response.json()["created"]]
        response = admin.post("/admin/twilio/transcripts", json={"count": TWILIO, "queued_seconds": 0,
                                                                 "processing_seconds": 0, "sentences": 20,
                                                                 "operator_results": 1, "media_duration": 1.0})  # fmt: skip
        response.raise_for_status()
        twilio = [t["sid"] for t in response.json()["created"]]
        assert len(realtime) + len(recordings) + len(twilio) + len(to_reject) == 1000

        simulator.set_faults(*SIMULATOR_FAULTS)
        faults.proxy_faults(rate=0.10)
        worker = next(p for p in stack.group.processes if p.name == "worker")
        chaos = Chaos(faults, worker)
        chaos_thread = threading.Thread(target=chaos.run, daemon=True)
        chaos_thread.start()
        started = time.monotonic()

        # Webhooks in small mixed batches over SEND_SECONDS and more, across both restarts.
        batches: list[tuple[str, list[str]]] = []
        for kind, ids in (("available", realtime), ("recordingAvailable", recordings), ("twilio", twilio)):
            batches += [(kind, ids[i : i + 20]) for i in range(0, len(ids), 20)]
        random.Random(3).shuffle(batches)
        batches.insert(len(batches) // 2, ("rejected", to_reject))
        refused: list[tuple[str, str]] = []
        accepted_rejections: list[str] = []
        for kind, ids in batches:
            ok = deliver(simulator, kind, ids, refused)
            if kind == "rejected":
                accepted_rejections += ok
            time.sleep(max(0.0, SEND_SECONDS / len(batches) - 0.1))
        refused_once = len(refused)
        # What was refused is sent again until answered 2xx (after the restarts, nothing should be).
        for _round in range(30):
            if not refused:
                break
            time.sleep(2)
            again, refused = refused, []
            for kind, source in again:
                ok = deliver(simulator, kind, [source], refused)
                if kind == "rejected":
                    accepted_rejections += ok
        assert not refused, f"still refused after retries: {refused[:5]}"
        print(f"\nevery webhook accepted after {time.monotonic() - started:.0f}s", flush=True)
        wait_until(lambda: chaos.restarts_done, 120, "both restarts")

        expected_items = REALTIME + RECORDINGS + TWILIO
        done = {ItemState.DELETION_REQUESTED, ItemState.PURGED}
        try:
            wait_for_states(database, expected_items, done, 120, "deletion requested for every item")
        finally:
            chaos.stop.set()
            chaos_thread.join(10)
        processing_seconds = time.monotonic() - started

        # Past the purge window: every deletion must be confirmed (through the same faults).
        faults.clock.advance(49 * 3600)
        admin.post("/admin/clock/advance", json={"seconds": 49 * 3600}).raise_for_status()
        wait_for_states(database, expected_items, {ItemState.PURGED}, 120, "every purge confirmed")

        sim_faults = admin.get("/admin/faults").json()
        audit = admin.get("/admin/audit").json()["entries"]
        realtime_state = {
            t["transcriptionId"]: t
            for t in admin.get("/admin/realtime-transcriptions").json()["transcriptions"]
        }
        twilio_state = {t["sid"]: t for t in admin.get("/admin/twilio/transcripts").json()["transcripts"]}
        recording_state = {r: admin.get(f"/admin/recordings/{r}").json() for r in recordings}
    proxy = faults.proxy_faults()
    print(f"\nfault suite: {processing_seconds:.0f}s to deletion; kills {chaos.kills}; refused webhooks "
          f"{refused_once}; simulator faults {[r['fired'] for r in sim_faults['rules']]}; S3 proxy {proxy}; "
          f"worker main process restarted after exits {worker.restarts}")  # fmt: skip

    # The faults really happened.
    assert not chaos.errors, chaos.errors
    assert chaos.kills >= 10 and faults.redis.starts == 2 and chaos.postgres_restarted
    assert all(rule["fired"] > 0 for rule in sim_faults["rules"]), sim_faults
    assert all(proxy[kind] > 0 for kind in ("refused", "lost_answer", "reset")), proxy
    statuses = Counter(e["status"] for e in audit)
    assert statuses[429] > 100 and statuses[503] > 10, statuses

    with database.sessionmaker() as session:
        items = list(session.scalars(select(ArchiveItem)))
        stored = list(session.scalars(select(ArchivedObject)))
        archived_at: dict[int, datetime] = {}
        archived_times: Counter[int] = Counter()
        for h in session.scalars(select(ItemHistory).where(ItemHistory.to_state == ItemState.ARCHIVED)):
            archived_at[h.item_id] = min(h.at, archived_at.get(h.item_id, h.at))
            archived_times[h.item_id] += 1
        event_rows = int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)

    # Every item once; nothing dead; rejections recorded and never fetched.
    by_id = {item.provider_id: item for item in items}
    assert len(by_id) == len(items), "an item was created twice"
    assert set(by_id) == set(realtime) | set(recordings) | set(twilio) | set(accepted_rejections)
    assert len(accepted_rejections) == REJECTED
    assert Counter(item.state for item in items) == {
        ItemState.PURGED: expected_items,
        ItemState.REJECTED: REJECTED,
    }
    assert not any(s in e["path"] for e in audit for s in to_reject)
    assert event_rows >= len(items)
    assert set(archived_times.values()) == {1} and len(archived_times) == expected_items  # archived once

    # Every object in S3 once, as recorded, re-read from the S3 server itself (not the proxy).
    s3 = stack.object_store()
    listed: dict[str, int] = {}
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        listed.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    records = {(o.s3_key, o.sha256, o.size_bytes) for o in stored}
    records |= {(i.s3_key, i.sha256, i.size_bytes) for i in items if i.s3_key and i.sha256}
    keys = Counter(key for key, _sha, _size in records)
    assert all(n == 1 for n in keys.values()), "two records for one key"
    assert set(listed) == set(keys), (
        sorted(set(listed) - set(keys))[:5],
        sorted(set(keys) - set(listed))[:5],
    )
    roles = defaultdict(set)
    for o in stored:
        roles[o.item_id].add(o.role)
    expected_roles = {
        "realtime_transcription": {"transcription"},
        "recording": {"metadata", "media", "transcription"},
        "transcript": {"transcript", "sentences", "operator_results", "media"},
    }
    for item in items:
        if item.state == ItemState.PURGED:
            assert roles[item.id] == expected_roles[item.kind], (item.kind, roles[item.id])

    def reread(record: tuple[str, str, int]) -> tuple[str, bool]:
        key, sha, size = record
        body = s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        return key, hashlib.sha256(body).hexdigest() == sha and len(body) == size == listed[key]

    with ThreadPoolExecutor(8) as pool:
        mismatched = [key for key, good in pool.map(reread, records) if not good]
    assert mismatched == []

    # Deletion only after the verified archive, and confirmed: the simulator's audit and state.
    object_times: dict[int, datetime] = {}
    for o in stored:
        object_times[o.item_id] = max(o.stored_at, object_times.get(o.item_id, o.stored_at))
    entries_for: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = set(realtime) | set(recordings) | set(twilio)
    for entry in audit:
        for part in entry["path"].split("/"):
            if part in ids:
                entries_for[part].append(entry)
    for item in items:
        if item.state != ItemState.PURGED:
            continue
        trail = entries_for[item.provider_id]
        deletes = [e for e in trail if e["method"] == "DELETE" and accepted(e["status"])]
        fetches = [e for e in trail if e["method"] == "GET" and e["status"] == 200]
        assert deletes and fetches, (item.provider_id, [(e["method"], e["status"]) for e in trail])
        first_delete = min(deletes, key=lambda e: e["seq"])
        assert max(e["seq"] for e in fetches) < first_delete["seq"], item.provider_id
        deleted_at = parse_time(first_delete["time"]) + timedelta(milliseconds=1)  # the audit shows ms
        assert deleted_at >= archived_at[item.id] >= object_times.get(item.id, archived_at[item.id])
        assert item.deletion_requested_at is not None and item.deletion_requested_at >= archived_at[item.id]
        assert item.purged_at is not None
    assert all(realtime_state[t]["deleted_at"] for t in realtime)
    assert all(twilio_state[t]["deleted_at"] for t in twilio)
    assert all(recording_state[r]["deleted_at"] for r in recordings)
