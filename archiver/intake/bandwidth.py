"""Parsing Bandwidth Voice callbacks into :class:`AcceptedEvent` (docs/providers.md, "Bandwidth: callbacks").

Callbacks arrive as POST JSON or as GET with the fields as query parameters. Accepted: both keys of
the nested real-time transcription object (``realTimeTranscription`` and ``transcription``), both
shapes of ``transcriptionAvailable.transcription``, ``recordComplete`` and ``recordingComplete``,
zone-less or odd timestamps. Every id is validated before anything is stored; a URL in the body
(``mediaUrl``, ``transcription.url``) is never used: URLs are built from the configured base URL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from archiver.core.ids import InvalidId, validate
from archiver.core.timestamps import parse_timestamp, unrepresentable
from archiver.db.models import ArtifactKind, Provider
from archiver.intake.untrusted import EventRejected, check_strings, load_json, load_json_object
from archiver.pipeline.events import AcceptedEvent
from archiver.pipeline.items import Action, AnnouncedItem

REALTIME = {"realTimeTranscriptionAvailable", "realTimeTranscriptionRejected"}
RECORDING = {"recordComplete", "recordingComplete", "recordingAvailable", "transcriptionAvailable"}
HANDLED = REALTIME | RECORDING
#: Bandwidth events we recognise: acknowledged and kept in the event log, no archive item.
ACKNOWLEDGED = {
    "realTimeTranscriptionStarted",
    "realTimeTranscriptionStopped",
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


def _required_id(kind: str, container: Mapping[str, Any], field: str) -> str:
    if field not in container or container[field] in (None, ""):
        raise EventRejected(422, "missing_field", f"missing '{field}'")
    try:
        return validate(kind, container[field])
    except InvalidId as exc:
        raise EventRejected(422, "invalid_id", f"'{field}': {exc}") from None


def parse_bandwidth_event(raw: bytes) -> AcceptedEvent:
    """A POSTed callback: a JSON object (bounded nesting, storable strings)."""
    body, text = load_json_object(raw)
    return parse_bandwidth_fields(body, text)


def parse_bandwidth_query(params: Mapping[str, str]) -> AcceptedEvent:
    """A GET callback: the fields as query parameters (nested objects as JSON text)."""
    check_strings(dict(params))
    body: dict[str, Any] = {}
    for name, value in params.items():
        if value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
            try:
                body[name] = load_json(value)
                continue
            except EventRejected as rejected:
                if rejected.code != "malformed_json":
                    raise
        # ASCII digits only (str.isdigit() takes "²"), and a count of channels, not 5,000 digits.
        small_number = value.isascii() and value.isdigit() and len(value) <= 3
        body[name] = int(value) if name == "channels" and small_number else value
    return parse_bandwidth_fields(body, json.dumps(body, sort_keys=True))


#: Timestamps an event may carry, at its top level or in its nested transcription.
TIMESTAMP_FIELDS = ("eventTime", "startTime", "endTime", "completedTime")


def _check_values(body: dict[str, Any]) -> None:
    """Fields whose values we read must be readable: a channel count, and timestamps that name an
    instant (an odd or zone-less one is accepted, an impossible one is not)."""
    channels = body.get("channels")
    if channels is not None and not (
        isinstance(channels, int) and not isinstance(channels, bool) and 1 <= channels <= 64
    ):
        raise EventRejected(422, "invalid_field", "'channels' must be a number of channels")
    nested = [
        v for v in (body.get("realTimeTranscription"), body.get("transcription")) if isinstance(v, dict)
    ]
    for container in (body, *nested):
        for name in TIMESTAMP_FIELDS:
            if unrepresentable(container.get(name)):
                raise EventRejected(422, "invalid_timestamp", f"'{name}' is not a representable date")


def parse_bandwidth_fields(body: dict[str, Any], text: str) -> AcceptedEvent:
    _check_values(body)
    event_type = body.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected(422, "missing_field", "missing 'eventType'")
    if event_type not in HANDLED and event_type not in ACKNOWLEDGED:
        raise EventRejected(422, "unknown_event_type", f"unknown eventType {event_type[:64]!r}")
    account_id = _required_id("bandwidth_account", body, "accountId")
    body_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if event_type in ACKNOWLEDGED:
        return AcceptedEvent(
            Provider.BANDWIDTH, event_type, _dedupe_key(event_type, body_hash), account_id, text, None
        )
    call_id = _required_id("bandwidth_call", body, "callId")
    item = (
        _realtime_item(body, event_type, account_id, call_id)
        if event_type in REALTIME
        else (_recording_item(body, event_type, account_id, call_id))
    )
    event_time = body.get("eventTime")
    if not isinstance(event_time, str):
        event_time = body_hash
    key = _dedupe_key(event_type, account_id, call_id, item.provider_id, event_time)
    return AcceptedEvent(Provider.BANDWIDTH, event_type, key, account_id, text, item)


def _realtime_item(body: dict[str, Any], event_type: str, account_id: str, call_id: str) -> AnnouncedItem:
    nested = next(
        (body[k] for k in ("realTimeTranscription", "transcription") if isinstance(body.get(k), dict)), None
    )
    if nested is None:
        raise EventRejected(
            422, "missing_field", "missing 'realTimeTranscription' (or 'transcription') object"
        )
    transcription_id = _required_id("bandwidth_transcription", nested, "id")
    action, outcome = Action.ARCHIVE, None
    if event_type == "realTimeTranscriptionRejected":
        cause = body.get("cause") if isinstance(body.get("cause"), str) else "unknown"
        message = body.get("errorMessage") if isinstance(body.get("errorMessage"), str) else ""
        action, outcome = Action.REJECT, f"rejected: {cause}" + (f": {message}" if message else "")
    elif nested.get("status", "available") not in ("available", None):
        action, outcome = (
            Action.REJECT,
            f"transcription status {str(nested.get('status'))[:64]!r}: nothing to fetch",
        )
    return AnnouncedItem(
        provider=Provider.BANDWIDTH,
        account_id=account_id,
        kind=ArtifactKind.REALTIME_TRANSCRIPTION,
        provider_id=transcription_id,
        call_id=call_id,
        action=action,
        outcome=outcome,
        provider_started_at=parse_timestamp(nested.get("startTime"))
        or parse_timestamp(body.get("startTime")),
        provider_completed_at=parse_timestamp(nested.get("completedTime")),
    )


def _recording_item(body: dict[str, Any], event_type: str, account_id: str, call_id: str) -> AnnouncedItem:
    recording_id = _required_id("bandwidth_recording", body, "recordingId")
    action, outcome, partial = Action.ARCHIVE, None, False
    if event_type in ("recordComplete", "recordingComplete"):
        action = Action.ARCHIVE_LATER  # the media is not downloadable until recordingAvailable
    elif event_type == "recordingAvailable":
        status = str(body.get("status") or "complete").lower()
        if status == "error":
            action, outcome = Action.REJECT, "recordingAvailable status 'error': no media to fetch"
        partial = status == "partial"
    else:  # transcriptionAvailable: the docs' {id, url, status, …} or the spec's {speaker, text, confidence}
        nested = body.get("transcription")
        transcription: dict[str, Any] = nested if isinstance(nested, dict) else {}
        status = str(transcription.get("status") or "available").lower()
        action = Action.TRANSCRIPTION
        if status not in ("available", "completed", "complete"):
            outcome = f"transcription status {status[:64]!r}"
    return AnnouncedItem(
        provider=Provider.BANDWIDTH,
        account_id=account_id,
        kind=ArtifactKind.RECORDING,
        provider_id=recording_id,
        call_id=call_id,
        action=action,
        outcome=outcome,
        provider_started_at=parse_timestamp(body.get("startTime")),
        provider_completed_at=parse_timestamp(body.get("endTime")),
        partial=partial,
    )
