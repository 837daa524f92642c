"""Bandwidth recordings end to end: simulator webhooks → intake → worker → S3 (metadata, media,
transcription) → verified → DELETE → purge, and everything that must stop a deletion."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time

import pytest

from archiver.db.models import ItemState
from tests.support.helpers import history, item_by_provider_id, media_bytes, objects, segments, wait_state
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e


def add_recording(simulator, **options):
    response = simulator.client.post("/admin/recordings", json={"count": 1, **options})
    response.raise_for_status()
    return response.json()["created"][0]


def assert_deleted_only_after_verified_copies(stack, simulator, db, item, roles):
    """The audit invariant: the recording's DELETE came after its media and transcription were
    fetched (simulator audit order) and after every object was stored and verified (archiver clock),
    and each object in S3 still has the recorded SHA-256."""
    stored = objects(db, item.id)
    assert set(stored) == roles
    client = stack.object_store().client
    for obj in stored.values():
        body = client.get_object(Bucket=obj.s3_bucket, Key=obj.s3_key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == obj.sha256 and len(body) == obj.size_bytes
    audit = simulator.audit(path_contains=item.provider_id)
    deletes = [e for e in audit if e["method"] == "DELETE"]
    assert len(deletes) == 1
    fetched = [
        e["seq"] for e in audit if e["method"] == "GET" and e["path"].endswith(("/media", "/transcription"))
    ]
    assert fetched and max(fetched) < deletes[0]["seq"]
    item = item_by_provider_id(db, item.provider_id)
    assert all(obj.stored_at <= item.deletion_requested_at for obj in stored.values())
    archived = next(h.at for h in history(db, item.id) if h.to_state == ItemState.ARCHIVED)
    assert archived <= item.deletion_requested_at


def test_one_channel_wav_with_transcription_archived_verified_deleted_and_purged(e2e, db):
    stack, simulator, clock = e2e
    rec = add_recording(simulator, duration=20.5, channels=1, file_format="wav")
    [delivery] = simulator.send_webhooks(event="recordingAvailable")
    assert delivery["status"] == 204
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    assert item.kind == "recording" and item.transcription_state == "archived" and not item.partial
    stored = objects(db, item.id)
    assert stored["media"].s3_key.endswith(f"/{rec['callId']}/{rec['recordingId']}/recording.wav")
    media = media_bytes(rec)
    # Spooled (the default): one PutObject whose full-object checksum is the SHA-256 itself.
    assert (
        stored["media"].s3_checksum == "sha256:" + base64.b64encode(hashlib.sha256(media).digest()).decode()
    )
    assert stored["media"].sha256 == hashlib.sha256(media).hexdigest() and stored["media"].size_bytes == len(
        media
    )
    head = stack.object_store().client.head_object(
        Bucket=stored["media"].s3_bucket, Key=stored["media"].s3_key
    )
    assert head["ContentType"] == "audio/vnd.wave"
    assert head["Metadata"]["sha256"] == stored["media"].sha256
    assert (
        head["Metadata"]["recording-id"] == rec["recordingId"]
        and head["Metadata"]["call-id"] == rec["callId"]
    )
    assert head["Metadata"]["channels"] == "1" and head["Metadata"]["duration-seconds"] == "20.5"
    meta = json.loads(
        stack.object_store()
        .client.get_object(Bucket=stored["metadata"].s3_bucket, Key=stored["metadata"].s3_key)["Body"]
        .read()
    )
    assert meta["recordingId"] == rec["recordingId"] and meta["duration"] == "PT20.5S"
    texts = segments(db, item.id)
    assert texts[0].kind == "transcript" and texts[0].track == "party_or_a_leg"
    assert any(s.kind == "clip" and s.start_seconds is not None for s in texts)
    assert_deleted_only_after_verified_copies(
        stack, simulator, db, item, {"metadata", "media", "transcription"}
    )
    assert simulator.client.get(f"/admin/recordings/{rec['recordingId']}").json()["deleted_at"]
    assert simulator.audit(method="POST", tokens=False) == []  # it had a transcription: none requested
    clock.advance(49 * 3600)
    purged = wait_state(db, rec["recordingId"], ItemState.PURGED)
    assert purged.deletion_scope == "recording"


def test_two_channel_wav_keeps_both_transcripts_and_says_which_is_which(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=12.0, channels=2, file_format="wav")
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    transcripts = [s for s in segments(db, item.id) if s.kind == "transcript"]
    assert [(s.track, s.speaker) for s in transcripts] == [("party_or_a_leg", 0), ("playback_or_b_leg", 1)]


def test_mp3(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=9.0, channels=1, file_format="mp3")
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    media = objects(db, item.id)["media"]
    assert media.s3_key.endswith("recording.mp3") and media.content_type == "audio/mpeg"
    assert media.sha256 == hashlib.sha256(media_bytes(rec)).hexdigest()


def test_partial_recording_is_archived_and_marked_partial(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=8.0, channels=1, file_format="wav", status="partial")
    simulator.send_webhooks(event="recordingAvailable", status="partial")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    assert item.partial is True


def test_recording_in_error_is_recorded_and_nothing_fetched(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=8.0, status="error")
    simulator.send_webhooks(event="recordingAvailable", status="error")
    item = item_by_provider_id(db, rec["recordingId"])
    assert item.state == ItemState.REJECTED and "error" in item.outcome
    time.sleep(1)
    assert simulator.audit() == []


def test_short_recording_gets_no_transcription_request(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=0.4, channels=1, file_format="wav", with_transcription=False)
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    assert item.transcription_state == "none"
    assert simulator.audit(method="POST", tokens=False) == []
    assert set(objects(db, item.id)) == {"metadata", "media"}


def test_recording_over_4h_gets_no_transcription_request(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(
        simulator, duration=4 * 3600 + 5, channels=1, file_format="mp3", with_transcription=False
    )
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED, timeout=120)
    assert item.transcription_state == "none"
    assert objects(db, item.id)["media"].size_bytes == rec["size"] > 200 * 2**20
    assert simulator.audit(method="POST", tokens=False) == []


def test_requested_transcription_calls_back_and_is_archived_before_deletion(e2e, db):
    stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=30.0, channels=2, file_format="wav", with_transcription=False)
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED, timeout=45)
    assert item.transcription_state == "archived"
    assert item.s3_key == objects(db, item.id)["media"].s3_key  # a later transcription does not replace it
    [post] = simulator.audit(method="POST", tokens=False)
    assert post["path"].endswith(f"/recordings/{rec['recordingId']}/transcription")
    assert set(objects(db, item.id)) == {"metadata", "media", "transcription"}
    assert ItemState.AWAITING_TRANSCRIPTION in [h.to_state for h in history(db, item.id)]
    assert_deleted_only_after_verified_copies(
        stack, simulator, db, item, {"metadata", "media", "transcription"}
    )


def test_transcription_that_never_calls_back_is_resolved_by_the_sweep(e2e, db):
    stack, simulator, clock = e2e
    simulator.client.put("/admin/callbacks", json={"drop": True})
    rec = add_recording(simulator, duration=30.0, channels=1, file_format="wav", with_transcription=False)
    simulator.send_webhooks(event="recordingAvailable")
    waiting = wait_state(db, rec["recordingId"], ItemState.AWAITING_TRANSCRIPTION)
    assert waiting.transcription_state == "expected" and waiting.enqueued_at is None
    time.sleep(3)  # the transcription is done at the provider, but nobody tells us
    assert item_by_provider_id(db, rec["recordingId"]).state == ItemState.AWAITING_TRANSCRIPTION
    assert simulator.audit(method="DELETE") == []  # never deleted while its transcription is expected
    clock.advance(3601)  # past ARCHIVER_TRANSCRIPTION_WAIT_SECONDS: the sweeper reads the metadata
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    assert item.transcription_state == "archived"
    assert item.s3_key == objects(db, item.id)["media"].s3_key  # the item still names its media
    assert_deleted_only_after_verified_copies(
        stack, simulator, db, item, {"metadata", "media", "transcription"}
    )


def test_an_archived_object_changed_before_deletion_stops_the_deletion(e2e, db):
    """The check before a DELETE is not a formality: media rewritten in S3 while the recording
    waits for its transcription means no deletion, ever, and a dead letter that names the object."""
    stack, simulator, clock = e2e
    simulator.client.put("/admin/callbacks", json={"drop": True})
    rec = add_recording(simulator, duration=5.0, channels=1, file_format="wav", with_transcription=False)
    simulator.send_webhooks(event="recordingAvailable")
    waiting = wait_state(db, rec["recordingId"], ItemState.AWAITING_TRANSCRIPTION)
    media = objects(db, waiting.id)["media"]
    client = stack.object_store().client
    body = client.get_object(Bucket=media.s3_bucket, Key=media.s3_key)["Body"].read()
    client.put_object(Bucket=media.s3_bucket, Key=media.s3_key, Body=body[:-1] + b"\x00")
    time.sleep(3)  # the transcription is done at the provider, but nobody tells us
    clock.advance(3601)  # the transcription's deadline: the sweeper moves on towards deletion
    item = wait_state(db, rec["recordingId"], ItemState.DEAD, timeout=60)
    assert media.s3_key in item.last_error and "checksum" in item.last_error
    assert simulator.audit(method="DELETE") == []


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 0, "corrupt": True, "corrupt_offset": 0},  # not a RIFF file any more
        {"status": 0, "truncate_to_bytes": 50_000},  # Content-Length agrees, the WAV header does not
        {"status": 0, "reset_after_bytes": 50_000},  # the connection drops mid-body
    ],
    ids=["corrupted", "truncated", "reset"],
)
def test_bad_media_is_never_archived_as_complete_nor_deleted(e2e, db, fault):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=10.0, channels=1, file_format="wav")
    simulator.set_faults({**fault, "method": "GET", "path_contains": "/media"})
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DEAD, timeout=60)
    assert item.failed_state == ItemState.PENDING
    assert "media" not in objects(db, item.id)
    assert simulator.audit(method="DELETE") == []
    assert (
        len(simulator.audit(method="GET", path_contains="/media")) == 5
    )  # ARCHIVER_MAX_ATTEMPTS, from the start


def test_bad_media_then_good_media_is_archived_once_whole(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=10.0, channels=1, file_format="wav")
    simulator.set_faults(
        {"status": 0, "truncate_to_bytes": 1000, "count": 1, "path_contains": "/media"},
        {"status": 0, "reset_after_bytes": 70_000, "count": 1, "path_contains": "/media"},
    )
    simulator.send_webhooks(event="recordingAvailable")
    item = wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
    assert objects(db, item.id)["media"].sha256 == hashlib.sha256(media_bytes(rec)).hexdigest()
    assert [e["status"] for e in simulator.audit(method="GET", path_contains="/media")][:3] == [200, 200, 200]
    assert item.attempts == 2


def test_media_url_pointing_elsewhere_is_never_fetched(e2e, db):
    _stack, simulator, _clock = e2e
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        rec = add_recording(simulator, duration=5.0, channels=1, file_format="wav")
        simulator.send_webhooks(event="recordingAvailable", media_url=f"http://127.0.0.1:{port}/steal/media")
        wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)
        time.sleep(0.5)
        assert accepted == []
        assert len(simulator.audit(method="GET", path_contains="/media")) == 1
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_get_callback_is_accepted(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=5.0, channels=1, file_format="wav")
    [delivery] = simulator.send_webhooks(event="recordingAvailable", method="GET")
    assert delivery["status"] == 204
    wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)


def test_record_complete_waits_for_recording_available(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=5.0, channels=1, file_format="wav")
    simulator.send_webhooks(event="recordComplete")
    item = wait_for(lambda: item_by_provider_id(db, rec["recordingId"]), 10, "the item")
    assert item.state == ItemState.PENDING and item.enqueued_at is None and item.due_at > item.created_at
    time.sleep(1.5)
    assert simulator.audit() == []  # the media is not downloadable yet: nothing fetched
    simulator.send_webhooks(event="recordingAvailable")
    wait_state(db, rec["recordingId"], ItemState.DELETION_REQUESTED)


def test_transcription_available_with_a_failure_status_is_recorded(e2e, db):
    _stack, simulator, _clock = e2e
    rec = add_recording(simulator, duration=30.0, channels=1, file_format="wav", with_transcription=False)
    simulator.client.put("/admin/callbacks", json={"drop": True})
    simulator.send_webhooks(event="recordingAvailable")
    wait_state(db, rec["recordingId"], ItemState.AWAITING_TRANSCRIPTION)
    # The provider reports a failure: recorded as the transcription's outcome. Its metadata still
    # says the transcription is processing, so the item keeps waiting rather than deleting.
    import httpx

    from tests.e2e.test_intake import AUTH

    event = {
        "eventType": "transcriptionAvailable",
        "eventTime": "2026-11-21T08:00:00Z",
        "accountId": rec["accountId"],
        "callId": rec["callId"],
        "recordingId": rec["recordingId"],
        "transcription": {"id": "t-1", "status": "file-size-too-small"},
    }
    assert (
        httpx.post(
            f"{_stack.intake_url}/webhooks/bandwidth", json=event, auth=(AUTH[0], _stack.intake_password)
        ).status_code
        == 204
    )
    item = wait_for(
        lambda: (i := item_by_provider_id(db, rec["recordingId"])).transcription_outcome and i, 10, "outcome"
    )
    assert "file-size-too-small" in item.transcription_outcome
