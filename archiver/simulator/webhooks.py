"""Delivering Bandwidth callbacks to an intake, as Bandwidth does: POST JSON with Basic credentials,
retried once on a connection error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from archiver.simulator.state import RealtimeTranscription, iso


@dataclass(frozen=True)
class IntakeTarget:
    url: str
    username: str | None = None
    password: str | None = None


def _call_fields(t: RealtimeTranscription, event_type: str, base_url: str) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": iso(t.completed_time),
        "accountId": t.account_id,
        "applicationId": "7fc9698a-b04a-468b-9e8f-91238c0d0086",
        "callId": t.call_id,
        "callUrl": f"{base_url}/accounts/{t.account_id}/calls/{t.call_id}",
        "direction": "outbound",
        "from": "+15551112222",
        "to": "+15553334444",
        "startTime": iso(t.start_time),
        "answerTime": iso(t.start_time),
        "enqueuedTime": iso(t.start_time),
    }


def realtime_available_event(
    t: RealtimeTranscription, base_url: str, key: str = "realTimeTranscription"
) -> dict[str, Any]:
    body = _call_fields(t, "realTimeTranscriptionAvailable", base_url)
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
    body = _call_fields(t, "realTimeTranscriptionRejected", base_url)
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


async def deliver(client: httpx.AsyncClient, target: IntakeTarget, body: dict[str, Any]) -> dict[str, Any]:
    auth = httpx.BasicAuth(target.username, target.password or "") if target.username is not None else None
    last_error = ""
    for _attempt in range(2):  # Bandwidth retries once on a connection exception
        try:
            response = await (
                client.post(target.url, json=body, auth=auth) if auth else client.post(target.url, json=body)
            )
        except httpx.TransportError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            continue
        return {"status": response.status_code}
    return {"status": None, "error": last_error}
