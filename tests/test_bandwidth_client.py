"""The Bandwidth client against the simulator over HTTP."""

from __future__ import annotations

import pytest

from archiver.ids import InvalidId
from archiver.providers.bandwidth import BandwidthClient, DeleteOutcome
from archiver.providers.errors import NotFound, ProviderRejected, ProviderUnavailable, RateLimited
from archiver.supervisor import free_port


@pytest.fixture
def bandwidth(e2e):
    stack, simulator, _clock = e2e
    client = BandwidthClient(
        base_url=f"{stack.simulator_url}/api/v2",
        username=stack.simulator_username,
        password=stack.simulator_password,
        connect_timeout=2,
        read_timeout=5,
    )
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
    client, simulator, stack = bandwidth
    [t] = simulator.create_realtime(1)
    ids = (t["accountId"], t["callId"], t["transcriptionId"])
    simulator.set_faults({"status": 500, "count": 1})
    with pytest.raises(ProviderUnavailable) as unavailable:
        client.get_realtime_transcription(*ids)
    assert "internal-error" in str(unavailable.value) and unavailable.value.retryable

    wrong = BandwidthClient(base_url=f"{stack.simulator_url}/api/v2", username="u", password="wrong")
    with pytest.raises(ProviderRejected) as rejected:
        wrong.get_realtime_transcription(*ids)
    wrong.close()
    assert rejected.value.status == 401 and not rejected.value.retryable
    assert "authentication-error: The credentials provided were invalid" in str(rejected.value)
    assert "wrong" not in str(rejected.value)


def test_connection_refused_is_retryable():
    client = BandwidthClient(base_url=f"http://127.0.0.1:{free_port()}/api/v2", username="u", password="p",
                             connect_timeout=1)  # fmt: skip
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
