"""The simulator's resources, as the providers hold them: Bandwidth's real-time transcriptions,
recordings and their transcriptions, Twilio's Services and transcripts; each deleted as at the
providers, answering 404 at once but kept until a purge time 24 to 48 h later; and the audit log's
entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from archiver.simulator.media import media_size

WORDS = (
    "hello thanks calling about order account appointment tomorrow morning please confirm number "
    "yes no maybe transfer billing support great perfect talk soon goodbye question answer help card "
    "address street payment refund delivery schedule monday friday email phone "
).split()
REDACTABLE = {"card", "address", "street", "email", "phone", "number"}


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def iso_seconds(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(seconds: float) -> str:
    """ISO-8601 duration as Bandwidth writes it: ``PT13.67S``, ``PT1H2M3.5S``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT"
    if hours >= 1:
        text += f"{int(hours)}H"
    if minutes >= 1 or hours >= 1:
        text += f"{int(minutes)}M"
    return text + f"{round(secs, 3):g}S"


class SimClock:
    """Wall clock plus an offset that the admin API can advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Deletable:
    deleted_at: datetime | None = field(default=None, kw_only=True)
    purge_at: datetime | None = field(default=None, kw_only=True)

    @property
    def live(self) -> bool:
        return self.deleted_at is None

    def purged(self, now: datetime) -> bool:
        return self.purge_at is not None and self.purge_at <= now

    def deletion_state(self, now: datetime) -> dict[str, Any]:
        return {
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
            "purge_at": self.purge_at.isoformat() if self.purge_at else None,
            "purged": self.purged(now),
        }


# --- Bandwidth --------------------------------------------------------------------------------------


@dataclass
class RealtimeTranscription(Deletable):
    account_id: str
    call_id: str
    transcription_id: str
    name: str
    start_time: datetime
    completed_time: datetime
    tracks: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        """``callTranscriptionResponse``."""
        return {
            "accountId": self.account_id,
            "callId": self.call_id,
            "transcriptionId": self.transcription_id,
            "tracks": self.tracks,
        }


@dataclass
class RecordingTranscription(Deletable):
    transcription_id: str
    status: str  # none | processing | available | error | timeout | file-size-too-big | file-size-too-small
    completed_time: datetime | None
    transcripts: list[dict[str, Any]]
    clips: list[dict[str, Any]] | None
    legacy_shape: bool = False  # transcripts without ``speaker``, no clips (before 2026-06)
    available_at: datetime | None = None  # when a requested transcription finishes
    callback: dict[str, Any] | None = None  # where transcriptionAvailable goes
    notified: bool = True

    def body(self) -> dict[str, Any]:
        """``recordingTranscriptions``."""
        if self.legacy_shape:
            return {"transcripts": [{k: v for k, v in t.items() if k != "speaker"} for t in self.transcripts]}
        body: dict[str, Any] = {"transcripts": self.transcripts}
        if self.clips is not None:
            body["clips"] = self.clips
        return body


@dataclass
class Recording(Deletable):
    account_id: str
    call_id: str
    recording_id: str
    application_id: str
    from_: str
    to: str
    direction: str
    start_time: datetime
    duration: float
    channels: int
    file_format: str
    status: str  # complete | partial | error | processing
    seed: int
    name: str | None = None
    parent_call_id: str | None = None
    transcription: RecordingTranscription | None = None
    media_deleted_at: datetime | None = None
    media_purge_at: datetime | None = None

    @property
    def end_time(self) -> datetime:
        return self.start_time + timedelta(seconds=self.duration)

    @property
    def media_available(self) -> bool:
        return self.live and self.media_deleted_at is None and self.status in ("complete", "partial")

    @property
    def size(self) -> int:
        return media_size(self.duration, self.channels, self.file_format, self.seed)

    def urls(self, base_url: str) -> tuple[str, str]:
        root = f"{base_url}/accounts/{self.account_id}/calls/{self.call_id}/recordings/{self.recording_id}"
        return f"{root}/media", f"{root}/transcription"

    def metadata(self, base_url: str) -> dict[str, Any]:
        """``callRecordingMetadata``."""
        media_url, transcription_url = self.urls(base_url)
        body: dict[str, Any] = {
            "applicationId": self.application_id,
            "accountId": self.account_id,
            "callId": self.call_id,
            "recordingId": self.recording_id,
            "to": self.to,
            "from": self.from_,
            "duration": iso_duration(self.duration),
            "direction": self.direction,
            "channels": self.channels,
            "startTime": iso(self.start_time),
            "endTime": iso(self.end_time),
            "fileFormat": self.file_format,
            "status": self.status,
            "mediaUrl": media_url if self.media_available else None,
            "transcription": None,
        }
        if self.parent_call_id:
            body["parentCallId"] = self.parent_call_id
        if self.name:
            body["recordingName"] = self.name
        t = self.transcription
        if t is not None and t.live:
            body["transcription"] = {
                "id": t.transcription_id,
                "status": t.status,
                "url": transcription_url,
                **({"completedTime": iso(t.completed_time)} if t.completed_time else {}),
            }
        return body


# --- Twilio -------------------------------------------------------------------------------------------


@dataclass
class TwilioService(Deletable):
    sid: str
    account_sid: str
    unique_name: str
    friendly_name: str | None
    webhook_url: str | None
    webhook_http_method: str | None
    auto_transcribe: bool
    auto_redaction: bool
    media_redaction: bool
    language_code: str
    date_created: datetime
    date_updated: datetime
    version: int = 1


@dataclass
class TwilioTranscript(Deletable):
    sid: str
    account_sid: str
    service_sid: str
    created_at: datetime
    channel: dict[str, Any]
    customer_key: str | None
    language_code: str
    sentence_count: int
    operator_result_count: int
    queued_seconds: float
    processing_seconds: float
    fails: bool
    media_seed: int
    media_duration: float
    redaction: bool
    notified: bool = False

    def status(self, now: datetime) -> str:
        elapsed = (now - self.created_at).total_seconds()
        if elapsed < self.queued_seconds:
            return "queued"
        if elapsed < self.queued_seconds + self.processing_seconds:
            return "in-progress"
        return "failed" if self.fails else "completed"

    @property
    def finished_at(self) -> datetime:
        return self.created_at + timedelta(seconds=self.queued_seconds + self.processing_seconds)


@dataclass
class AuditEntry:
    seq: int
    time: str
    monotonic: float
    method: str
    path: str
    query: str
    status: int
    bytes: int
    note: str = ""
    #: Who the request authenticated as: the Bandwidth client id, or the Twilio SID (AC or SK).
    credential: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


#: The order in which the capped account recordings list answers. Bandwidth documents none, so the
#: archiver must find everything whichever it is.
ListOrder = Literal["oldest-first", "newest-first", "shuffled"]
LIST_ORDERS: tuple[str, ...] = ("oldest-first", "newest-first", "shuffled")
