"""The provider HTTP layer against an in-memory transport (``httpx.MockTransport``): what is retried
in place, what is not, and how every answer is classified."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from archiver.providers.errors import (
    CredentialsRefused,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from archiver.providers.http import DeleteOutcome
from archiver.providers.twilio import TwilioClient
from tests.support.clocks import TestClock

SID = "GT" + "a" * 32
ACCOUNT = "AC" + "0" * 32
T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class Script:
    """Answers requests in order from a list; records what was asked."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        #: Each request's Authorization as sent (an auth flow may send the same request object twice).
        self.authorizations: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.authorizations.append(request.headers.get("authorization"))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, retries: int = 2) -> TwilioClient:
    made = TwilioClient(
        base_url="https://intelligence.twilio.com",
        account_sid=ACCOUNT,
        secret="token-xyz",
        media_hosts=["media.twiliocdn.com"],
        transport=httpx.MockTransport(script),
        clock=TestClock(T0),
    )
    made.retries, made.retry_backoff = retries, 0.001
    return made


def transcript(status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"sid": SID, "status": "completed"})


def error(status: int, **headers: str) -> httpx.Response:
    body = {"code": 20000 + status, "message": f"m{status}", "more_info": "", "status": status}
    return httpx.Response(status, json=body, headers=headers)


def test_a_5xx_or_a_dropped_connection_is_retried_in_place_then_succeeds():
    script = Script(error(503), httpx.RemoteProtocolError("dropped"), transcript())
    document = client(script).get_transcript(SID)
    assert document.data["sid"] == SID and len(script.requests) == 3
    assert all(r.url.path == f"/v2/Transcripts/{SID}" for r in script.requests)


def test_in_place_retries_are_bounded_and_the_failure_says_so():
    script = Script(error(500), error(502), error(503))
    with pytest.raises(ProviderUnavailable) as raised:
        client(script, retries=2).get_transcript(SID)
    assert len(script.requests) == 3 and raised.value.retried_in_place
    assert "HTTP 503" in str(raised.value)


def test_a_429_is_not_retried_in_place_and_carries_its_retry_after():
    script = Script(error(429, **{"Retry-After": "7"}))
    with pytest.raises(RateLimited) as raised:
        client(script).get_transcript(SID)
    assert raised.value.retry_after == 7 and len(script.requests) == 1


def test_a_post_is_never_repeated_in_place():
    script = Script(error(503))
    with pytest.raises(ProviderUnavailable):
        client(script).create_transcript(
            "GA" + "b" * 32, {"media_properties": {"source_sid": "RE" + "c" * 32}}, None
        )
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("status", "raised"),
    [(401, CredentialsRefused), (403, CredentialsRefused), (404, NotFound), (400, ProviderRejected)],
)
def test_each_refusal_is_classified_once_and_not_retried(status, raised):
    script = Script(*(error(status) for _ in range(3)))
    with pytest.raises(raised) as caught:
        client(script).get_transcript(SID)
    assert f"HTTP {status}" in str(caught.value)
    assert len(script.requests) == 1  # a literal secret has nothing to re-read


def test_a_refused_secret_from_a_file_is_read_again_and_tried_once_more(tmp_path):
    from archiver.providers.credentials import SecretSource

    path = tmp_path / "twilio_auth_token"
    path.write_text("rotated-token\n")  # the operator rotated it after the worker read "old-token"
    script = Script(error(401), transcript())
    made = TwilioClient(
        base_url="https://intelligence.twilio.com",
        account_sid=ACCOUNT,
        secret=SecretSource("old-token", str(path)),
        media_hosts=[],
        transport=httpx.MockTransport(script),
        clock=TestClock(T0),
    )
    assert made.get_transcript(SID).data["sid"] == SID
    first, second = script.authorizations
    assert first is not None and second is not None and first != second


def test_a_delete_of_what_is_already_gone_is_no_error():
    assert client(Script(httpx.Response(204))).delete_transcript(SID) is DeleteOutcome.DELETED
    assert client(Script(error(404))).delete_transcript(SID) is DeleteOutcome.ALREADY_GONE


def test_credentials_go_only_to_the_api_never_to_the_media_host():
    script = Script(httpx.Response(200, content=b"RIFF"))
    with client(script).stream_media("https://media.twiliocdn.com/a.wav?Token=1") as response:
        response.read()
    assert "authorization" not in {k.lower() for k in script.requests[0].headers}
    api = Script(transcript())
    client(api).get_transcript(SID)
    assert api.requests[0].headers["authorization"].startswith("Basic ")
