"""Deletion policies, going on from the archive to the deletion, and retention risk, with the steps
run in this process against the real PostgreSQL, Redis, S3 server and simulator (a context whose
settings differ from the session worker's)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import redis

from archiver.db.models import ArchiveItem, ItemState
from archiver.local.supervisor import bin_path
from archiver.pipeline.dispatch import QUEUE_DELETIONS, Step
from archiver.pipeline.events import record_event
from archiver.pipeline.steps import Outcome, StepResult, run_step
from archiver.pipeline.sweeper import sweep_due_items, warn_retention_risk
from tests.support.helpers import (
    SPARE_BROKER,
    history,
    in_process_context,
    item_by_provider_id,
    media_bytes,
    objects,
)
from tests.support.stack import wait_for


@pytest.fixture
def db(isolated_db):
    """A database of its own: the session's worker and beat must not act on these items."""
    return isolated_db


@pytest.fixture
def local_ctx(e2e, db):
    stack, simulator, _clock = e2e

    return partial(in_process_context, stack, db), stack, simulator


def announce_recording(ctx, stack, simulator, **options):
    rec = simulator.client.post("/admin/recordings", json={"count": 1, **options}).json()["created"][0]
    body = {
        "eventType": "recordingAvailable",
        "eventTime": "2026-11-21T08:00:00.000Z",
        "accountId": rec["accountId"],
        "callId": rec["callId"],
        "recordingId": rec["recordingId"],
        "status": "complete",
        "startTime": rec["startTime"],
        "endTime": rec["endTime"],
    }
    from archiver.intake.bandwidth import parse_bandwidth_event

    _, item_id = record_event(ctx, parse_bandwidth_event(json.dumps(body).encode()))
    return rec, item_id


def test_delete_media_policy_deletes_only_the_media_and_confirms_its_purge(local_ctx, db):
    make, stack, simulator = local_ctx
    ctx = make(deletion_policy="delete_media")
    rec, item_id = announce_recording(ctx, stack, simulator, duration=6.0, channels=1, file_format="wav")
    assert run_step(ctx, Step.ARCHIVE, item_id).outcome is Outcome.DONE
    assert run_step(ctx, Step.REQUEST_DELETION, item_id).outcome is Outcome.DONE
    deletes = simulator.audit(method="DELETE")
    assert [e["path"].rsplit("/", 1)[-1] for e in deletes] == ["media"]
    state = simulator.client.get(f"/admin/recordings/{rec['recordingId']}").json()
    assert state["deleted_at"] is None and state["media_deleted_at"] is not None  # metadata kept
    item = item_by_provider_id(db, rec["recordingId"])
    assert item.deletion_scope == "media"
    ctx.clock.offset = timedelta(hours=49)
    assert run_step(ctx, Step.CONFIRM_PURGE, item_id).outcome is Outcome.DONE
    assert item_by_provider_id(db, rec["recordingId"]).state == ItemState.PURGED
    ctx.close()


def test_with_spooling_off_media_goes_in_parts_and_is_verified_the_same(local_ctx, db, tmp_path):
    """``ARCHIVER_MEDIA_SPOOL_MAX_BYTES=0`` (no local disk): a multi-part upload with a full-object
    CRC32 and the SHA-256 as a tag; the deletion still waits for the verified copy."""
    import base64
    import hashlib
    import zlib

    make, stack, simulator = local_ctx
    ctx = make(media_spool_max_bytes=0, media_spool_dir=str(tmp_path))
    rec, item_id = announce_recording(ctx, stack, simulator, duration=400.0, channels=1, file_format="wav")
    assert run_step(ctx, Step.ARCHIVE, item_id).outcome is Outcome.DONE
    media = media_bytes(rec)
    stored = objects(db, item_id)["media"]
    assert len(media) > 5 * 2**20  # more than one part
    assert stored.s3_checksum == "crc32:" + base64.b64encode(zlib.crc32(media).to_bytes(4, "big")).decode()
    assert stored.sha256 == hashlib.sha256(media).hexdigest()
    client = stack.object_store().client
    tags = client.get_object_tagging(Bucket=stored.s3_bucket, Key=stored.s3_key)["TagSet"]
    assert {"Key": "sha256", "Value": stored.sha256} in tags
    assert client.get_object(Bucket=stored.s3_bucket, Key=stored.s3_key)["Body"].read() == media
    assert run_step(ctx, Step.REQUEST_DELETION, item_id).outcome is Outcome.DONE
    assert item_by_provider_id(db, rec["recordingId"]).deletion_requested_at is not None
    assert list(tmp_path.iterdir()) == []  # nothing spooled
    ctx.close()


def test_archive_only_policy_deletes_nothing(local_ctx, db):
    make, stack, simulator = local_ctx
    ctx = make(deletion_policy="archive_only")
    rec, item_id = announce_recording(ctx, stack, simulator, duration=3.0, channels=1, file_format="mp3")
    assert run_step(ctx, Step.ARCHIVE, item_id).outcome is Outcome.DONE
    item = item_by_provider_id(db, rec["recordingId"])
    assert item.state == ItemState.ARCHIVED and item.due_at is None
    assert run_step(ctx, Step.REQUEST_DELETION, item_id).outcome is Outcome.DEAD  # a stray message: refused
    assert simulator.audit(method="DELETE") == []
    ctx.close()


def test_deletion_is_refused_while_the_transcription_is_expected(local_ctx, db):
    make, stack, simulator = local_ctx
    ctx = make()
    rec, item_id = announce_recording(
        ctx, stack, simulator, duration=30.0, channels=1, file_format="wav", with_transcription=False
    )
    simulator.client.put("/admin/callbacks", json={"drop": True})
    assert run_step(ctx, Step.ARCHIVE, item_id).outcome is Outcome.DONE
    assert item_by_provider_id(db, rec["recordingId"]).state == ItemState.AWAITING_TRANSCRIPTION
    # Force the state a buggy path might produce: archived, transcription still expected.
    with db.transaction() as uow:
        forced = uow.session.get(ArchiveItem, item_id)
        forced.state, forced.due_at = ItemState.ARCHIVED, datetime.now(UTC)
    result = run_step(ctx, Step.REQUEST_DELETION, item_id)
    assert result.outcome is Outcome.DEAD and "transcription is still expected" in result.detail
    assert simulator.audit(method="DELETE") == []
    ctx.close()


@pytest.fixture
def deletion_messages():
    """How many request-deletion messages the local contexts have sent (their Redis queue)."""
    broker = redis.Redis.from_url(SPARE_BROKER)
    broker.delete(QUEUE_DELETIONS)
    yield lambda: broker.llen(QUEUE_DELETIONS)
    broker.delete(QUEUE_DELETIONS)
    broker.close()


def recording_to_archive(local_ctx, delete_fault=None, **settings):
    """A context, and a recording announced to it; ``delete_fault``: what its first DELETE meets."""
    make, stack, simulator = local_ctx
    ctx = make(**settings)
    rec, item_id = announce_recording(ctx, stack, simulator, duration=4.0, channels=1, file_format="wav")
    if delete_fault is not None:
        rule = {"method": "DELETE", "count": 1, "path_contains": rec["recordingId"], **delete_fault}
        simulator.set_faults(rule)
    return ctx, simulator, rec["recordingId"], item_id


def test_the_archive_goes_straight_on_to_the_deletion_without_a_message(local_ctx, db, deletion_messages):
    ctx, simulator, rid, item_id = recording_to_archive(local_ctx)
    result = run_step(ctx, Step.ARCHIVE, item_id, go_on=True)
    assert result.outcome is Outcome.DONE and "media s3://" in result.detail
    assert result.then is not None
    next_step, deletion = result.then
    assert next_step is Step.REQUEST_DELETION and deletion.outcome is Outcome.DONE
    item = item_by_provider_id(db, rid)
    assert item.state == ItemState.DELETION_REQUESTED and item.lease_owner is None
    assert item.due_at == item.purge_due_at and item.enqueued_at is None
    states = [h.to_state for h in history(db, item_id)]
    assert states[-2:] == [ItemState.ARCHIVED, ItemState.DELETION_REQUESTED]
    deletes = simulator.audit(method="DELETE", path_contains=rid)
    assert deletes and all(200 <= d["status"] < 300 for d in deletes)
    assert deletion_messages() == 0  # no message, claim or task of its own
    ctx.close()


def test_a_deletion_that_must_wait_after_the_archive_is_released_with_its_due_time(
    local_ctx, db, deletion_messages
):
    ctx, _simulator, rid, item_id = recording_to_archive(local_ctx, {"status": 429, "retry_after": 3600})
    result = run_step(ctx, Step.ARCHIVE, item_id, go_on=True)
    assert result.outcome is Outcome.DONE and result.then is not None
    assert result.then[0] is Step.REQUEST_DELETION and result.then[1].outcome is Outcome.WAITING
    item = item_by_provider_id(db, rid)
    assert item.state == ItemState.ARCHIVED and item.lease_owner is None
    assert item.enqueued_at is None and 3500 < (item.due_at - item.updated_at).total_seconds() <= 3600
    assert deletion_messages() == 0  # the sweeper sends it at its due time
    ctx.close()


def test_a_slow_archive_sends_the_deletion_as_a_message_instead(local_ctx, db, deletion_messages):
    # Any archive takes longer than a quarter of this lease.
    ctx, simulator, rid, item_id = recording_to_archive(local_ctx, lease_seconds=0.01)
    result = run_step(ctx, Step.ARCHIVE, item_id, go_on=True)
    assert result.outcome is Outcome.DONE and result.then is None
    item = item_by_provider_id(db, rid)
    assert item.state == ItemState.ARCHIVED and item.lease_owner is None and item.enqueued_at is not None
    assert deletion_messages() == 1
    assert simulator.audit(method="DELETE", path_contains=rid) == []
    # What the request_deletion task that message starts does:
    assert run_step(ctx, Step.REQUEST_DELETION, item_id).outcome is Outcome.DONE
    assert item_by_provider_id(db, rid).state == ItemState.DELETION_REQUESTED
    ctx.close()


def test_a_worker_lost_between_the_archive_and_the_deletion_is_covered_by_the_sweeper(
    local_ctx, db, deletion_messages
):
    # The DELETE hangs: meanwhile the item is as a worker that died there would have left it.
    ctx, _simulator, rid, item_id = recording_to_archive(local_ctx, {"status": 0, "latency_seconds": 4})
    results: list[StepResult] = []
    worker = threading.Thread(target=lambda: results.append(run_step(ctx, Step.ARCHIVE, item_id, go_on=True)))
    worker.start()
    archived = wait_for(
        lambda: (i := item_by_provider_id(db, rid)).state == ItemState.ARCHIVED and i, 10, "the archive"
    )
    assert archived.lease_owner is not None and archived.enqueued_at is None
    sweeper_ctx = local_ctx[0]()
    assert sweep_due_items(sweeper_ctx).enqueued == 0  # the lease is live: nothing to send
    sweeper_ctx.clock.offset = timedelta(seconds=ctx.settings.lease_seconds + 1)  # the lease expired
    assert sweep_due_items(sweeper_ctx).by_state == {ItemState.ARCHIVED.value: 1}
    assert deletion_messages() == 1
    worker.join(30)
    assert results[0].then is not None and results[0].then[1].outcome is Outcome.DONE
    assert item_by_provider_id(db, rid).state == ItemState.DELETION_REQUESTED
    sweeper_ctx.close()
    ctx.close()


def test_recordings_near_bandwidth_retention_are_reported_and_logged(local_ctx, db, caplog):
    make, stack, _simulator = local_ctx
    ctx = make()
    now = datetime.now(UTC)
    with db.transaction() as uow:
        for i, days in enumerate((25, 10, 29.5)):
            uow.session.add(ArchiveItem(
                provider="bandwidth", account_id="9900000", kind="recording", provider_id=f"r-risk-{i}",
                call_id="c-risk", state=ItemState.PENDING.value, attempts=0, deletion_requests=0, partial=False,
                created_at=now, updated_at=now, due_at=now + timedelta(hours=1),
                provider_completed_at=now - timedelta(days=days),
            ))  # fmt: skip
    status_env = {**os.environ, **stack.env(), "ARCHIVER_DATABASE_URL": db.url}
    out = subprocess.run([bin_path("archiver"), "status", "--json"], env=status_env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    risk = json.loads(out.stdout)["retention_at_risk"]
    assert risk["count"] == 2  # 25 and 29.5 days old: within 7 days of the 30-day limit
    assert [e["ref"].rsplit("/", 1)[-1] for e in risk["items"]] == ["r-risk-2", "r-risk-0"]
    assert 11 <= risk["items"][0]["hours_left"] <= 13
    text = subprocess.run([bin_path("archiver"), "status"], env=status_env,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Recordings at retention risk" in text and "r-risk-2" in text
    with caplog.at_level(logging.WARNING, logger="archiver.pipeline.sweeper"):
        assert warn_retention_risk(ctx) == 2
    assert "2 recording(s) not archived within 7 days" in caplog.text
    ctx.close()


@pytest.mark.parametrize("spool_max_bytes", [None, 0], ids=["spooled", "multipart"])
def test_another_object_at_the_media_key_is_an_integrity_alarm_never_an_overwrite(
    local_ctx, db, caplog, spool_max_bytes
):
    """Something else already sits at the key the recording would take: it is not overwritten, the
    item is dead-lettered as an integrity alarm, nothing is deleted at the provider, the metric tells."""
    from archiver.core.timestamps import parse_timestamp
    from archiver.ops.metrics import PipelineCollector
    from archiver.storage.objects import bandwidth_call_key

    make, stack, simulator = local_ctx
    overrides = {} if spool_max_bytes is None else {"media_spool_max_bytes": spool_max_bytes}
    ctx = make(**overrides)
    rec, item_id = announce_recording(ctx, stack, simulator, duration=4.0, channels=1, file_format="wav")
    key = bandwidth_call_key(
        ctx.settings.s3_prefix,
        rec["accountId"],
        parse_timestamp(rec["startTime"]),
        rec["callId"],
        rec["recordingId"],
        "recording.wav",
    )
    foreign = b"someone else's object, written first"
    ctx.store.client.put_object(Bucket=ctx.store.bucket, Key=key, Body=foreign)

    with caplog.at_level(logging.ERROR, logger="archiver.storage.objects"):
        result = run_step(ctx, Step.ARCHIVE, item_id)
    assert result.outcome is Outcome.DEAD and "IntegrityAlarm" in (result.detail or "")
    item = item_by_provider_id(db, rec["recordingId"])
    assert item.state == ItemState.DEAD and item.last_error.startswith("IntegrityAlarm:")
    assert ctx.store.client.get_object(Bucket=ctx.store.bucket, Key=key)["Body"].read() == foreign
    assert simulator.audit(method="DELETE") == []
    assert any("INTEGRITY ALARM" in r.getMessage() for r in caplog.records)
    assert "media" not in objects(db, item_id)
    uploads = ctx.store.client.list_multipart_uploads(Bucket=ctx.store.bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == key] == []  # an aborted part upload leaves nothing behind

    scraped = {m.name: m for m in PipelineCollector(db, None, cache_seconds=0).collect()}
    assert scraped["archiver_integrity_alarms"].samples[0].value == 1
    ctx.close()
