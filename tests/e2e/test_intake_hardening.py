"""What a security review found the intake answering with a 500, a 503 or not at all: each is now a
4xx with a JSON error that stores nothing, and slow or silent clients are cut off."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from urllib.parse import quote

import httpx
import pytest

from archiver.db.models import ArchiveItem, WebhookEvent
from tests.e2e.test_intake import AUTH, AVAILABLE, assert_json_error
from tests.support.helpers import count
from tests.support.oracles import twilio_signature
from tests.support.stack import SECRETS

pytestmark = pytest.mark.e2e

TWILIO_FIELDS = {
    "account_sid": "AC" + "5" * 32,
    "service_sid": "GA" + "b" * 32,
    "transcript_sid": "GT" + "c" * 32,
    "event_type": "voice_intelligence_transcript_available",
}


@pytest.fixture
def intake(e2e, db):
    stack, _simulator, _clock = e2e
    log_path = stack.workdir / "intake.log"
    start = log_path.stat().st_size
    with httpx.Client(base_url=stack.intake_url, timeout=15) as client:
        yield stack, client
    assert count(db, WebhookEvent) == 0 and count(db, ArchiveItem) == 0  # nothing stored, ever
    log = log_path.read_bytes()[start:].decode("utf-8", "replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log and '"ERROR"' not in log


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def signed_json(stack, body: bytes) -> tuple[str, dict[str, str]]:
    """A JSON webhook as Twilio signs it: the URL carries the body's SHA-256, the URL is signed."""
    path = f"/webhooks/twilio?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = twilio_signature(SECRETS["twilio_auth_token"], stack.intake_url + path, {})
    return path, {"X-Twilio-Signature": signature, "Content-Type": "application/json"}


# --- /webhooks/twilio, unauthenticated -----------------------------------------------------------


def test_a_non_ascii_signature_is_a_403(intake):
    _stack, client = intake
    response = client.post(
        "/webhooks/twilio",
        content=b"transcript_sid=GT1",
        headers={
            "X-Twilio-Signature": "é".encode("latin-1"),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert_json_error(response, 403, "forbidden")


def test_a_non_ascii_body_sha256_is_a_403(intake):
    stack, client = intake
    body = json.dumps(TWILIO_FIELDS).encode()
    path, headers = signed_json(stack, body)
    response = client.post(path.split("=")[0] + "=" + quote("é" * 64), content=body, headers=headers)
    assert_json_error(response, 403, "forbidden")


def test_deep_json_is_not_parsed_before_the_signature_and_refused_after_it(intake):
    stack, client = intake
    deep = nested(5000).encode()
    unsigned = client.post("/webhooks/twilio?bodySHA256=x", content=deep,
                           headers={"X-Twilio-Signature": "AAAA", "Content-Type": "application/json"})  # fmt: skip
    assert_json_error(unsigned, 403, "forbidden")
    path, headers = signed_json(stack, deep)
    assert_json_error(client.post(path, content=deep, headers=headers), 400, "too_deep")


def test_a_request_without_a_signature_is_refused_before_its_body_is_read(intake):
    stack, _client = intake
    port = int(stack.intake_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /webhooks/twilio HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")  # fmt: skip
        started = time.monotonic()
        answer = b""  # the body never comes: answered all the same (its head and body may come apart)
        while b'"forbidden"' not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and b'"forbidden"' in answer
    assert time.monotonic() - started < 5


def test_a_client_that_drops_mid_body_is_no_error_on_either_route(intake):
    stack, client = intake
    port = int(stack.intake_url.rsplit(":", 1)[1])
    basic = httpx.BasicAuth(*AUTH)._auth_header
    for head in (
        b"POST /webhooks/twilio HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: abc\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b"POST /webhooks/bandwidth HTTP/1.1\r\nHost: x\r\nAuthorization: " + basic.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head + b'{"eventType": "rec')
        time.sleep(0.3)
    assert client.get("/healthz").status_code == 200


# --- /webhooks/bandwidth, with valid credentials --------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda e: {**e, "tags": json.loads(nested(2000))}, 400, "too_deep"),
        (lambda e: {**e, "eventTime": "9999-12-31T23:59:59-23:59"}, 422, "invalid_timestamp"),
        (lambda e: {**e, "cause": "dup\u0000licate"}, 422, "nul_character"),
        (lambda e: {**e, "channels": "two"}, 422, "invalid_field"),
    ],
    ids=["nested-2000", "year-9999", "nul", "channels-text"],
)
def test_bad_values_in_a_post_are_4xx(intake, mutate, status, code):
    _stack, client = intake
    if code == "too_deep":  # json.dumps itself cannot write 2,000 levels
        body = json.dumps(AVAILABLE)[:-1] + ', "tags": ' + nested(2000) + "}"
    else:
        body = json.dumps(mutate(dict(AVAILABLE)))
    response = client.post("/webhooks/bandwidth", content=body.encode(), auth=AUTH,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert_json_error(response, status, code)


def test_a_lone_surrogate_is_422(intake):
    _stack, client = intake
    body = json.dumps(AVAILABLE).replace('"2022-06-30T18:55:02.489Z"', '"\\ud800"', 1).encode()
    response = client.post(
        "/webhooks/bandwidth", content=body, auth=AUTH, headers={"Content-Type": "application/json"}
    )
    assert_json_error(response, 422, "invalid_unicode")


@pytest.mark.parametrize(
    ("param", "value", "status", "code"),
    [
        ("transcription", nested(2500), 400, "too_deep"),
        ("channels", "²", 422, "invalid_field"),
        ("channels", "5" * 5000, 422, "invalid_field"),
        ("cause", "dup\x00licate", 422, "nul_character"),
    ],
    ids=["nested-value", "unicode-digit", "5000-digits", "nul"],
)
def test_bad_values_in_a_get_are_4xx(intake, param, value, status, code):
    _stack, client = intake
    params = {
        "eventType": "recordingAvailable",
        "accountId": "9900000",
        "callId": AVAILABLE["callId"],
        "recordingId": "r-fbe05094-9fd2afe9-bf5b-4c68-820c-41a01c1c5833",
        param: value,
    }
    assert_json_error(client.get("/webhooks/bandwidth", params=params, auth=AUTH), status, code)


# --- connections -------------------------------------------------------------------------------


def test_slow_and_silent_clients_are_cut_off(intake):
    """Test stack: ARCHIVER_INTAKE_HEADER_TIMEOUT_SECONDS=2, ARCHIVER_INTAKE_KEEP_ALIVE_SECONDS=2."""
    stack, _client = intake
    port = int(stack.intake_url.rsplit(":", 1)[1])
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    dripping = socket.create_connection(("127.0.0.1", port), timeout=10)
    started = time.monotonic()
    closed_after: dict[str, float] = {}
    request = b"POST /webhooks/bandwidth HTTP/1.1\r\nHost: x\r\n"
    for n in range(40):  # a byte every 0.25 s: never a whole header in time
        try:
            dripping.sendall(request[n % len(request) : n % len(request) + 1])
        except OSError:
            closed_after.setdefault("dripping", time.monotonic() - started)
            break
        time.sleep(0.25)
    for name, sock in (("silent", silent), ("dripping", dripping)):
        sock.settimeout(10)
        try:
            data = sock.recv(1024)
        except OSError:
            data = b""
        assert data == b"", (name, data)  # closed by the intake, nothing answered
        closed_after.setdefault(name, time.monotonic() - started)
        sock.close()
    assert closed_after["silent"] < 8 and closed_after["dripping"] < 8, closed_after


def test_an_unexpected_error_is_a_json_500_logged_through_our_logger(caplog):
    """The outermost layer: whatever escapes the app is answered as JSON and logged by our logger
    (redacted, JSON when configured), never by uvicorn's own traceback printer."""
    import asyncio
    import logging

    from archiver.intake.server import CatchAll

    async def broken(scope, receive, send):
        raise RuntimeError("token hunter2-abc leaked into a bug")

    async def call():
        transport = httpx.ASGITransport(app=CatchAll(broken))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            return await client.post("/webhooks/bandwidth", content=b"{}")

    with caplog.at_level(logging.ERROR):
        response = asyncio.run(call())
    assert response.status_code == 500 and response.json()["error"] == "internal"
    [record] = [r for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("archiver.")]
    assert "POST /webhooks/bandwidth" in record.getMessage()
    assert record.exc_info or record.exc_text  # the traceback (as text once the redacting filter ran)
