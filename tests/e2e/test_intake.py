"""The intake over HTTP: what it refuses stores nothing and enqueues nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from archiver.db.models import ArchiveItem, ItemHistory, WebhookEvent
from tests.support.helpers import count
from tests.support.stack import SECRETS

AUTH = ("intake-user", SECRETS["intake_password"])

AVAILABLE = {
    "eventType": "realTimeTranscriptionAvailable",
    "eventTime": "2022-06-30T18:55:02.489Z",
    "accountId": "9900000",
    "applicationId": "7fc9698a-b04a-468b-9e8f-91238c0d0086",
    "callId": "c-95ac912f-68aacdd7-4a8e-4223-a7fd-020e02fa6bf2",
    "callUrl": "https://voice.bandwidth.com/api/v2/accounts/9900000/calls/c-95ac912f-68aacdd7-4a8e-4223-a7fd-020e02fa6bf2",
    "direction": "outbound",
    "from": "+15551112222",
    "to": "+15553334444",
    "startTime": "2022-06-30T18:54:59.175Z",
    "realTimeTranscription": {
        "id": "t-95ac90b3-bfc81595-35fc-4b64-8265-fab6855b74a2",
        "name": "example_transcription",
        "startTime": "2022-06-30T18:55:02.489Z",
        "tracks": ["inbound", "outbound"],
        "stabilized": "true",
        "status": "available",
        "url": "https://voice.bandwidth.com/api/v2/accounts/9900000/calls/c-95ac912f-68aacdd7-4a8e-4223-a7fd-020e02fa6bf2/transcriptions/t-95ac90b3-bfc81595-35fc-4b64-8265-fab6855b74a2",
        "completedTime": "2022-06-30T18:55:02.489Z",
    },
}


@pytest.fixture
def intake(e2e):
    stack, simulator, _clock = e2e
    with httpx.Client(base_url=stack.intake_url, timeout=10) as client:
        yield client, simulator


def assert_nothing_stored(db, simulator):
    assert count(db, WebhookEvent) == 0
    assert count(db, ArchiveItem) == 0
    assert count(db, ItemHistory) == 0
    assert simulator.audit() == []


def assert_json_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == code
    assert response.json()["message"]


@pytest.mark.parametrize(
    "auth",
    [None, ("intake-user", "wrong"), ("someone-else", SECRETS["intake_password"]), ("intake-user", "")],
    ids=["missing", "wrong-password", "wrong-user", "empty-password"],
)
def test_wrong_or_missing_credentials_are_401_and_store_nothing(intake, db, auth):
    client, simulator = intake
    response = client.post("/webhooks/bandwidth", json=AVAILABLE, auth=auth)
    assert_json_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert_nothing_stored(db, simulator)


def test_garbage_authorization_header_is_401(intake, db):
    client, simulator = intake
    for header in ["Basic !!!notbase64", "Bearer abc", "Basic " + "QQ==", "basic"]:
        response = client.post("/webhooks/bandwidth", json=AVAILABLE, headers={"Authorization": header})
        assert_json_error(response, 401, "unauthorized")
    assert_nothing_stored(db, simulator)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"\xff\xfe\x00", 400, "malformed_json"),
        (b"[1, 2, 3]", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (json.dumps({**AVAILABLE, "eventType": "somethingElse"}).encode(), 422, "unknown_event_type"),
        (json.dumps({k: v for k, v in AVAILABLE.items() if k != "eventType"}).encode(), 422, "missing_field"),
        (json.dumps({k: v for k, v in AVAILABLE.items() if k != "callId"}).encode(), 422, "missing_field"),
        (json.dumps({k: v for k, v in AVAILABLE.items() if k != "realTimeTranscription"}).encode(), 422, "missing_field"),
        (json.dumps({**AVAILABLE, "realTimeTranscription": {"status": "available"}}).encode(), 422, "missing_field"),
        (json.dumps({**AVAILABLE, "callId": "c-../../admin"}).encode(), 422, "invalid_id"),
        (json.dumps({**AVAILABLE, "accountId": "99/00"}).encode(), 422, "invalid_id"),
        (json.dumps({**AVAILABLE, "accountId": "1234"}).encode(), 422, "unexpected_account"),
        (
            json.dumps({**AVAILABLE, "realTimeTranscription": {**AVAILABLE["realTimeTranscription"], "id": "t-a/b"}}).encode(),
            422,
            "invalid_id",
        ),
    ],
    ids=[
        "broken-json", "not-utf8", "not-an-object", "empty", "unknown-type", "no-type", "no-call",
        "no-transcription", "no-transcription-id", "traversal-call-id", "bad-account", "other-account",
        "slash-in-id",
    ],
)  # fmt: skip
def test_bad_bodies_are_4xx_json_and_store_nothing(intake, db, body, status, code):
    client, simulator = intake
    response = client.post(
        "/webhooks/bandwidth", content=body, auth=AUTH, headers={"Content-Type": "application/json"}
    )
    assert_json_error(response, status, code)
    assert_nothing_stored(db, simulator)


def test_oversized_bodies_are_413_declared_or_streamed(intake, db):
    client, simulator = intake
    big = json.dumps({**AVAILABLE, "padding": "x" * 300_000}).encode()
    response = client.post("/webhooks/bandwidth", content=big, auth=AUTH)
    assert_json_error(response, 413, "body_too_large")

    def chunks():
        for _ in range(100):
            yield b"x" * 10_000

    response = client.post("/webhooks/bandwidth", content=chunks(), auth=AUTH)  # chunked: no Content-Length
    assert_json_error(response, 413, "body_too_large")
    assert_nothing_stored(db, simulator)


def test_unknown_paths_and_methods_are_json_errors(intake):
    client, _ = intake
    assert_json_error(client.put("/webhooks/bandwidth", auth=AUTH), 405, "method_not_allowed")
    assert_json_error(client.post("/nope", auth=AUTH), 404, "not_found")


def test_healthz(intake):
    client, _ = intake
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_accepts_the_transcription_key_of_the_docs(intake, db):
    """docs/providers.md, "Bandwidth: callbacks": some events carry the object under ``transcription``; both keys work."""
    client, _simulator = intake
    body = {k: v for k, v in AVAILABLE.items() if k != "realTimeTranscription"}
    body["transcription"] = AVAILABLE["realTimeTranscription"]
    body["eventTime"] = "2019-09-13T16:49:40.500"  # zone-less, as in the docs
    response = client.post("/webhooks/bandwidth", json=body, auth=AUTH)
    assert response.status_code == 204
    assert count(db, WebhookEvent) == 1
    assert count(db, ArchiveItem) == 1


def test_known_but_unarchived_events_are_acknowledged_and_logged(intake, db):
    client, simulator = intake
    body = {**AVAILABLE, "eventType": "realTimeTranscriptionStarted"}
    response = client.post("/webhooks/bandwidth", json=body, auth=AUTH)
    assert response.status_code == 204
    assert count(db, WebhookEvent) == 1
    assert count(db, ArchiveItem) == 0
    assert simulator.audit() == []
