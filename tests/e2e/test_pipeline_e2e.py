"""Real-time transcriptions end to end: simulator webhook → intake → Redis → worker → S3 + PostgreSQL →
provider DELETE → (clock advanced) → beat's sweeper → purge confirmed."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import pytest
from celery import Celery

from archiver.db.models import ArchiveItem, ItemState, WebhookEvent
from archiver.pipeline.dispatch import QUEUES, TASK_NAMES, Step
from tests.support.helpers import (
    count,
    events,
    history,
    item_by_provider_id,
    parse_time,
    segments,
    sha256_hex,
    wait_state,
)
from tests.support.stack import TEST_PIPELINE_ENV, wait_for

pytestmark = pytest.mark.e2e

PURGE_WINDOW = 48 * 3600


def one_transcription(simulator, *faults, **webhook_options):
    """Create one transcription at the simulator, set ``faults`` on its paths, send its webhook."""
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    if faults:
        simulator.set_faults(*({"path_contains": tid, **fault} for fault in faults))
    deliveries = simulator.send_webhooks(**webhook_options)
    return created, tid, deliveries


def test_event_to_archive_to_deletion_to_purge(e2e, db):
    stack, simulator, clock = e2e
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]

    [delivery] = simulator.send_webhooks()
    assert delivery["status"] == 204

    item = wait_state(db, tid, ItemState.DELETION_REQUESTED)

    # The object in S3 is what the simulator served, byte for byte hashed, and the row says so.
    obj = stack.object_store().client.get_object(Bucket=item.s3_bucket, Key=item.s3_key)
    body = obj["Body"].read()
    served = {k: created[k] for k in ("accountId", "callId", "transcriptionId", "tracks")}
    assert json.loads(body) == served
    assert sha256_hex(body) == item.sha256
    assert item.size_bytes == len(body)
    assert item.s3_key.startswith("bandwidth/9900000/")
    assert item.s3_key.endswith(f"/{created['callId']}/{tid}/realtime-transcription.json")
    assert obj["Metadata"]["sha256"] == item.sha256

    # The text is queryable without S3.
    stored_segments = segments(db, item.id)
    assert [(s.track, s.text, s.language) for s in stored_segments] == [
        (t["track"], t["transcript"], t["detectedLanguage"]) for t in created["tracks"]
    ]

    # The DELETE came after the verified archive was committed, and after the only GET.
    steps = history(db, item.id)
    archived_at = next(h.at for h in steps if h.to_state == ItemState.ARCHIVED)
    audit = simulator.audit(path_contains=tid)
    assert [(e["method"], e["status"]) for e in audit] == [("GET", 200), ("DELETE", 200)]
    assert parse_time(audit[1]["time"]) > archived_at
    assert item.deletion_requested_at is not None and item.deletion_requested_at >= archived_at
    assert (item.purge_due_at - item.deletion_requested_at).total_seconds() == pytest.approx(PURGE_WINDOW)

    # Nothing happens before the purge window has passed ...
    time.sleep(2)
    assert item_by_provider_id(db, tid).state == ItemState.DELETION_REQUESTED
    # ... and after it (a controllable clock, not a sleep), beat's sweeper confirms the purge.
    clock.advance(PURGE_WINDOW + 60)
    purged = wait_state(db, tid, ItemState.PURGED)
    assert purged.purged_at is not None
    audit = simulator.audit(path_contains=tid)
    assert [(e["method"], e["status"]) for e in audit] == [("GET", 200), ("DELETE", 200), ("GET", 404)]


def test_purge_check_requests_deletion_again_when_still_served(e2e, db):
    _stack, simulator, clock = e2e
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    simulator.send_webhooks()
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED)
    # The provider accepted the DELETE but keeps serving the transcription.
    simulator.client.post("/admin/realtime-transcriptions/undelete", json={"id": tid}).raise_for_status()
    clock.advance(PURGE_WINDOW + 60)
    again = wait_for(
        lambda: (i := item_by_provider_id(db, tid)) is not None and i.deletion_requests == 2 and i,
        30,
        "a second deletion request",
    )
    assert again.state == ItemState.DELETION_REQUESTED
    assert any("deletion requested again" in (h.detail or "") for h in history(db, item.id))
    deletes = simulator.audit(method="DELETE", path_contains=tid)
    assert len(deletes) == 2
    # The next purge check finds it gone.
    clock.advance(PURGE_WINDOW + 60)
    wait_state(db, tid, ItemState.PURGED)


def test_same_event_twice_gives_one_item_one_object_one_delete(e2e, db):
    stack, simulator, _clock = e2e
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    deliveries = simulator.send_webhooks(duplicate=True)
    assert [d["status"] for d in deliveries] == [204, 204]
    wait_state(db, tid, ItemState.DELETION_REQUESTED)
    time.sleep(1.5)  # let any duplicate work surface
    assert count(db, ArchiveItem) == 1
    assert count(db, WebhookEvent) == 1
    item = item_by_provider_id(db, tid)
    prefix = item.s3_key.rsplit("/", 2)[0] + "/"  # this call's objects (the bucket holds other tests' too)
    listed = stack.object_store().client.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    assert [o["Key"] for o in listed.get("Contents", []) if tid in o["Key"]] == [
        item_by_provider_id(db, tid).s3_key
    ]
    assert len(simulator.audit(method="GET", path_contains=tid)) == 1
    assert len(simulator.audit(method="DELETE", path_contains=tid)) == 1


def test_same_task_delivered_three_times_archives_and_deletes_once(e2e, db):
    stack, simulator, _clock = e2e
    # Slow the provider so that the duplicates arrive while the first task is at work.
    _created, tid, _ = one_transcription(
        simulator, {"status": 0, "latency_seconds": 1.5, "method": "GET", "count": 1}
    )
    item = wait_for(lambda: item_by_provider_id(db, tid), 10, "the item")
    sender = Celery(broker=stack.broker_url)
    for _ in range(2):
        sender.send_task(
            TASK_NAMES[Step.ARCHIVE], args=[item.id], kwargs={"ref": "dup"}, queue=QUEUES[Step.ARCHIVE]
        )
        sender.send_task(
            TASK_NAMES[Step.REQUEST_DELETION],
            args=[item.id],
            kwargs={"ref": "dup"},
            queue=QUEUES[Step.REQUEST_DELETION],
        )
    wait_state(db, tid, ItemState.DELETION_REQUESTED)
    time.sleep(float(TEST_PIPELINE_ENV["ARCHIVER_LEASE_SECONDS"]) + 2)  # the duplicates wait out the lease
    assert len(simulator.audit(method="GET", path_contains=tid)) == 1
    assert len(simulator.audit(method="DELETE", path_contains=tid)) == 1
    archived = [h for h in history(db, item.id) if h.to_state == ItemState.ARCHIVED]
    assert len(archived) == 1


def test_rejected_transcription_is_recorded_and_nothing_is_fetched(e2e, db):
    _stack, simulator, _clock = e2e
    [created] = simulator.create_realtime(1)
    [delivery] = simulator.send_webhooks(event="rejected", cause="duplicate")
    assert delivery["status"] == 204
    rejected_id = delivery["id"]
    assert rejected_id.startswith("s-")
    item = item_by_provider_id(db, rejected_id)
    assert item is not None and item.state == ItemState.REJECTED
    assert "duplicate" in item.outcome and "already exists" in item.outcome
    time.sleep(1.5)
    assert simulator.audit() == []
    assert item_by_provider_id(db, created["transcriptionId"]) is None


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("GET", [("GET", 429), ("GET", 200), ("DELETE", 200)]),
        # The archive task goes straight on to the deletion; the deletion's short wait is then a
        # request_deletion task of its own, with the countdown.
        ("DELETE", [("GET", 200), ("DELETE", 429), ("DELETE", 200)]),
    ],
)
def test_429_with_short_retry_after_is_honoured(e2e, db, method, expected):
    _stack, simulator, _clock = e2e
    _created, tid, _ = one_transcription(
        simulator, {"status": 429, "retry_after": 2, "method": method, "count": 1}
    )
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED)
    audit = simulator.audit(path_contains=tid)
    assert [(e["method"], e["status"]) for e in audit] == expected
    at_429 = next(i for i, e in enumerate(audit) if e["status"] == 429)
    waited = audit[at_429 + 1]["monotonic"] - audit[at_429]["monotonic"]
    assert 1.9 <= waited <= 6.0, waited
    assert item.attempts == 0  # a 429 is the provider's pacing, not the item's failure
    assert item.deletion_requests == 1 and item.lease_owner is None
    assert [h.to_state for h in history(db, item.id)][-2:] == [
        ItemState.ARCHIVED,
        ItemState.DELETION_REQUESTED,
    ]


def test_long_retry_after_becomes_a_due_time_swept_by_beat(e2e, db):
    _stack, simulator, clock = e2e
    _created, tid, _ = one_transcription(
        simulator, {"status": 429, "retry_after": 3600, "method": "GET", "count": 1}
    )
    waiting = wait_for(
        lambda: (i := item_by_provider_id(db, tid)) is not None and i.last_error and i,
        20,
        "the 429 to be recorded",
    )
    assert waiting.state == ItemState.PENDING
    assert waiting.enqueued_at is None  # no Celery countdown holds it: the database does
    assert 3500 < (waiting.due_at - waiting.updated_at).total_seconds() <= 3600
    time.sleep(2)
    assert len(simulator.audit(path_contains=tid)) == 1
    clock.advance(3601)
    wait_state(db, tid, ItemState.DELETION_REQUESTED)
    assert [e["status"] for e in simulator.audit(method="GET", path_contains=tid)] == [429, 200]


def test_5xx_streak_backs_off_then_succeeds(e2e, db):
    _stack, simulator, _clock = e2e
    _created, tid, _ = one_transcription(simulator, {"status": 500, "method": "GET", "count": 3})
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED)
    gets = simulator.audit(method="GET", path_contains=tid)
    assert [e["status"] for e in gets] == [500, 500, 500, 200]
    gaps = [b["monotonic"] - a["monotonic"] for a, b in itertools.pairwise(gets)]
    assert all(gap >= 0.15 for gap in gaps), gaps  # backed off, not hammered
    assert item.attempts == 1  # 1 + ARCHIVER_HTTP_RETRIES in place, then the step's retry
    assert len(simulator.audit(method="DELETE", path_contains=tid)) == 1


def test_5xx_forever_dead_letters_with_the_reason(e2e, db):
    stack, simulator, _clock = e2e
    _created, tid, _ = one_transcription(simulator, {"status": 503, "method": "GET"})
    item = wait_state(db, tid, ItemState.DEAD)
    assert item.failed_state == ItemState.PENDING
    assert "503" in item.last_error and "system-overloaded" in item.last_error
    # ARCHIVER_MAX_ATTEMPTS, each 1 + ARCHIVER_HTTP_RETRIES requests
    assert len(simulator.audit(method="GET", path_contains=tid)) == 5 * 3
    assert simulator.audit(method="DELETE") == []

    import subprocess

    from archiver.local.supervisor import bin_path

    out = subprocess.run(
        [bin_path("archiver"), "status", "--json"],
        env={**os.environ, **stack.env()},
        capture_output=True,
        check=True,
    )
    status = json.loads(out.stdout)
    assert status["items_by_state"]["dead"] == 1
    assert status["dead_letters"][0]["ref"].endswith(tid)
    assert "503" in status["dead_letters"][0]["reason"]


def test_worker_process_killed_mid_task_still_archives_exactly_once(e2e, db):
    _stack, simulator, _clock = e2e
    _created, tid, _ = one_transcription(
        simulator, {"status": 0, "latency_seconds": 4, "method": "GET", "count": 1}
    )
    leased = wait_for(
        lambda: (i := item_by_provider_id(db, tid)) is not None and i.lease_owner and i,
        15,
        "a worker to claim the item",
    )
    pid = int(leased.lease_owner.split(":")[1])
    time.sleep(0.5)  # the GET is in flight
    os.kill(pid, signal.SIGKILL)

    item = wait_state(db, tid, ItemState.DELETION_REQUESTED, timeout=60)
    assert int(item.lease_owner.split(":")[1]) != pid if item.lease_owner else True
    archived = [h for h in history(db, item.id) if h.to_state == ItemState.ARCHIVED]
    assert len(archived) == 1
    assert count(db, ArchiveItem) == 1
    assert len(simulator.audit(method="DELETE", path_contains=tid)) == 1
    assert (
        sha256_hex(
            _stack.object_store().client.get_object(Bucket=item.s3_bucket, Key=item.s3_key)["Body"].read()
        )
        == item.sha256
    )
    assert len(events(db)) == 1


def test_no_secret_reaches_any_log(e2e, db):
    stack, simulator, _clock = e2e
    simulator.create_realtime(2)
    simulator.send_webhooks()
    # Also a failure path: a wrong password at the intake, and errors logged by the worker.
    simulator.send_webhooks(
        intake_url=f"{stack.intake_url}/webhooks/bandwidth", username="intake-user", password="nope"
    )
    wait_for(lambda: count(db, ArchiveItem) == 2, 20, "two items")
    time.sleep(1)
    from tests.support.stack import SECRETS

    logs = {path.name: path.read_text("utf-8", "replace") for path in stack.workdir.glob("*.log")}
    assert {"worker.log", "intake.log", "beat.log", "simulator.log"} <= set(logs)
    for name, text in logs.items():
        for secret in SECRETS.values():
            assert secret not in text, f"{secret} in {name}"


def test_broker_unreachable_at_the_intake_loses_nothing(e2e, db):
    """The event is committed before the 204; the message that could not be sent is replaced by the
    sweeper's, so the item is archived all the same."""
    stack, simulator, _clock = e2e
    from archiver.local.supervisor import ManagedProcess, bin_path, free_port, http_ok, wait_until

    port = stack.spare_intake_port  # a webhook target the simulator was started with
    env = {**stack.env(), "ARCHIVER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
           "ARCHIVER_METRICS_PORT": "0"}  # fmt: skip
    intake = ManagedProcess("intake-no-broker", [bin_path("archiver"), "serve", "--port", str(port)], env=env,
                            log_path=stack.workdir / "intake-no-broker.log").start()  # fmt: skip
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "the second intake")
        [created] = simulator.create_realtime(1)
        tid = created["transcriptionId"]
        started = time.monotonic()
        [delivery] = simulator.send_webhooks(
            intake_url=f"http://127.0.0.1:{port}/webhooks/bandwidth",
            username=stack.intake_username,
            password=stack.intake_password,
        )
        answered_in = time.monotonic() - started
        assert delivery["status"] == 204
        assert answered_in < 10, answered_in
        assert item_by_provider_id(db, tid).state == ItemState.PENDING  # durable before the answer
        wait_state(db, tid, ItemState.DELETION_REQUESTED, timeout=60)
        assert "the sweeper will send them" in intake.log_text()  # RecordedBatch.send's refusal
    finally:
        intake.stop()
