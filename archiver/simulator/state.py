"""The simulator's in-memory world: resources, a clock that can be advanced, an audit log."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

WORDS = [
    "hello",
    "thanks",
    "calling",
    "about",
    "order",
    "account",
    "appointment",
    "tomorrow",
    "morning",
    "please",
    "confirm",
    "number",
    "yes",
    "no",
    "maybe",
    "transfer",
    "billing",
    "support",
    "great",
    "perfect",
    "talk",
    "soon",
    "goodbye",
    "question",
    "answer",
    "help",
]


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class SimClock:
    """Wall clock plus an offset that the admin API can advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class RealtimeTranscription:
    account_id: str
    call_id: str
    transcription_id: str
    name: str
    start_time: datetime
    completed_time: datetime
    tracks: list[dict[str, Any]]
    deleted_at: datetime | None = None
    purge_at: datetime | None = None

    def body(self) -> dict[str, Any]:
        """``callTranscriptionResponse``."""
        return {
            "accountId": self.account_id,
            "callId": self.call_id,
            "transcriptionId": self.transcription_id,
            "tracks": self.tracks,
        }


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

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class World:
    seed: int = 1
    clock: SimClock = field(default_factory=SimClock)
    realtime: dict[tuple[str, str, str], RealtimeTranscription] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self.rng = random.Random(self.seed)
        self.realtime.clear()
        self.audit.clear()
        self.clock.offset = 0.0

    # --- ids and content -----------------------------------------------------------------------------

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def new_id(self, prefix: str) -> str:
        """Bandwidth-shaped id: ``{prefix}-8hex-8hex-4-4-4-12``."""
        return prefix + "".join(f"-{self._hex(n)}" for n in (8, 8, 4, 4, 4, 12))

    def new_call_id(self) -> str:
        return self.new_id("c")

    def new_transcription_id(self, prefix: str = "t") -> str:
        return self.new_id(prefix)

    def _sentence(self) -> str:
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(4, 14))]
        return " ".join(words).capitalize() + "."

    def add_realtime_transcription(
        self, account_id: str, call_id: str | None = None, tracks: tuple[str, ...] = ("inbound", "outbound")
    ) -> RealtimeTranscription:
        call_id = call_id or self.new_call_id()
        transcription_id = self.new_transcription_id()
        started = self.clock.now() - timedelta(seconds=self.rng.randint(30, 600))
        transcription = RealtimeTranscription(
            account_id=account_id,
            call_id=call_id,
            transcription_id=transcription_id,
            name=f"live_transcription_{len(self.realtime)}",
            start_time=started,
            completed_time=started + timedelta(seconds=self.rng.randint(10, 300)),
            tracks=[
                {
                    "detectedLanguage": self.rng.choice(["en-US", "en-US", "es-US", "fr-FR"]),
                    "track": track,
                    "transcript": " ".join(self._sentence() for _ in range(self.rng.randint(1, 5))),
                    "confidence": round(self.rng.uniform(0.6, 0.99), 2),
                }
                for track in tracks
            ],
        )
        self.realtime[(account_id, call_id, transcription_id)] = transcription
        return transcription

    def delete_realtime(self, transcription: RealtimeTranscription) -> None:
        """Deferred deletion: gone from the API now, purged 24 to 48 h later on the simulator's clock."""
        now = self.clock.now()
        transcription.deleted_at = now
        transcription.purge_at = now + timedelta(hours=self.rng.uniform(24, 48))

    def record(self, method: str, path: str, query: str, status: int, size: int) -> None:
        self.audit.append(
            AuditEntry(
                seq=len(self.audit) + 1,
                time=iso(datetime.now(UTC)),
                monotonic=time.monotonic(),
                method=method,
                path=path,
                query=query,
                status=status,
                bytes=size,
            )
        )
