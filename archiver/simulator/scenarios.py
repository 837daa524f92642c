"""Seeded populations with a realistic mix, for tests, the demo, benchmarks and staging.

Durations from 0.3 s to over 4 h (most a few minutes), one and two channels, wav and mp3, some
partial or failed; real-time transcriptions; Twilio transcripts; and bursts: many recordings
inside one short window (down to one millisecond) to exercise the 1000-entry list cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.core.timestamps import parse_timestamp
from archiver.simulator.exposure import bounded_count
from archiver.simulator.state import World


@dataclass
class Burst:
    at: datetime
    count: int
    span_ms: int = 0  # 0: all in the same millisecond


@dataclass
class Scenario:
    account_id: str
    recordings: int = 0
    since: datetime | None = None
    until: datetime | None = None
    bursts: list[Burst] = field(default_factory=list)
    realtime: int = 0
    twilio_transcripts: int = 0
    twilio_service_sid: str | None = None
    media_max_seconds: float | None = None  # cap durations (benchmarks that must not download 4 h)

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_account: str) -> Scenario:
        def when(name: str) -> datetime | None:
            if data.get(name) is None:
                return None
            value = parse_timestamp(data[name])
            if value is None:
                raise ValueError(f"{name} is not an ISO-8601 date-time")
            return value

        bursts = []
        for burst in data.get("bursts", []):
            at = parse_timestamp(burst.get("at"))
            if at is None:
                raise ValueError("burst.at is not an ISO-8601 date-time")
            count = bounded_count(burst["count"], "bursts[].count")
            bursts.append(Burst(at=at, count=count, span_ms=int(burst.get("span_ms", 0))))
        return cls(
            account_id=str(data.get("account_id", default_account)),
            recordings=bounded_count(data.get("recordings", 0), "recordings"),
            since=when("since"),
            until=when("until"),
            bursts=bursts,
            realtime=bounded_count(data.get("realtime", 0), "realtime"),
            twilio_transcripts=bounded_count(data.get("twilio_transcripts", 0), "twilio_transcripts"),
            twilio_service_sid=data.get("twilio_service_sid"),
            media_max_seconds=data.get("media_max_seconds"),
        )


def realistic_duration(world: World) -> float:
    roll = world.rng.random()
    if roll < 0.03:
        seconds = world.rng.uniform(0.3, 0.5)  # too short to transcribe
    elif roll < 0.73:
        seconds = world.rng.uniform(5, 600)
    elif roll < 0.93:
        seconds = world.rng.uniform(600, 3600)
    elif roll < 0.98:
        seconds = world.rng.uniform(3600, 4 * 3600)
    else:
        seconds = world.rng.uniform(4 * 3600, 4.5 * 3600)  # too long to transcribe
    return round(seconds, 3)


def realistic_status(world: World) -> str:
    roll = world.rng.random()
    return "error" if roll < 0.02 else "partial" if roll < 0.07 else "complete"


def _ms(ts: datetime) -> datetime:
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def populate(world: World, scenario: Scenario) -> dict[str, Any]:
    now = world.clock.now()
    until = scenario.until or now
    since = scenario.since or until - timedelta(days=1)
    span = (until - since).total_seconds()
    starts = [_ms(since + timedelta(seconds=world.rng.uniform(0, span))) for _ in range(scenario.recordings)]
    for burst in scenario.bursts:
        starts += [
            _ms(burst.at + timedelta(milliseconds=world.rng.randrange(max(1, burst.span_ms))))
            for _ in range(burst.count)
        ]
    for start in starts:
        duration = realistic_duration(world)
        if scenario.media_max_seconds is not None:
            duration = min(duration, scenario.media_max_seconds)
        world.add_recording(
            scenario.account_id, start_time=start, duration=duration, status=realistic_status(world)
        )
    for _ in range(scenario.realtime):
        world.add_realtime_transcription(scenario.account_id)
    service_sid = scenario.twilio_service_sid
    if scenario.twilio_transcripts and (service_sid is None or service_sid not in world.services):
        service_sid = world.add_service(f"scenario-{world.seed}").sid
    for _ in range(scenario.twilio_transcripts):
        assert service_sid is not None
        world.add_transcript(
            service_sid,
            {"media_properties": {"source_sid": world.new_sid("RE")}},
            created_at=now - timedelta(seconds=world.rng.uniform(60, 86400)),
        )
    return {
        "recordings": len(starts),
        "realtime": scenario.realtime,
        "twilio_transcripts": scenario.twilio_transcripts,
        "twilio_service_sid": service_sid,
        "since": since.astimezone(UTC).isoformat(),
        "until": until.astimezone(UTC).isoformat(),
    }
