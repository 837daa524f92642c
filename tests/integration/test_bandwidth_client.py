"""The Bandwidth client against the simulator over HTTP."""

from __future__ import annotations

import pytest

from archiver.core.ids import InvalidId
from archiver.local.supervisor import free_port
from archiver.providers.bandwidth import BandwidthClient, DeleteOutcome
from archiver.providers.errors import (
    CredentialsRefused,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)


@pytest.fixture
def bandwidth(e2e):
    stack, simulator, _clock = e2e
    client = BandwidthClient(
        base_url=f"{stack.simulator_url}/api/v2",
        client_id=stack.client_id,
        client_secret=stack.client_secret,
        token_url=f"{stack.simulator_url}/api/v1/oauth2/token",
        connect_timeout=2,
        read_timeout=5,
    )
    client.tokens.refresh()  # before the test's faults ...
    simulator.reset()  # ... and out of its audit (issued tokens stay valid)
    yield client, simulator, stack
    client.close()


def test_get_and_delete(bandwidth):
    client, simulator, _ = bandwidth
    [t] = simulator.create_realtime(1)
    ids = (t["accountId"], t["callId"], t["transcriptionId"])
    document = client.get_realtime_transcription(*ids)
    assert document.data["transcriptionId"] == t["transcriptionId"]
    assert document.data["tracks"] == t["tracks"]
    assert client.realtime_transcription_exists(*ids)
    assert client.delete_realtime_transcription(*ids) is DeleteOutcome.DELETED
    assert not client.realtime_transcription_exists(*ids)
    assert client.delete_realtime_transcription(*ids) is DeleteOutcome.ALREADY_GONE
    with pytest.raises(NotFound):
        client.get_realtime_transcription(*ids)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"retry_after": 7, "retry_after_format": "seconds"}, 7.0),
        ({"retry_after": 120, "retry_after_format": "http-date"}, 120.0),
        ({"retry_after_format": "absent"}, None),
    ],
    ids=["seconds", "http-date", "absent"],
)
def test_429_carries_the_retry_after_delay(bandwidth, rule, expected):
    client, simulator, _ = bandwidth
    [t] = simulator.create_realtime(1)
    simulator.set_faults({"status": 429, "count": 1, **rule})
    with pytest.raises(RateLimited) as raised:
        client.get_realtime_transcription(t["accountId"], t["callId"], t["transcriptionId"])
    if expected is None:
        assert raised.value.retry_after is None
    else:
        assert raised.value.retry_after == pytest.approx(expected, abs=1.5)
    assert raised.value.retryable


def test_5xx_is_retryable_and_4xx_is_permanent_with_the_provider_message(bandwidth):
    client, simulator, _stack = bandwidth
    [t] = simulator.create_realtime(1)
    ids = (t["accountId"], t["callId"], t["transcriptionId"])
    simulator.set_faults({"status": 500, "count": 1})
    with pytest.raises(ProviderUnavailable) as unavailable:
        client.get_realtime_transcription(*ids)
    assert "internal-error" in str(unavailable.value) and unavailable.value.retryable

    simulator.set_faults({"status": 400, "count": 1, "path_contains": "/calls/"})
    with pytest.raises(ProviderRejected) as rejected:
        client.get_realtime_transcription(*ids)
    assert rejected.value.status == 400 and not rejected.value.retryable
    assert "validation: Request failed" in str(rejected.value)


def test_a_refused_client_secret_is_the_accounts_problem_and_never_quoted(bandwidth):
    _client, simulator, stack = bandwidth
    [t] = simulator.create_realtime(1)
    wrong = BandwidthClient(
        base_url=f"{stack.simulator_url}/api/v2",
        client_id=stack.client_id,
        client_secret="wrong-secret-9",
        token_url=f"{stack.simulator_url}/api/v1/oauth2/token",
    )
    with pytest.raises(CredentialsRefused) as refused:
        wrong.get_realtime_transcription(t["accountId"], t["callId"], t["transcriptionId"])
    wrong.close()
    assert refused.value.status == 401 and refused.value.provider == "bandwidth"
    assert "invalid_client: Bad client credentials" in str(refused.value)
    assert "wrong-secret-9" not in str(refused.value)
    assert [(e["method"], e["path"], e["status"]) for e in simulator.audit()] == [
        ("POST", "/api/v1/oauth2/token", 401)  # the API was never asked without a token
    ]


def test_connection_refused_is_retryable():
    port = free_port()
    client = BandwidthClient(base_url=f"http://127.0.0.1:{port}/api/v2", client_id="u", client_secret="p",
                             token_url=f"http://127.0.0.1:{port}/api/v1/oauth2/token", connect_timeout=1)  # fmt: skip
    with pytest.raises(ProviderUnavailable):
        client.get_realtime_transcription("9900000", "c-abc", "t-abc")
    client.close()


def test_invalid_ids_never_reach_the_network(bandwidth):
    client, simulator, _ = bandwidth
    for ids in [("99/00", "c-a", "t-a"), ("9900000", "c-../x", "t-a"), ("9900000", "c-a", "t-a?x=1"),
                ("9900000", "c-a", "t-%2e%2e"), ("9900000", "x-a", "t-a"), ("9900000", "c-a", "")]:  # fmt: skip
        with pytest.raises(InvalidId):
            client.get_realtime_transcription(*ids)
        with pytest.raises(InvalidId):
            client.delete_realtime_transcription(*ids)
    assert simulator.audit() == []


def test_5xx_and_dropped_connections_are_retried_in_place_for_gets_and_deletes(bandwidth):
    client, simulator, _ = bandwidth
    client.retries, client.retry_backoff = 2, 0.05
    [t] = simulator.create_realtime(1)
    ids = (t["accountId"], t["callId"], t["transcriptionId"])
    simulator.set_faults({"status": 503, "count": 1}, {"status": 0, "reset_after_bytes": 5, "count": 1})
    assert client.get_realtime_transcription(*ids).data["transcriptionId"] == t["transcriptionId"]
    simulator.set_faults({"status": 500, "count": 2, "method": "DELETE"})
    assert client.delete_realtime_transcription(*ids) is DeleteOutcome.DELETED
    trail = [(e["method"], e["status"]) for e in simulator.audit(path_contains=t["transcriptionId"])]
    assert trail == [
        ("GET", 503),
        ("GET", 200),
        ("GET", 200),
        ("DELETE", 500),
        ("DELETE", 500),
        ("DELETE", 200),
    ]

    # Three failures in a row: the error goes to the step's policy after 1 + 2 requests.
    simulator.set_faults({"status": 503})
    with pytest.raises(ProviderUnavailable):
        client.realtime_transcription_exists(*ids)
    assert len(simulator.audit(method="GET", path_contains=t["transcriptionId"])) == 3 + 3
    # A 429 is the provider's pacing: never retried in place.
    simulator.set_faults({"status": 429, "retry_after": 1})
    with pytest.raises(RateLimited):
        client.realtime_transcription_exists(*ids)
    assert len(simulator.audit(method="GET", path_contains=t["transcriptionId"])) == 3 + 3 + 1


def test_opening_a_media_stream_is_retried_in_place_and_a_post_never_is(bandwidth):
    client, simulator, _ = bandwidth
    client.retries, client.retry_backoff = 2, 0.05
    response = simulator.client.post("/admin/recordings", json={"count": 1, "duration": 2.0, "channels": 1,
                                                                "file_format": "wav", "with_transcription": False})  # fmt: skip
    rec = response.json()["created"][0]
    ids = (rec["accountId"], rec["callId"], rec["recordingId"])
    simulator.set_faults({"status": 502, "count": 2, "path_contains": "/media"})
    with client.stream_media(*ids) as media:
        body = b"".join(media.iter_bytes())
    assert len(body) == rec["size"]
    statuses = [e["status"] for e in simulator.audit(method="GET", path_contains="/media")]
    assert statuses == [502, 502, 200]
    simulator.set_faults({"status": 503, "method": "POST"})
    with pytest.raises(ProviderUnavailable):
        client.request_transcription(
            *ids, callback_url="https://example.com/hook", username="u", password="p"
        )
    assert len(simulator.audit(method="POST")) == 1
