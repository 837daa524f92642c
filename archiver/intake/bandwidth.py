"""Parsing Bandwidth Voice callbacks into :class:`AcceptedEvent` (CONTRACTS.md §1.6).

Accepts both keys of the nested real-time transcription object (``realTimeTranscription`` and
``transcription``), zone-less or odd timestamps, and ``stabilized`` as a string. Every id is validated
before anything is stored; a URL in the body is never used.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from archiver.db.models import ArtifactKind, ItemState, Provider
from archiver.ids import InvalidId, validate
from archiver.pipeline.events import AcceptedEvent, AnnouncedItem
from archiver.timestamps import parse_timestamp


class EventRejected(Exception):
    """The request cannot be accepted; ``status`` and ``message`` go back to the caller as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


HANDLED = {"realTimeTranscriptionAvailable", "realTimeTranscriptionRejected"}
#: Bandwidth events we recognise: acknowledged and kept in the event log, no archive item (yet).
ACKNOWLEDGED = {
    "realTimeTranscriptionStarted",
    "realTimeTranscriptionStopped",
    "recordComplete",
    "recordingComplete",
    "recordingAvailable",
    "transcriptionAvailable",
    "initiate",
    "answer",
    "disconnect",
    "gather",
    "transferAnswer",
    "transferComplete",
    "transferDisconnect",
    "redirect",
    "conferenceCreated",
    "conferenceMemberJoin",
    "conferenceMemberExit",
    "conferenceCompleted",
    "conferenceRecordingAvailable",
}


def _dedupe_key(*parts: str) -> str:
    return "bandwidth:" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _nested_transcription(body: dict[str, Any]) -> dict[str, Any]:
    for key in ("realTimeTranscription", "transcription"):
        value = body.get(key)
        if isinstance(value, dict):
            return value
    raise EventRejected(422, "missing_field", "missing 'realTimeTranscription' (or 'transcription') object")


def _required_id(kind: str, container: dict[str, Any], field: str) -> str:
    if field not in container or container[field] in (None, ""):
        raise EventRejected(422, "missing_field", f"missing '{field}'")
    try:
        return validate(kind, container[field])
    except InvalidId as exc:
        raise EventRejected(422, "invalid_id", f"'{field}': {exc}") from None


def parse_bandwidth_event(raw: bytes) -> AcceptedEvent:
    try:
        text = raw.decode("utf-8")
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise EventRejected(400, "malformed_json", "body is not valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise EventRejected(400, "malformed_json", "body is not a JSON object")
    event_type = body.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected(422, "missing_field", "missing 'eventType'")
    if event_type not in HANDLED and event_type not in ACKNOWLEDGED:
        raise EventRejected(422, "unknown_event_type", f"unknown eventType {event_type[:64]!r}")
    account_id = _required_id("bandwidth_account", body, "accountId")
    if event_type in ACKNOWLEDGED:
        return AcceptedEvent(
            provider=Provider.BANDWIDTH,
            event_type=event_type,
            dedupe_key=_dedupe_key(event_type, hashlib.sha256(raw).hexdigest()),
            account_id=account_id,
            payload=text,
            item=None,
        )
    call_id = _required_id("bandwidth_call", body, "callId")
    nested = _nested_transcription(body)
    transcription_id = _required_id("bandwidth_transcription", nested, "id")
    started = parse_timestamp(nested.get("startTime")) or parse_timestamp(body.get("startTime"))
    completed = parse_timestamp(nested.get("completedTime"))
    if event_type == "realTimeTranscriptionRejected":
        cause = body.get("cause") if isinstance(body.get("cause"), str) else "unknown"
        message = body.get("errorMessage") if isinstance(body.get("errorMessage"), str) else ""
        state, outcome = ItemState.REJECTED, f"rejected: {cause}" + (f": {message}" if message else "")
    else:
        status = nested.get("status", "available")
        if status in ("available", None):
            state, outcome = ItemState.PENDING, None
        else:
            state, outcome = (
                ItemState.REJECTED,
                f"transcription status {str(status)[:64]!r}: nothing to fetch",
            )
    event_time = body.get("eventTime")
    if not isinstance(event_time, str):
        event_time = hashlib.sha256(raw).hexdigest()
    return AcceptedEvent(
        provider=Provider.BANDWIDTH,
        event_type=event_type,
        dedupe_key=_dedupe_key(event_type, account_id, call_id, transcription_id, event_time),
        account_id=account_id,
        payload=text,
        item=AnnouncedItem(
            provider=Provider.BANDWIDTH,
            account_id=account_id,
            kind=ArtifactKind.REALTIME_TRANSCRIPTION,
            provider_id=transcription_id,
            call_id=call_id,
            state=state,
            outcome=outcome,
            provider_started_at=started,
            provider_completed_at=completed,
        ),
    )
