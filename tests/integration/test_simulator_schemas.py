"""Every response body the simulator serves validates against the providers' OpenAPI specs
(openapi-core), for every operation the archiver uses, successes and declared errors alike."""

from __future__ import annotations

import json

import pytest

from tests.support.openapi_check import validate


@pytest.fixture
def world(sim):
    recordings = sim.admin.client.post(
        "/admin/recordings", json={"count": 1, "duration": 13.67, "channels": 2, "file_format": "wav"}
    ).json()["created"]
    mp3 = sim.admin.client.post(
        "/admin/recordings",
        json={"count": 1, "duration": 3.2, "channels": 1, "file_format": "mp3", "clips": False},
    ).json()["created"]
    [rtt] = sim.admin.create_realtime(1)
    transcripts = sim.admin.client.post(
        "/admin/twilio/transcripts",
        json={
            "count": 3,
            "sentences": 7,
            "operator_results": 2,
            "queued_seconds": 0,
            "processing_seconds": 0,
        },
    ).json()
    return sim, recordings[0], mp3[0], rtt, transcripts


def test_bandwidth_operations_match_the_spec(world):
    sim, rec, mp3, rtt, _ = world
    bw = sim.bandwidth
    a, c, r = rec["accountId"], rec["callId"], rec["recordingId"]
    base = f"/accounts/{a}/calls/{c}"
    responses = [
        bw.get(
            f"/accounts/{a}/recordings",
            params={"minStartTime": "2000-01-01T00:00:00Z", "maxStartTime": "2100-01-01T00:00:00.000Z"},
        ),
        bw.get(f"{base}/recordings"),
        bw.get(f"{base}/recordings/{r}"),
        bw.get(f"{base}/recordings/{r}/media"),
        bw.get(f"/accounts/{a}/calls/{mp3['callId']}/recordings/{mp3['recordingId']}/media"),
        bw.get(f"{base}/recordings/{r}/transcription"),
        bw.get(f"/accounts/{a}/calls/{mp3['callId']}/recordings/{mp3['recordingId']}/transcription"),
        bw.put(f"{base}/recording", json={"state": "paused"}),
        bw.put(f"{base}/recording", json={"state": "recording"}),
        bw.get(f"/accounts/{a}/calls/{rtt['callId']}/transcriptions"),
        bw.get(f"/accounts/{a}/calls/{rtt['callId']}/transcriptions/{rtt['transcriptionId']}"),
        bw.delete(f"/accounts/{a}/calls/{rtt['callId']}/transcriptions/{rtt['transcriptionId']}"),
        bw.delete(f"{base}/recordings/{r}/transcription"),
        bw.post(
            f"{base}/recordings/{r}/transcription",
            json={"callbackUrl": f"{sim.receiver.url}/t", "username": "u", "password": "p"},
        ),
        bw.delete(f"{base}/recordings/{r}/media"),
        bw.delete(f"{base}/recordings/{r}"),
        # declared errors
        bw.get(f"{base}/recordings/{r}"),  # 404 after the delete
        bw.get(f"/accounts/{a}/recordings", params={"minStartTime": "not-a-date"}),  # 400
        bw.get(f"{base}/recordings", auth=("sim-user", "wrong")),  # 401
    ]
    statuses = [resp.status_code for resp in responses]
    assert statuses == [
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        204,
        204,
        204,
        204,
        404,
        400,
        401,
    ]
    sim.admin.set_faults({"status": 429, "count": 1, "retry_after": 3}, {"status": 500, "count": 1})
    responses.append(bw.get(f"{base}/recordings"))
    responses.append(bw.get(f"{base}/recordings"))
    assert [resp.status_code for resp in responses[-2:]] == [429, 500]
    for response in responses:
        validate(response)
    assert responses[3].headers["content-type"] == "audio/vnd.wave"
    assert responses[4].headers["content-type"] == "audio/mpeg"


def test_twilio_operations_match_the_spec(world):
    sim, _rec, _mp3, _rtt, created = world
    tw = sim.twilio
    sid = created["created"][0]["sid"]
    service = tw.post(
        "/v2/Services",
        data={
            "UniqueName": "schema-check",
            "WebhookUrl": f"{sim.receiver.url}/tw",
            "WebhookHttpMethod": "POST",
        },
    )
    service_sid = service.json()["sid"]
    new = tw.post(
        "/v2/Transcripts",
        data={
            "ServiceSid": service_sid,
            "Channel": json.dumps({"media_properties": {"media_url": "https://example.com/a.wav"}}),
            "CustomerKey": "k-1",
        },
    )
    operators = tw.get(f"/v2/Transcripts/{sid}/OperatorResults", params={"Redacted": "false"})
    responses = [
        service,
        tw.get("/v2/Services", params={"PageSize": 10}),
        tw.get(f"/v2/Services/{service_sid}"),
        tw.post(f"/v2/Services/{service_sid}", data={"FriendlyName": "renamed", "WebhookHttpMethod": "GET"}),
        new,
        tw.get(f"/v2/Transcripts/{sid}"),
        tw.get("/v2/Transcripts", params={"ServiceSid": created["service_sid"], "PageSize": 2}),
        tw.get(f"/v2/Transcripts/{sid}/Sentences", params={"PageSize": 5, "Redacted": "false"}),
        tw.get(f"/v2/Transcripts/{sid}/Media", params={"Redacted": "false"}),
        operators,
        tw.get(
            f"/v2/Transcripts/{sid}/OperatorResults/{operators.json()['operator_results'][0]['operator_sid']}"
        ),
        tw.get(f"/v2/Transcripts/{sid}/Sentences/Encrypted", params={"Redacted": "false"}),
        tw.get(f"/v2/Transcripts/{sid}/OperatorResults/Encrypted", params={"Redacted": "false"}),
        tw.delete(f"/v2/Transcripts/{sid}"),
        tw.delete(f"/v2/Services/{service_sid}"),
    ]
    assert [r.status_code for r in responses] == [
        201,
        200,
        200,
        200,
        202,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        204,
        204,
    ]
    follow = tw.get(responses[6].json()["meta"]["next_page_url"])  # a page reached by next_page_url
    assert follow.status_code == 200
    responses.append(follow)
    for response in responses:
        validate(response)


def test_the_validator_does_catch_a_wrong_body(world):
    """Guard against a vacuous check: a body that breaks the schema must fail validation."""
    import httpx

    sim, rec, *_ = world
    good = sim.bandwidth.get(
        f"/accounts/{rec['accountId']}/calls/{rec['callId']}/recordings/{rec['recordingId']}"
    )
    broken = httpx.Response(
        200, json={**good.json(), "channels": "two", "fileFormat": "flac"}, request=good.request
    )
    with pytest.raises(Exception):  # noqa: B017 - openapi-core's validation error
        validate(broken)
