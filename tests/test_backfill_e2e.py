"""Backfill against the simulator: the 1000 cap, bursts, resuming after a killed worker, dry runs,
and the millisecond that holds more than the cap. Items are archived by the real worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from archiver.db.models import ArchiveItem, BackfillRun, ItemState
from archiver.supervisor import bin_path
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def iso(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def archiver(stack, *args, check=True):
    return subprocess.run(
        [bin_path("archiver"), *args],
        env={**os.environ, **stack.env()},
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


def populate(simulator, **scenario):
    response = simulator.client.post(
        "/admin/scenario",
        json={"since": iso(T0), "until": iso(T0 + timedelta(days=1)), "media_max_seconds": 1.0, **scenario},
    )
    response.raise_for_status()
    return response.json()


def recordings_by_state(db):
    with db.sessionmaker() as session:
        rows = session.execute(
            select(ArchiveItem.state, func.count())
            .where(ArchiveItem.kind == "recording")
            .group_by(ArchiveItem.state)
        ).all()
    return dict(rows)


def list_requests(simulator):
    return [
        e
        for e in simulator.audit(method="GET")
        if e["path"].endswith("/recordings") and "/calls/" not in e["path"]
    ]


def test_recordings_with_bursts_are_listed_within_1_2x_the_minimum_list_requests(e2e, db):
    """5,000 recordings, bursts of 1,500 and 500 inside short windows: counted (dry run) with about
    one request per 1,000. (Archiving all 5,000 through the worker is left to the backfill issue's
    follow-up: see the closing note.)"""
    stack, simulator, _clock = e2e
    summary = populate(
        simulator,
        recordings=3000,
        bursts=[
            {"at": iso(T0 + timedelta(hours=3)), "count": 1500, "span_ms": 10},
            {"at": iso(T0 + timedelta(hours=9)), "count": 500, "span_ms": 200},
        ],
        realtime=0,
    )
    assert summary["recordings"] == 5000
    final = json.loads(
        archiver(
            stack,
            "backfill",
            "bandwidth",
            "--account",
            "9900000",
            "--since",
            iso(T0),
            "--until",
            iso(T0 + timedelta(days=1)),
            "--no-realtime",
            "--dry-run",
            "--json",
        ).stdout
    )
    assert final["state"] == "done" and final["found"] == 5000 and final["truncated_windows"] == []
    minimum = 5000 // 1000 + 1  # a full page never proves a window complete
    assert final["list_requests"] == len(list_requests(simulator)) <= 1.2 * minimum


def test_dry_run_counts_without_enqueueing(e2e, db):
    stack, simulator, _clock = e2e
    populate(simulator, recordings=1500, realtime=0)
    out = archiver(
        stack,
        "backfill",
        "bandwidth",
        "--account",
        "9900000",
        "--since",
        iso(T0),
        "--until",
        iso(T0 + timedelta(days=1)),
        "--dry-run",
        "--json",
    )
    final = json.loads(out.stdout)
    assert final["dry_run"] and final["state"] == "done" and final["found"] == 1500 and final["enqueued"] == 0
    with db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(ArchiveItem)) == 0
    assert all(e["path"].endswith(("/recordings", "/transcriptions")) for e in simulator.audit())


def test_more_than_1000_recordings_in_one_millisecond_are_reported(e2e, db):
    stack, simulator, _clock = e2e
    burst = T0 + timedelta(hours=5)
    populate(simulator, recordings=200, bursts=[{"at": iso(burst), "count": 1200, "span_ms": 0}], realtime=0)
    out = archiver(
        stack,
        "backfill",
        "bandwidth",
        "--account",
        "9900000",
        "--since",
        iso(T0),
        "--until",
        iso(T0 + timedelta(days=1)),
        "--dry-run",
        "--json",
    )
    final = json.loads(out.stdout)
    millis = int(burst.timestamp() * 1000)
    assert final["truncated_windows"] == [[millis, millis + 1]]
    assert final["found"] == 200 + 1000  # the cap hides 200: reported, not silently dropped
    text = archiver(stack, "backfill", "status", str(final["id"])).stdout
    assert "hidden by the 1000 cap" in text


def test_interrupted_run_started_again_completes_without_duplicates(e2e, db):
    stack, simulator, _clock = e2e
    populate(simulator, recordings=1200, realtime=0)
    simulator.set_faults(
        {
            "status": 0,
            "latency_seconds": 1.0,
            "method": "GET",
            "path_contains": "/accounts/9900000/recordings",
        }
    )
    args = [
        "backfill",
        "bandwidth",
        "--account",
        "9900000",
        "--since",
        iso(T0),
        "--until",
        iso(T0 + timedelta(days=1)),
        "--no-realtime",
    ]
    archiver(stack, *args, "--no-wait")

    def holder():
        with db.sessionmaker() as session:
            run = session.scalars(select(BackfillRun)).one_or_none()
            return run if run is not None and run.list_requests >= 1 and run.lease_owner else None

    run = wait_for(holder, 60, "the run to be under way")
    os.kill(int(run.lease_owner.split(":")[1]), signal.SIGKILL)
    time.sleep(0.5)
    simulator.set_faults()  # the provider is fast again
    final = json.loads(
        archiver(stack, *args, "--json").stdout
    )  # started again: continues from the checkpoint
    assert final["id"] == run.id and final["state"] == "done"
    assert final["found"] == final["enqueued"] == 1200
    with db.sessionmaker() as session:
        ids = session.scalars(select(ArchiveItem.provider_id).where(ArchiveItem.kind == "recording")).all()
    assert len(ids) == len(set(ids)) == 1200
    settled = {ItemState.DELETION_REQUESTED, ItemState.REJECTED}  # error recordings are rejected
    wait_for(lambda: set(recordings_by_state(db)) <= settled, 300, "every recording archived and deleted")
    deletes = [e for e in simulator.audit(method="DELETE") if "/recordings/" in e["path"]]
    assert len(deletes) == len({e["path"] for e in deletes})  # each recording deleted once


def test_realtime_transcriptions_of_the_calls_found_are_backfilled_and_runs_can_be_steered(e2e, db):
    stack, simulator, _clock = e2e
    recs = simulator.client.post(
        "/admin/recordings",
        json={"count": 3, "start_time": iso(T0 + timedelta(hours=1)), "spread_seconds": 60, "duration": 1.0},
    ).json()["created"]
    simulator.client.post("/admin/realtime-transcriptions", json={"count": 2, "call_id": recs[0]["callId"]})
    final = json.loads(
        archiver(
            stack,
            "backfill",
            "bandwidth",
            "--account",
            "9900000",
            "--since",
            iso(T0),
            "--until",
            iso(T0 + timedelta(days=1)),
            "--json",
        ).stdout
    )
    assert final["found"] == 3 + 2
    wait_for(
        lambda: recordings_by_state(db).get(ItemState.DELETION_REQUESTED) == 3, 60, "recordings archived"
    )
    with db.sessionmaker() as session:
        kinds = session.scalars(
            select(ArchiveItem.kind).where(ArchiveItem.backfill_run_id == final["id"])
        ).all()
    assert sorted(kinds) == ["realtime_transcription"] * 2 + ["recording"] * 3
    for command in ("pause", "cancel"):
        out = archiver(stack, "backfill", command, str(final["id"]), check=False)
        assert out.returncode == 2 and "is done" in out.stderr  # a finished run cannot be steered
    status = json.loads(archiver(stack, "backfill", "status", "--json").stdout)
    assert status[0]["id"] == final["id"] and status[0]["archived"] >= 3
