"""Twilio Conversational Intelligence end to end: signed webhooks → intake → worker → transcript,
every sentence, operator results and media in S3 (verified) → DELETE → purge confirmed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import wave
from io import BytesIO
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from archiver.db.models import ArchiveItem, ItemState, WebhookEvent
from archiver.local.supervisor import bin_path
from tests.support.helpers import count, objects, segments, wait_state
from tests.support.oracles import twilio_signature
from tests.support.stack import SECRETS, wait_for

pytestmark = pytest.mark.e2e


def s3_body(stack, obj):
    return stack.object_store().client.get_object(Bucket=obj.s3_bucket, Key=obj.s3_key)["Body"].read()


def create_transcripts(simulator, **options):
    response = simulator.client.post("/admin/twilio/transcripts", json={"count": 1, "queued_seconds": 0,
                                                                        "processing_seconds": 0, **options})  # fmt: skip
    response.raise_for_status()
    return response.json()


def signature(url, params):
    return twilio_signature(SECRETS["twilio_auth_token"], url, params)


def test_transcript_with_12000_sentences_operator_results_and_media(e2e, db):
    stack, simulator, clock = e2e
    created = create_transcripts(simulator, sentences=12000, operator_results=3, media_duration=5.0)
    sid = created["created"][0]["sid"]
    item = wait_state(
        db, sid, ItemState.DELETION_REQUESTED, timeout=90
    )  # the simulator's own webhook brought it
    stored = objects(db, item.id)
    assert set(stored) == {"transcript", "sentences", "operator_results", "media"}
    lines = s3_body(stack, stored["sentences"]).splitlines()
    indices = [json.loads(line)["sentence_index"] for line in lines]
    assert indices == list(range(12000))  # every sentence once, in order
    assert hashlib.sha256(b"".join(line + b"\n" for line in lines)).hexdigest() == stored["sentences"].sha256
    assert json.loads(s3_body(stack, stored["transcript"]))["status"] == "completed"
    assert len(json.loads(s3_body(stack, stored["operator_results"]))["operator_results"]) == 3
    with wave.open(BytesIO(s3_body(stack, stored["media"]))) as media:
        assert media.getnframes() == 5 * 8000
    texts = segments(db, item.id)
    assert len(texts) == 12000 and texts[0].kind == "sentence" and texts[11999].text
    audit = simulator.audit(path_contains=sid)
    [delete] = [e for e in audit if e["method"] == "DELETE"]
    assert delete["status"] == 204
    fetches = [e for e in audit if e["method"] == "GET" and e["status"] == 200]
    assert sum("/Sentences" in e["path"] for e in fetches) == 3  # 5000 a page
    assert any(e["path"].startswith("/media/") for e in fetches)
    assert max(e["seq"] for e in fetches) < delete["seq"]
    assert all(o.stored_at <= item.deletion_requested_at for o in stored.values())
    clock.advance(49 * 3600)
    wait_state(db, sid, ItemState.PURGED)


def test_signed_json_and_get_webhooks_are_accepted(e2e, db):
    stack, simulator, _clock = e2e
    simulator.client.put("/admin/callbacks", json={"drop": True})
    first = create_transcripts(simulator)["created"][0]["sid"]
    second = create_transcripts(simulator)["created"][0]["sid"]
    target = f"{stack.intake_url}/webhooks/twilio"
    [json_delivery] = simulator.send_webhooks(event="twilio", ids=[first], intake_url=target, format="json")
    [get_delivery] = simulator.send_webhooks(event="twilio", ids=[second], intake_url=target, method="GET")
    assert json_delivery["status"] == get_delivery["status"] == 204
    wait_state(db, first, ItemState.DELETION_REQUESTED)
    wait_state(db, second, ItemState.DELETION_REQUESTED)


@pytest.mark.parametrize(
    "case", ["wrong-signature", "signed-for-another-url", "missing-header", "json-body-changed"]
)
def test_bad_signatures_are_403_and_store_nothing(e2e, db, case):
    stack, simulator, _clock = e2e
    sid = "GT" + "a" * 32
    params = {"account_sid": stack.twilio_account_sid, "service_sid": "GA" + "b" * 32, "transcript_sid": sid,
              "event_type": "voice_intelligence_transcript_available"}  # fmt: skip
    url = f"{stack.intake_url}/webhooks/twilio"
    headers = {"X-Twilio-Signature": signature(url, params)}
    content = urlencode(params)
    content_type = "application/x-www-form-urlencoded"
    if case == "wrong-signature":
        headers["X-Twilio-Signature"] = base64.b64encode(b"x" * 20).decode()
    elif case == "signed-for-another-url":
        headers["X-Twilio-Signature"] = signature("https://attacker.example/webhooks/twilio", params)
    elif case == "missing-header":
        headers = {}
    else:
        body = json.dumps(params).encode()
        signed_url = f"{url}?bodySHA256={hashlib.sha256(body).hexdigest()}"
        headers["X-Twilio-Signature"] = signature(signed_url, {})
        url, content, content_type = (
            signed_url,
            json.dumps({**params, "transcript_sid": "GT" + "c" * 32}),
            "application/json",
        )
    response = httpx.post(url, content=content, headers={**headers, "Content-Type": content_type})
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert count(db, WebhookEvent) == 0 and count(db, ArchiveItem) == 0
    assert simulator.audit() == []


def test_other_event_types_are_acknowledged_and_ignored(e2e, db):
    stack, _simulator, _clock = e2e
    url = f"{stack.intake_url}/webhooks/twilio"
    other = {"account_sid": stack.twilio_account_sid, "event_type": "voice_intelligence_operator_results"}
    response = httpx.post(url, data=other, headers={"X-Twilio-Signature": signature(url, other)})
    assert response.status_code == 204 and response.headers["x-archiver-event"] == "ignored"
    assert count(db, WebhookEvent) == 0


def test_webhook_before_the_transcript_is_completed(e2e, db):
    stack, simulator, _clock = e2e
    sid = create_transcripts(simulator, queued_seconds=2, processing_seconds=2)["created"][0]["sid"]
    [delivery] = simulator.send_webhooks(
        event="twilio", ids=[sid], intake_url=f"{stack.intake_url}/webhooks/twilio"
    )
    assert delivery["status"] == 204
    item = wait_state(db, sid, ItemState.DELETION_REQUESTED, timeout=60)
    statuses = [json.loads(s3_body(stack, objects(db, item.id)["transcript"]))["status"]]
    assert statuses == ["completed"]
    gets = [e for e in simulator.audit(method="GET", path_contains=sid) if e["path"].endswith(sid)]
    assert len(gets) >= 2  # it looked, found the transcript not done, and looked again


def test_requested_transcript_whose_webhook_never_comes_is_found_by_polling(e2e, db):
    stack, simulator, _clock = e2e
    simulator.client.put("/admin/callbacks", json={"drop": True})
    service = create_transcripts(simulator)["service_sid"]
    out = subprocess.run(
        [bin_path("archiver"), "twilio", "request-transcript", "--service", service,
         "--media-url", "https://example.com/call.wav", "--customer-key", "order-77"],
        env={**os.environ, **stack.env()}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    requested = json.loads(out.stdout)
    sid = requested["transcript_sid"]
    item = wait_state(db, sid, ItemState.DELETION_REQUESTED, timeout=60)
    assert item.id == requested["item_id"]
    with db.sessionmaker() as session:
        kinds = [e.event_type for e in session.scalars(select(WebhookEvent))]
    assert kinds == ["transcript_requested"]  # no webhook ever arrived
    [create] = simulator.audit(method="POST")
    assert create["path"] == "/v2/Transcripts" and create["status"] == 202


def test_failed_transcript_is_recorded_and_not_deleted(e2e, db):
    stack, simulator, _clock = e2e
    sid = create_transcripts(simulator, fails=True)["created"][0]["sid"]
    simulator.send_webhooks(event="twilio", ids=[sid], intake_url=f"{stack.intake_url}/webhooks/twilio")
    item = wait_state(db, sid, ItemState.REJECTED)
    assert "failed" in item.outcome
    assert simulator.audit(method="DELETE") == []


def test_20429_storm_is_ridden_out_and_deletion_waits_for_every_object(e2e, db):
    stack, simulator, _clock = e2e
    simulator.set_faults({"status": 429, "share": 0.4, "provider": "twilio", "retry_after_format": "absent"})
    sid = create_transcripts(simulator, sentences=9000, operator_results=2, media_duration=2.0)["created"][0][
        "sid"
    ]
    item = wait_state(db, sid, ItemState.DELETION_REQUESTED, timeout=120)
    audit = simulator.audit(path_contains=sid)
    limited = [e for e in audit if e["status"] == 429]
    assert limited, "the storm should have hit"
    [delete] = [e for e in audit if e["method"] == "DELETE" and e["status"] == 204]
    assert all(e["seq"] < delete["seq"] for e in audit if e["method"] == "GET" and e["status"] == 200)
    assert item.attempts == 0  # 429s are pacing, not failures
    assert len(s3_body(stack, objects(db, item.id)["sentences"]).splitlines()) == 9000


def test_request_transcript_task_sent_to_the_worker(e2e, db):
    """The Celery task, sent as an operator would (celery -A workers call … or Flower's API)."""
    from celery import Celery

    from archiver.pipeline.dispatch import QUEUE_LIVE, REQUEST_TWILIO_TRANSCRIPT_TASK_NAME

    stack, simulator, _clock = e2e
    service = create_transcripts(simulator)["service_sid"]
    sender = Celery(broker=stack.broker_url)
    sender.send_task(REQUEST_TWILIO_TRANSCRIPT_TASK_NAME, kwargs={"service_sid": service, "source_sid": "RE" + "7" * 32},
                     queue=QUEUE_LIVE)  # fmt: skip

    def created_sid():
        posts = [
            e for e in simulator.audit(method="POST") if e["path"] == "/v2/Transcripts" and e["status"] == 202
        ]
        listed = simulator.client.get("/admin/twilio/transcripts").json()["transcripts"]
        return posts and next(
            (
                t["sid"]
                for t in listed
                if t["channel"]["media_properties"].get("source_sid") == "RE" + "7" * 32
            ),
            None,
        )

    sid = wait_for(created_sid, 30, "the transcript to be requested")
    wait_state(db, sid, ItemState.DELETION_REQUESTED, timeout=60)


def test_a_presigned_media_url_is_stored_without_its_query(e2e, db):
    """Twilio echoes the media URL it was given: its query (a presigned URL's signature) is not kept
    in the database, while Twilio got the whole URL."""
    from celery import Celery

    from archiver.pipeline.dispatch import QUEUE_LIVE, REQUEST_TWILIO_TRANSCRIPT_TASK_NAME
    from tests.support.helpers import events

    stack, simulator, _clock = e2e
    service = create_transcripts(simulator)["service_sid"]
    url = "https://media.example.com/call.wav?X-Amz-Credential=AKIA9&X-Amz-Signature=5ec7e7"
    sender = Celery(broker=stack.broker_url)
    sender.send_task(REQUEST_TWILIO_TRANSCRIPT_TASK_NAME, kwargs={"service_sid": service, "media_url": url},
                     queue=QUEUE_LIVE)  # fmt: skip
    stored = wait_for(
        lambda: [e for e in events(db) if e.event_type == "transcript_requested"], 30, "the request recorded"
    )
    [event] = stored
    assert "https://media.example.com/call.wav?…" in event.payload and "5ec7e7" not in event.payload
    listed = simulator.client.get("/admin/twilio/transcripts").json()["transcripts"]
    assert any(t["channel"]["media_properties"].get("media_url") == url for t in listed)
    sender.close()
