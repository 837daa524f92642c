"""Bandwidth's OAuth 2.0 client credentials: the HTTP layer against ``httpx.MockTransport``, with a
clock the test moves (the end-to-end behaviour is in tests/e2e/test_credentials_e2e.py)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import pytest

from archiver.core.logging import SecretRedactingFilter
from archiver.providers.bandwidth import BandwidthClient
from archiver.providers.credentials import SecretSource
from archiver.providers.errors import CredentialsRefused, ProviderRejected, ProviderUnavailable, RateLimited
from tests.support.clocks import TestClock

BASE = "https://voice.example.test/api/v2"
TOKEN_URL = "https://api.example.test/api/v1/oauth2/token"
IDS = (
    "9900000",
    "c-12345678-12345678-1234-1234-1234-123456789012",
    "t-12345678-12345678-1234-1234-1234-123456789012",
)


T0 = datetime(2026, 12, 2, tzinfo=UTC)


class Provider:
    """A token endpoint and a Voice API, in memory: what each request carried, and what to answer."""

    def __init__(self, secret: str = "s3cret", lifetime: int = 3600) -> None:
        self.secret = secret
        self.lifetime = lifetime
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.api_auth: list[str] = []  # each request's header as sent (an auth's retry reuses the request)
        self.valid: set[str] = set()
        self.token_answers: list[httpx.Response | Exception] = []  # answered first, in order
        self.token_delay = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return self.token(request)
        header = request.headers.get("authorization", "")
        with self._lock:
            self.api_requests.append(request)
            self.api_auth.append(header)
        if not header.startswith("Bearer ") or header[7:] not in self.valid:
            return httpx.Response(401, json={"type": "authentication-error", "description": "invalid"})
        return httpx.Response(200, json={"transcriptionId": IDS[2]})

    def token(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.token_requests.append(request)
            answer = self.token_answers.pop(0) if self.token_answers else None
        time.sleep(self.token_delay)
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        expected = "Basic " + base64.b64encode(f"client-1:{self.secret}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "Bad credentials"}
            )
        token = f"tok-{len(self.token_requests)}-{'x' * 20}"
        self.valid.add(token)
        return httpx.Response(
            200, json={"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        )


def client_for(
    provider: Provider, clock: TestClock, secret: SecretSource | str = "s3cret"
) -> BandwidthClient:
    client = BandwidthClient(
        base_url=BASE,
        client_id="client-1",
        client_secret=secret,
        token_url=TOKEN_URL,
        transport=httpx.MockTransport(provider),
        clock=clock,
    )
    client.tokens.retries = client.retries = 2
    client.tokens.retry_backoff = client.retry_backoff = 0.01
    return client


def test_the_token_request_is_the_client_credentials_grant_and_the_api_gets_the_bearer():
    provider, clock = Provider(), TestClock(T0)
    client = client_for(provider, clock)
    client.get_realtime_transcription(*IDS)
    [grant] = provider.token_requests
    assert grant.method == "POST"
    assert grant.headers["authorization"] == "Basic " + base64.b64encode(b"client-1:s3cret").decode()
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(grant.content.decode()) == {"grant_type": ["client_credentials"]}
    [call] = provider.api_requests
    assert call.headers["authorization"] == "Bearer tok-1-" + "x" * 20


def test_threads_share_one_token_and_cause_one_fetch():
    provider, clock = Provider(), TestClock(T0)
    provider.token_delay = 0.2  # every thread arrives while the first fetch is under way
    client = client_for(provider, clock)
    threads = [threading.Thread(target=client.get_realtime_transcription, args=IDS) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(provider.token_requests) == 1
    assert len(provider.api_requests) == 8
    assert {r.headers["authorization"] for r in provider.api_requests} == {"Bearer tok-1-" + "x" * 20}


@pytest.mark.parametrize(
    ("lifetime", "still_used_at", "replaced_at"),
    [(3600, 3539, 3541), (5, 3.7, 3.8)],  # 60 s before the end; a quarter of a short lifetime
    ids=["an-hour", "five-seconds"],
)
def test_a_token_is_reused_until_shortly_before_it_expires(lifetime, still_used_at, replaced_at):
    provider, clock = Provider(lifetime=lifetime), TestClock(T0)
    client = client_for(provider, clock)
    client.get_realtime_transcription(*IDS)
    clock.advance(still_used_at)
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 1
    clock.advance(replaced_at - still_used_at)
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 2


def test_a_401_to_a_cached_token_fetches_a_new_one_and_retries_once():
    provider, clock = Provider(), TestClock(T0)
    client = client_for(provider, clock)
    client.get_realtime_transcription(*IDS)
    provider.valid.clear()  # every token revoked
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 2
    assert [header[-26:] for header in provider.api_auth] == [
        "tok-1-" + "x" * 20,
        "tok-1-" + "x" * 20,
        "tok-2-" + "x" * 20,
    ]
    assert client.answered == 3  # the refused try is a request the provider answered too


def test_a_401_to_a_new_token_is_a_refusal_of_the_credentials_not_a_loop():
    provider, clock = Provider(), TestClock(T0)
    client = client_for(provider, clock)
    original = provider.token

    def token_not_honoured(request: httpx.Request) -> httpx.Response:
        response = original(request)
        provider.valid.clear()  # the API refuses what the token endpoint gives (role missing)
        return response

    provider.token = token_not_honoured  # type: ignore[method-assign]
    with pytest.raises(CredentialsRefused) as raised:
        client.get_realtime_transcription(*IDS)
    assert raised.value.provider == "bandwidth" and raised.value.status == 401
    assert len(provider.api_requests) == 1 and len(provider.token_requests) == 1


def test_a_refused_secret_is_remembered_then_read_again_from_its_file(tmp_path):
    provider, clock = Provider(secret="new-secret"), TestClock(T0)
    path = tmp_path / "client_secret"
    path.write_text("old-secret\n")
    client = client_for(provider, clock, SecretSource("old-secret", str(path)))
    with pytest.raises(CredentialsRefused, match="invalid_client: Bad credentials"):
        client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 1
    with pytest.raises(CredentialsRefused):  # the same secret, refused moments ago: not asked again
        client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 1 and provider.api_requests == []
    path.write_text("new-secret\n")  # the operator fixes the file
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 2 and len(provider.api_requests) == 1


def test_a_secret_rotated_in_its_file_is_read_when_the_endpoint_refuses_the_cached_one(tmp_path):
    provider, clock = Provider(secret="second"), TestClock(T0)
    path = tmp_path / "client_secret"
    path.write_text("first")
    client = client_for(provider, clock, SecretSource("first", str(path)))
    path.write_text("second")  # rotated before this process ever asked
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 2  # refused with "first", at once again with "second"


def test_the_token_endpoints_429_carries_its_retry_after():
    provider, clock = Provider(), TestClock(T0)
    provider.token_answers = [httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow_down"})]
    client = client_for(provider, clock)
    with pytest.raises(RateLimited) as raised:
        client.get_realtime_transcription(*IDS)
    assert raised.value.retry_after == 7.0
    clock.advance(3)
    with pytest.raises(RateLimited) as again:  # waiters and later callers honour it too
        client.get_realtime_transcription(*IDS)
    assert again.value.retry_after == pytest.approx(4.0) and again.value is not raised.value
    assert len(provider.token_requests) == 1 and provider.api_requests == []
    clock.advance(4.1)
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 2


def test_the_token_endpoints_5xx_and_dropped_connections_are_retried_in_place():
    provider, clock = Provider(), TestClock(T0)
    provider.token_answers = [httpx.Response(503), httpx.RemoteProtocolError("dropped")]
    client = client_for(provider, clock)
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 3 and len(provider.api_requests) == 1
    provider.token_answers = [httpx.Response(502) for _ in range(3)]
    clock.advance(3600)
    with pytest.raises(ProviderUnavailable, match="HTTP 502"):
        client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 6
    with pytest.raises(ProviderUnavailable):  # held for 2 s: the next caller is not sent there again
        client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 6
    clock.advance(2.1)
    client.get_realtime_transcription(*IDS)
    assert len(provider.token_requests) == 7


@pytest.mark.parametrize("status", [400, 403, 404])
def test_any_other_refusal_of_the_token_endpoint_is_the_accounts_problem(status):
    provider, clock = Provider(), TestClock(T0)
    provider.token_answers = [httpx.Response(status, json={"error": "unauthorized_client"})]
    client = client_for(provider, clock)
    with pytest.raises(CredentialsRefused, match=f"HTTP {status}"):
        client.get_realtime_transcription(*IDS)


def test_the_token_goes_only_below_the_configured_base_url():
    provider, clock = Provider(), TestClock(T0)
    client = client_for(provider, clock)
    client.get_realtime_transcription(*IDS)
    with pytest.raises(ProviderRejected, match="refusing to send the Bandwidth access token"):
        client._http.get("https://elsewhere.example.test/api/v2/accounts")
    with pytest.raises(ProviderRejected):
        client._http.get("https://voice.example.test/api/v2evil/x")
    assert len(provider.api_requests) == 1


def test_a_token_never_reaches_a_log_line():
    provider, clock = Provider(), TestClock(T0)
    client = client_for(provider, clock)
    client.get_realtime_transcription(*IDS)
    token = "tok-1-" + "x" * 20
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "sent %s", (token,), None)
    SecretRedactingFilter([]).filter(record)
    assert token not in record.getMessage() and "***" in record.getMessage()
    assert token not in repr(client.tokens._token)


def test_a_body_without_a_token_is_not_taken_for_one():
    provider, clock = Provider(), TestClock(T0)
    provider.token_answers = [
        httpx.Response(200, content=json.dumps({"token_type": "Bearer"}).encode()) for _ in range(3)
    ]
    client = client_for(provider, clock)
    with pytest.raises(CredentialsRefused, match="without an access_token"):  # the account's problem
        client.get_realtime_transcription(*IDS)


def test_the_base_url_is_compared_as_httpx_normalises_it():
    provider, clock = Provider(), TestClock(T0)
    client = BandwidthClient(
        base_url="https://Voice.Example.test:443/api/v2",  # upper case and the default port: the same host
        client_id="client-1",
        client_secret="s3cret",
        token_url=TOKEN_URL,
        transport=httpx.MockTransport(provider),
        clock=clock,
    )
    client.get_realtime_transcription(*IDS)
    assert len(provider.api_requests) == 1


def test_a_twilio_secret_rotated_in_its_file_by_another_thread_is_sent_again(tmp_path):
    """Two requests refused with the old secret: the first to re-read the file takes the new one,
    and the second, finding it already read, must still try it, not take the account for refused."""
    from archiver.providers.twilio import TwilioClient

    path = tmp_path / "auth_token"
    path.write_text("old-token")
    source = SecretSource("old-token", str(path))
    seen: list[str] = []

    def twilio(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if (
            request.headers["authorization"]
            == "Basic " + base64.b64encode(b"AC" + b"1" * 32 + b":old-token").decode()
        ):
            path.write_text("new-token")
            source.reload()  # another thread, refused too, read the file first
            return httpx.Response(401, json={"code": 20003, "message": "Authenticate"})
        return httpx.Response(200, json={"sid": "GT" + "2" * 32})

    client = TwilioClient(
        base_url="https://intelligence.example.test",
        account_sid="AC" + "1" * 32,
        secret=source,
        media_hosts=[],
        transport=httpx.MockTransport(twilio),
    )
    assert client.get_transcript("GT" + "2" * 32).data["sid"] == "GT" + "2" * 32
    assert len(seen) == 2
