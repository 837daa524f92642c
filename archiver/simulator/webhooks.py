"""The providers' callbacks, as they send them.

Bandwidth: POST JSON (or GET with the fields as query parameters) with the configured Basic
credentials, retried once on a connection error (docs/providers.md, "Bandwidth: callbacks").
Twilio: the transcript-available event, signed with ``X-Twilio-Signature`` as twilio-python
computes it (docs/providers.md, webhook signatures): form-encoded POST,
JSON POST with ``bodySHA256`` in the URL, or GET with the parameters in the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from archiver.simulator.resources import RealtimeTranscription, Recording, TwilioTranscript, iso, iso_duration


@dataclass(frozen=True)
class IntakeTarget:
    url: str
    username: str | None = None
    password: str | None = None
    method: str = "POST"


APPLICATION_ID = "7fc9698a-b04a-468b-9e8f-91238c0d0086"

# --- Bandwidth event bodies ---------------------------------------------------------------------


def _call_fields(
    event_type: str,
    account_id: str,
    call_id: str,
    base_url: str,
    start: Any,
    event_time: Any,
    from_: str = "+15551112222",
    to: str = "+15553334444",
    direction: str = "outbound",
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": iso(event_time),
        "accountId": account_id,
        "applicationId": APPLICATION_ID,
        "callId": call_id,
        "callUrl": f"{base_url}/accounts/{account_id}/calls/{call_id}",
        "direction": direction,
        "from": from_,
        "to": to,
        "startTime": iso(start),
        "answerTime": iso(start),
        "enqueuedTime": iso(start),
    }


def realtime_available_event(
    t: RealtimeTranscription, base_url: str, key: str = "realTimeTranscription"
) -> dict[str, Any]:
    body = _call_fields(
        "realTimeTranscriptionAvailable", t.account_id, t.call_id, base_url, t.start_time, t.completed_time
    )
    body[key] = {
        "id": t.transcription_id,
        "name": t.name,
        "startTime": iso(t.start_time),
        "tracks": [track["track"] for track in t.tracks],
        "destination": "wss://websocket.myapp.example",
        "stabilized": "true",
        "status": "available",
        "url": f"{base_url}/accounts/{t.account_id}/calls/{t.call_id}/transcriptions/{t.transcription_id}",
        "completedTime": iso(t.completed_time),
    }
    return body


def realtime_rejected_event(
    t: RealtimeTranscription, base_url: str, rejected_id: str, cause: str = "duplicate"
) -> dict[str, Any]:
    """A rejected ``<StartTranscription>`` (the doc example uses the key ``transcription``)."""
    body = _call_fields(
        "realTimeTranscriptionRejected", t.account_id, t.call_id, base_url, t.start_time, t.completed_time
    )
    body["cause"] = cause
    body["errorMessage"] = f"A real-time transcription with the name {t.name} already exists"
    body["transcription"] = {
        "name": t.name,
        "id": rejected_id,
        "startTime": iso(t.start_time),
        "tracks": ["outbound"],
    }
    body["originalTranscription"] = {
        "name": t.name,
        "id": t.transcription_id,
        "startTime": iso(t.start_time),
        "tracks": [track["track"] for track in t.tracks],
        "destination": "wss://websocket.myapp.example",
        "stabilized": "false",
    }
    return body


def _recording_fields(event_type: str, r: Recording, base_url: str, event_time: Any) -> dict[str, Any]:
    body = _call_fields(
        event_type, r.account_id, r.call_id, base_url, r.start_time, event_time, r.from_, r.to, r.direction
    )
    media_url, _ = r.urls(base_url)
    body.update(
        {
            "recordingId": r.recording_id,
            "channels": r.channels,
            "startTime": iso(r.start_time),
            "endTime": iso(r.end_time),
            "duration": iso_duration(r.duration),
            "fileFormat": r.file_format,
            "mediaUrl": media_url,
        }
    )
    if r.parent_call_id:
        body["parentCallId"] = r.parent_call_id
    return body


def record_complete_event(r: Recording, base_url: str, event_type: str = "recordComplete") -> dict[str, Any]:
    """``recordComplete`` (docs) or ``recordingComplete`` (spec): the media is not downloadable yet."""
    return _recording_fields(event_type, r, base_url, r.end_time)


def recording_available_event(r: Recording, base_url: str, status: str | None = None) -> dict[str, Any]:
    body = _recording_fields("recordingAvailable", r, base_url, r.end_time)
    body["status"] = status or r.status
    return body


def transcription_available_event(
    r: Recording, base_url: str, shape: Literal["docs", "spec"] = "docs"
) -> dict[str, Any]:
    """Both shapes of ``transcription`` (docs/providers.md, "Bandwidth: callbacks")."""
    t = r.transcription
    assert t is not None
    body = _recording_fields("transcriptionAvailable", r, base_url, t.completed_time or r.end_time)
    body.pop("channels")  # not in this event's schema
    if shape == "spec":
        first = t.transcripts[0] if t.transcripts else {"text": "", "confidence": 0.0}
        body["transcription"] = {k: first[k] for k in ("speaker", "text", "confidence") if k in first}
    else:
        _, transcription_url = r.urls(base_url)
        body["transcription"] = {
            "id": t.transcription_id,
            "url": transcription_url,
            "status": t.status,
            **({"completedTime": iso(t.completed_time)} if t.completed_time else {}),
        }
    return body


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


async def deliver_bandwidth(
    client: httpx.AsyncClient, target: IntakeTarget, body: dict[str, Any]
) -> dict[str, Any]:
    auth = httpx.BasicAuth(target.username, target.password or "") if target.username is not None else None
    last_error = ""
    for _attempt in range(2):  # Bandwidth retries once on a connection exception
        try:
            if target.method.upper() == "GET":
                params = {k: _query_value(v) for k, v in body.items() if v is not None}
                request = client.build_request("GET", target.url, params=params)
            else:
                request = client.build_request("POST", target.url, json=body)
            response = await client.send(request, auth=auth) if auth else await client.send(request)
        except httpx.TransportError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            continue
        return {"status": response.status_code}
    return {"status": None, "error": last_error}


# --- Twilio -----------------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """base64(HMAC-SHA1(token, url + each sorted name followed by its sorted values))."""
    payload = url
    for name in sorted(set(params or {})):
        value = (params or {})[name]
        for item in sorted({value}):
            payload += name + item
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def transcript_available_params(t: TwilioTranscript) -> dict[str, str]:
    params = {
        "account_sid": t.account_sid,
        "service_sid": t.service_sid,
        "transcript_sid": t.sid,
        "event_type": "voice_intelligence_transcript_available",
    }
    if t.customer_key:
        params["customer_key"] = t.customer_key
    return params


async def deliver_twilio(
    client: httpx.AsyncClient,
    url: str,
    method: str,
    fmt: Literal["form", "json"],
    auth_token: str,
    params: dict[str, str],
) -> dict[str, Any]:
    try:
        if method.upper() == "GET":
            full = url + ("&" if "?" in url else "?") + urlencode(params)
            headers = {"X-Twilio-Signature": twilio_signature(auth_token, full)}
            response = await client.get(full, headers=headers)
        elif fmt == "json":
            body = json.dumps(params).encode()
            full = url + ("&" if "?" in url else "?") + "bodySHA256=" + hashlib.sha256(body).hexdigest()
            headers = {
                "X-Twilio-Signature": twilio_signature(auth_token, full),
                "Content-Type": "application/json",
            }
            response = await client.post(full, content=body, headers=headers)
        else:
            headers = {"X-Twilio-Signature": twilio_signature(auth_token, url, params)}
            response = await client.post(url, data=params, headers=headers)
    except httpx.TransportError as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"status": response.status_code}
