"""The simulator's in-memory world: its resources (:mod:`archiver.simulator.resources`), a clock
that can be advanced, an audit log.

Deletion is deferred as at the providers: a deleted resource answers 404 at once but is kept
"physically" until a purge time 24 to 48 h later on the simulator's clock (readable over admin).
"""

from __future__ import annotations

import bisect
import hashlib
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.simulator.resources import (
    REDACTABLE,
    WORDS,
    AuditEntry,
    Deletable,
    ListOrder,
    RealtimeTranscription,
    Recording,
    RecordingTranscription,
    SimClock,
    TwilioService,
    TwilioTranscript,
    iso,
)


@dataclass
class World:
    seed: int = 1
    bandwidth_account_id: str = "9900000"
    twilio_account_sid: str = "AC" + "0" * 32
    list_order: ListOrder = "oldest-first"
    clock: SimClock = field(default_factory=SimClock)
    realtime: dict[tuple[str, str, str], RealtimeTranscription] = field(default_factory=dict)
    recordings: dict[tuple[str, str, str], Recording] = field(default_factory=dict)
    #: Per account: (start_time, recording_id, call_id) sorted, for the time-windowed list.
    recording_index: dict[str, list[tuple[datetime, str, str]]] = field(default_factory=dict)
    services: dict[str, TwilioService] = field(default_factory=dict)
    transcripts: dict[str, TwilioTranscript] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self.rng = random.Random(self.seed)
        for collection in (
            self.realtime,
            self.recordings,
            self.recording_index,
            self.services,
            self.transcripts,
        ):
            collection.clear()
        self.audit.clear()
        self.clock.offset = 0.0

    # --- ids and content ---------------------------------------------------------------------------

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def new_id(self, prefix: str) -> str:
        """Bandwidth-shaped id: ``{prefix}-8hex-8hex-4-4-4-12``."""
        return prefix + "".join(f"-{self._hex(n)}" for n in (8, 8, 4, 4, 4, 12))

    def new_sid(self, prefix: str) -> str:
        """Twilio SID: two letters and 32 hex digits."""
        return prefix + self._hex(32)

    def sentence(self, rng: random.Random | None = None) -> str:
        rng = rng or self.rng
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        return " ".join(words).capitalize() + "."

    def phone(self) -> str:
        return "+1" + "".join(self.rng.choice("0123456789") for _ in range(10))

    # --- Bandwidth real-time transcriptions -----------------------------------------------------

    def add_realtime_transcription(
        self, account_id: str, call_id: str | None = None, tracks: tuple[str, ...] = ("inbound", "outbound")
    ) -> RealtimeTranscription:
        call_id = call_id or self.new_id("c")
        started = self.clock.now() - timedelta(seconds=self.rng.randint(30, 600))
        transcription = RealtimeTranscription(
            account_id=account_id,
            call_id=call_id,
            transcription_id=self.new_id("t"),
            name=f"live_transcription_{len(self.realtime)}",
            start_time=started,
            completed_time=started + timedelta(seconds=self.rng.randint(10, 300)),
            tracks=[
                {
                    "detectedLanguage": self.rng.choice(["en-US", "en-US", "es-US", "fr-FR"]),
                    "track": track,
                    "transcript": " ".join(self.sentence() for _ in range(self.rng.randint(1, 5))),
                    "confidence": round(self.rng.uniform(0.6, 0.99), 2),
                }
                for track in tracks
            ],
        )
        self.realtime[(account_id, call_id, transcription.transcription_id)] = transcription
        return transcription

    # --- Bandwidth recordings -------------------------------------------------------------------------

    def add_recording(
        self,
        account_id: str,
        *,
        start_time: datetime | None = None,
        duration: float | None = None,
        channels: int | None = None,
        file_format: str | None = None,
        status: str = "complete",
        call_id: str | None = None,
        with_transcription: bool | None = None,
        clips: bool = True,
        legacy_transcription: bool = False,
        to: str | None = None,
        from_: str | None = None,
    ) -> Recording:
        rng = self.rng
        if duration is None:
            duration = round(
                rng.choice([rng.uniform(0.3, 5), rng.uniform(5, 600), rng.uniform(600, 3600)]), 3
            )
        channels = channels or rng.choice([1, 2])
        recording = Recording(
            account_id=account_id,
            call_id=call_id or self.new_id("c"),
            recording_id=self.new_id("r"),
            application_id="04e88489-df02-4e34-a0ee-27a91849555f",
            from_=from_ or self.phone(),
            to=to or self.phone(),
            direction=rng.choice(["inbound", "outbound"]),
            start_time=start_time
            or (self.clock.now() - timedelta(seconds=duration + rng.randint(60, 86400))),
            duration=duration,
            channels=channels,
            file_format=file_format or rng.choice(["wav", "wav", "mp3"]),
            status=status,
            seed=rng.randrange(2**31),
            name=f"recording-{len(self.recordings)}",
        )
        if with_transcription is None:
            with_transcription = status in ("complete", "partial") and 0.5 < duration < 4 * 3600
        if with_transcription:
            recording.transcription = self.make_recording_transcription(
                recording, clips, legacy_transcription
            )
        self.recordings[(account_id, recording.call_id, recording.recording_id)] = recording
        bisect.insort(
            self.recording_index.setdefault(account_id, []),
            (recording.start_time, recording.recording_id, recording.call_id),
        )
        return recording

    def make_recording_transcription(
        self, recording: Recording, clips: bool = True, legacy: bool = False, status: str = "available"
    ) -> RecordingTranscription:
        rng = random.Random(recording.seed)
        transcripts, clip_list = [], []
        position = 0.0
        for speaker in range(recording.channels):
            transcripts.append(
                {
                    "speaker": speaker,
                    "text": " ".join(self.sentence(rng) for _ in range(2)),
                    "confidence": round(rng.uniform(0.7, 0.99), 2),
                }
            )
        for index in range(rng.randint(1, 6)):
            length = rng.uniform(0.5, 4)
            clip_list.append(
                {
                    "speaker": index % recording.channels,
                    "text": self.sentence(rng),
                    "confidence": round(rng.uniform(0.7, 0.99), 2),
                    "startTimeSeconds": round(position, 2),
                    "endTimeSeconds": round(position + length, 2),
                }
            )
            position += length + 0.3
        return RecordingTranscription(
            transcription_id=self.new_id("t"),
            status=status,
            completed_time=recording.end_time + timedelta(seconds=30) if status == "available" else None,
            transcripts=transcripts,
            clips=clip_list if clips else None,
            legacy_shape=legacy,
        )

    def list_recordings(
        self,
        account_id: str,
        min_start: datetime | None,
        max_start: datetime | None,
        to: str | None,
        from_: str | None,
        cap: int = 1000,
    ) -> list[Recording]:
        """``minStartTime`` inclusive, ``maxStartTime`` exclusive, in ``list_order``, then capped."""
        index = self.recording_index.get(account_id, [])
        lo = bisect.bisect_left(index, (min_start,)) if min_start else 0
        hi = bisect.bisect_left(index, (max_start,)) if max_start else len(index)
        window = index[lo:hi]
        if self.list_order == "newest-first":
            window.reverse()
        elif self.list_order == "shuffled":
            random.Random(f"{self.seed}:{lo}:{hi}:{len(self.audit)}").shuffle(window)
        found: list[Recording] = []
        for _start, recording_id, call_id in window:
            recording = self.recordings[(account_id, call_id, recording_id)]
            if not recording.live or (to and recording.to != to) or (from_ and recording.from_ != from_):
                continue
            found.append(recording)
            if len(found) >= cap:
                break
        return found

    def purge_time(self) -> datetime:
        return self.clock.now() + timedelta(hours=self.rng.uniform(24, 48))

    def delete(self, resource: Deletable) -> None:
        resource.deleted_at = self.clock.now()
        resource.purge_at = self.purge_time()

    # --- Twilio -------------------------------------------------------------------------------------

    def add_service(self, unique_name: str, **fields: Any) -> TwilioService:
        now = self.clock.now()
        service = TwilioService(
            sid=self.new_sid("GA"),
            account_sid=fields.get("account_sid") or self.twilio_account_sid,
            unique_name=unique_name,
            friendly_name=fields.get("friendly_name"),
            webhook_url=fields.get("webhook_url"),
            webhook_http_method=fields.get("webhook_http_method")
            or ("POST" if fields.get("webhook_url") else None),
            auto_transcribe=bool(fields.get("auto_transcribe", False)),
            auto_redaction=bool(fields.get("auto_redaction", False)),
            media_redaction=bool(fields.get("media_redaction", False)),
            language_code=fields.get("language_code") or "en-US",
            date_created=now,
            date_updated=now,
        )
        self.services[service.sid] = service
        return service

    def add_transcript(self, service_sid: str, channel: dict[str, Any], **fields: Any) -> TwilioTranscript:
        rng = self.rng
        service = self.services.get(service_sid)
        transcript = TwilioTranscript(
            sid=self.new_sid("GT"),
            account_sid=service.account_sid if service else self.twilio_account_sid,
            service_sid=service_sid,
            created_at=fields.get("created_at") or self.clock.now(),
            channel=channel,
            customer_key=fields.get("customer_key"),
            language_code=service.language_code if service else "en-US",
            sentence_count=int(fields.get("sentences", rng.randint(5, 60))),
            operator_result_count=int(fields.get("operator_results", rng.randint(0, 3))),
            queued_seconds=float(fields.get("queued_seconds", 1.0)),
            processing_seconds=float(fields.get("processing_seconds", 2.0)),
            fails=bool(fields.get("fails", False)),
            media_seed=rng.randrange(2**31),
            media_duration=float(fields.get("media_duration", round(rng.uniform(5, 300), 2))),
            redaction=bool(service.auto_redaction) if service else False,
        )
        self.transcripts[transcript.sid] = transcript
        return transcript

    def sentence_at(self, transcript: TwilioTranscript, index: int, redacted: bool) -> dict[str, Any]:
        """Sentence ``index`` of a transcript, generated on demand (12,000 cost no memory)."""
        digest = hashlib.sha256(f"{transcript.sid}:{index}".encode()).digest()
        rng = random.Random(digest)
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        if redacted:
            words = ["[REDACTED]" if w in REDACTABLE else w for w in words]
        start = index * 3.0 + rng.uniform(0, 0.5)
        return {
            "media_channel": index % 2 + 1,
            "sentence_index": index,
            "start_time": f"{start:.2f}",
            "end_time": f"{start + 2.5:.2f}",
            "transcript": " ".join(words).capitalize() + ".",
            "sid": "GX" + hashlib.md5(digest, usedforsecurity=False).hexdigest(),
            "confidence": f"{rng.uniform(0.7, 0.99):.2f}",
            "words": [{"word": w, "start_time": None, "end_time": None} for w in words],
        }

    # --- audit ----------------------------------------------------------------------------------------

    def record(
        self,
        method: str,
        path: str,
        query: str,
        status: int,
        size: int,
        note: str = "",
        credential: str | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            seq=len(self.audit) + 1,
            time=iso(datetime.now(UTC)),
            monotonic=time.monotonic(),
            method=method,
            path=path,
            query=query,
            status=status,
            bytes=size,
            note=note,
            credential=credential,
        )
        self.audit.append(entry)
        return entry
