"""Pure functions: Retry-After, timestamps, ids, the retry policy, event parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from archiver.core.ids import InvalidId, validate
from archiver.core.timestamps import parse_timestamp
from archiver.intake.bandwidth import parse_bandwidth_event
from archiver.intake.untrusted import EventRejected
from archiver.pipeline.items import Action
from archiver.pipeline.retry import DeadLetter, PermanentStepError, Retry, RetryPolicy
from archiver.providers.errors import NotFound, ProviderRejected, ProviderUnavailable, RateLimited
from archiver.providers.retry_after import parse_retry_after
from archiver.storage.objects import VerificationFailed
from tests.support.oracles import twilio_signature

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("Sat, 21 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 21 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after(header, expected):
    assert parse_retry_after(header, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2022-06-30T18:55:02.489Z", datetime(2022, 6, 30, 18, 55, 2, 489000, tzinfo=UTC)),
        ("2019-09-13T16:49:40.500", datetime(2019, 9, 13, 16, 49, 40, 500000, tzinfo=UTC)),
        ("2019-09-13T18:49:40+02:00", datetime(2019, 9, 13, 16, 49, 40, tzinfo=UTC)),
        ("2019-09-13T16:49:40.123456789Z", datetime(2019, 9, 13, 16, 49, 40, 123456, tzinfo=UTC)),
        ("2019-09-13-16:48:27.198Z", None),  # the malformed doc example
        ("2019-02-30T00:00:00Z", None),
        (None, None),
        (12, None),
    ],
)
def test_lenient_timestamps(value, expected):
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("bandwidth_account", "9900000", True),
        ("bandwidth_account", "99a", False),
        ("bandwidth_call", "c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85", True),
        ("bandwidth_call", "c-../../etc", False),
        ("bandwidth_call", "c-a b", False),
        ("bandwidth_call", "c-" + "a" * 200, False),
        ("bandwidth_transcription", "t-3f758f24-c7a2fc78-7c91-401a-8b2e-e542f9c40d6b", True),
        ("bandwidth_transcription", "s-95ac90b3-a2b4fd9b-579c-4cc7-898e-3d257c7a042b", True),
        ("bandwidth_transcription", "r-1", False),
        ("bandwidth_transcription", "t-%2F", False),
        ("bandwidth_transcription", None, False),
        ("bandwidth_transcription", 12, False),
    ],
)
def test_id_validation(kind, value, ok):
    if ok:
        assert validate(kind, value) == value
    else:
        with pytest.raises(InvalidId):
            validate(kind, value)


POLICY = RetryPolicy(max_attempts=4, backoff_base=1.0, backoff_max=10.0)


def test_retry_policy_429_follows_retry_after_and_is_not_an_attempt():
    decision = POLICY.decide(RateLimited("429", retry_after=42), attempts_so_far=3)
    assert decision == Retry(delay=42, counts_as_attempt=False, reason=decision.reason)
    without = POLICY.decide(RateLimited("429", retry_after=None), attempts_so_far=0)
    assert isinstance(without, Retry) and 0.5 <= without.delay <= 1.0 and not without.counts_as_attempt


def test_retry_policy_backs_off_exponentially_with_jitter_and_caps():
    delays = [POLICY.decide(ProviderUnavailable("503"), n) for n in range(3)]
    assert all(isinstance(d, Retry) and d.counts_as_attempt for d in delays)
    assert 0.5 <= delays[0].delay <= 1 and 1 <= delays[1].delay <= 2 and 2 <= delays[2].delay <= 4
    assert all(POLICY.backoff(attempt) <= 10.0 for attempt in range(1, 40))
    assert isinstance(POLICY.decide(ProviderUnavailable("503"), 3), DeadLetter)


@pytest.mark.parametrize(
    "error",
    [NotFound("404"), ProviderRejected("403"), InvalidId("bad"), PermanentStepError("odd body")],
)
def test_retry_policy_dead_letters_permanent_errors_at_once(error):
    assert isinstance(POLICY.decide(error, 0), DeadLetter)


def test_retry_policy_counts_unexpected_errors_so_bugs_end_as_dead_letters():
    first = POLICY.decide(KeyError("boom"), 0)
    assert isinstance(first, Retry) and first.counts_as_attempt and first.reason.startswith("unexpected")
    assert isinstance(POLICY.decide(VerificationFailed("mismatch"), 3), DeadLetter)


REJECTED = {
    "eventType": "realTimeTranscriptionRejected",
    "accountId": "55555555",
    "callId": "c-95ac912f-68aacdd7-4a8e-4223-a7fd-020e02fa6bf2",
    "cause": "duplicate",
    "errorMessage": "A real-time transcription with the name x already exists",
    "eventTime": "2022-06-30T18:55:02.489Z",
    "transcription": {
        "name": "x",
        "id": "s-95ac90b3-a2b4fd9b-579c-4cc7-898e-3d257c7a042b",
        "tracks": ["outbound"],
    },
}


def test_rejected_event_parses_to_a_rejected_item_with_its_cause():
    event = parse_bandwidth_event(json.dumps(REJECTED).encode())
    assert event.item is not None
    assert event.item.action is Action.REJECT
    assert event.item.provider_id == "s-95ac90b3-a2b4fd9b-579c-4cc7-898e-3d257c7a042b"
    assert (
        event.item.outcome == "rejected: duplicate: A real-time transcription with the name x already exists"
    )


def test_failed_available_event_is_recorded_without_a_fetch():
    body = {**REJECTED, "eventType": "realTimeTranscriptionAvailable"}
    body["realTimeTranscription"] = {"id": "t-1", "status": "failed"}
    event = parse_bandwidth_event(json.dumps(body).encode())
    assert event.item is not None and event.item.action is Action.REJECT
    assert "failed" in (event.item.outcome or "")


def test_dedupe_key_ignores_key_order_but_not_the_event_time():
    first = parse_bandwidth_event(json.dumps(REJECTED).encode())
    reordered = parse_bandwidth_event(json.dumps(dict(reversed(list(REJECTED.items())))).encode())
    later = parse_bandwidth_event(json.dumps({**REJECTED, "eventTime": "2022-06-30T18:56:00Z"}).encode())
    assert first.dedupe_key == reordered.dedupe_key != later.dedupe_key
    assert len(first.dedupe_key) <= 255


def test_event_rejections_say_what_is_wrong():
    with pytest.raises(EventRejected, match="accountId"):
        parse_bandwidth_event(json.dumps({"eventType": "realTimeTranscriptionAvailable"}).encode())


def test_clock_offset_file(tmp_path):
    from archiver.core.clock import OffsetFileClock

    path = tmp_path / "offset"
    clock = OffsetFileClock(str(path))
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1
    path.write_text("3600")
    assert clock.now() - datetime.now(UTC) > timedelta(seconds=3599)


# --- media checks and recordings parsing ---------------------------------------------------------------


def test_wav_and_mp3_containers_are_checked():
    from archiver.simulator.media import iter_media
    from archiver.storage.media_checks import MediaInvalid, validate_container

    wav = b"".join(iter_media(2.0, 2, "wav", 5))
    validate_container(wav[:4096], len(wav), "wav", 2)
    with pytest.raises(MediaInvalid, match="RIFF header"):
        validate_container(wav[:4096], len(wav) - 10, "wav", 2)  # body shorter than announced
    with pytest.raises(MediaInvalid, match="channel"):
        validate_container(wav[:4096], len(wav), "wav", 1)
    with pytest.raises(MediaInvalid, match="RIFF"):
        validate_container(b"XXXX" + wav[4:4096], len(wav), "wav", 2)
    mp3 = b"".join(iter_media(2.0, 1, "mp3", 5))
    validate_container(mp3[:4096], len(mp3), "mp3", 1)
    with pytest.raises(MediaInvalid, match="frame sync"):
        validate_container(mp3[:20] + b"\x00" * 4000, len(mp3), "mp3", 1)


def test_part_size_grows_to_stay_within_10000_parts():
    from archiver.storage.media_upload import part_size_for

    five = 5 * 2**20
    assert part_size_for(None, five) == five
    assert part_size_for(460 * 2**20, five) == five
    assert part_size_for(100 * 2**30, five) == -(-100 * 2**30 // 10_000)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("PT13.67S", 13.67),
        ("PT1H2M3.5S", 3723.5),
        ("PT4H0M0S", 14400.0),
        ("P1DT1S", 86401.0),
        ("PT", None),
        ("13", None),
        (None, None),
    ],
)
def test_iso_durations(value, seconds):
    from archiver.pipeline.handlers.recordings import parse_duration

    assert parse_duration(value) == seconds


def test_recording_transcription_segments_label_the_channels_and_tolerate_the_legacy_shape():
    from archiver.pipeline.handlers.recordings import transcription_segments

    new = transcription_segments(
        {
            "transcripts": [
                {"speaker": 0, "text": "a", "confidence": 0.9},
                {"speaker": 1, "text": "b", "confidence": 0.8},
            ],
            "clips": [
                {"speaker": 1, "text": "b", "confidence": 0.8, "startTimeSeconds": 1.0, "endTimeSeconds": 2.5}
            ],
        }
    )
    assert [(s.kind, s.track, s.speaker) for s in new] == [
        ("transcript", "party_or_a_leg", 0),
        ("transcript", "playback_or_b_leg", 1),
        ("clip", "playback_or_b_leg", 1),
    ]
    assert new[2].start_seconds == 1.0 and new[2].end_seconds == 2.5
    legacy = transcription_segments(
        {"transcripts": [{"text": "Nice talking to you, friend!", "confidence": 0.9}]}
    )
    assert [(s.kind, s.speaker, s.text) for s in legacy] == [
        ("transcript", 0, "Nice talking to you, friend!")
    ]


def test_recording_events_map_to_actions():
    from archiver.intake.bandwidth import parse_bandwidth_event, parse_bandwidth_query

    base = {
        "accountId": "9900000",
        "callId": "c-1",
        "recordingId": "r-1",
        "eventTime": "2026-01-01T00:00:00Z",
    }
    cases = {
        ("recordComplete", None): Action.ARCHIVE_LATER,
        ("recordingComplete", None): Action.ARCHIVE_LATER,
        ("recordingAvailable", "complete"): Action.ARCHIVE,
        ("recordingAvailable", "partial"): Action.ARCHIVE,
        ("recordingAvailable", "error"): Action.REJECT,
        ("transcriptionAvailable", None): Action.TRANSCRIPTION,
    }
    for (event_type, status), action in cases.items():
        body = {**base, "eventType": event_type, **({"status": status} if status else {})}
        item = parse_bandwidth_event(json.dumps(body).encode()).item
        assert item is not None and item.action is action, event_type
        assert item.partial is (status == "partial")
    spec_shape = {
        **base,
        "eventType": "transcriptionAvailable",
        "transcription": {"speaker": 0, "text": "x", "confidence": 0.9},
    }
    assert parse_bandwidth_event(json.dumps(spec_shape).encode()).item.outcome is None
    failed = {
        **base,
        "eventType": "transcriptionAvailable",
        "transcription": {"id": "t-1", "status": "timeout"},
    }
    assert "timeout" in parse_bandwidth_event(json.dumps(failed).encode()).item.outcome
    via_get = parse_bandwidth_query(
        {**base, "eventType": "recordingAvailable", "status": "complete", "channels": "2"}
    )
    assert via_get.item.action is Action.ARCHIVE and via_get.item.provider_id == "r-1"
    with pytest.raises(EventRejected, match="recordingId"):
        parse_bandwidth_event(
            json.dumps({**base, "eventType": "recordingAvailable", "recordingId": "r-../x"}).encode()
        )


# --- Twilio signatures (docs/providers.md: webhook signatures) -----------------------------------------------------------


_sign = twilio_signature


def test_twilio_signature_with_and_without_the_default_port():
    from archiver.intake.twilio import signature_valid

    params = {"transcript_sid": "GT" + "1" * 32, "account_sid": "AC" + "2" * 32}
    form = {k: [v] for k, v in params.items()}
    url = "https://archiver.example.com/webhooks/twilio"
    assert signature_valid("tok", url, form, _sign("tok", url, params), None)
    assert signature_valid(
        "tok", url, form, _sign("tok", "https://archiver.example.com:443/webhooks/twilio", params), None
    )
    assert signature_valid(
        "tok", "https://archiver.example.com:443/webhooks/twilio", form, _sign("tok", url, params), None
    )
    assert not signature_valid("tok", url, form, _sign("other-token", url, params), None)
    assert not signature_valid(
        "tok", url, form, _sign("tok", url, {**params, "transcript_sid": "GT" + "3" * 32}), None
    )
    assert not signature_valid("tok", url, form, None, None)
    assert not signature_valid("tok", url, form, "", None)


def test_twilio_json_signature_binds_the_body_through_body_sha256():
    import hashlib

    from archiver.intake.twilio import signature_valid

    body = b'{"transcript_sid": "GT11111111111111111111111111111111"}'
    url = f"https://archiver.example.com/webhooks/twilio?bodySHA256={hashlib.sha256(body).hexdigest()}"
    good = _sign("tok", url, {})
    assert signature_valid("tok", url, {}, good, body)
    assert not signature_valid("tok", url, {}, good, body + b" ")  # the body changed
    unsigned = "https://archiver.example.com/webhooks/twilio?bodySHA256=" + "0" * 64
    assert not signature_valid("tok", unsigned, {}, _sign("tok", unsigned, {}), body)


def test_twilio_sids_and_media_hosts():
    from archiver.providers.twilio import host_allowed

    for kind, good in (
        ("twilio_transcript", "GT" + "a" * 32),
        ("twilio_account", "AC" + "0" * 32),
        ("twilio_service", "GA" + "F" * 32),
        ("twilio_recording", "RE" + "9" * 32),
    ):
        assert validate(kind, good) == good
        with pytest.raises(InvalidId):
            validate(kind, good[:-1])
        with pytest.raises(InvalidId):
            validate(kind, good[:2] + "g" * 32)
    assert host_allowed("https://media.twiliocdn.com/a.wav?sig=1", ["media.twiliocdn.com"])
    assert host_allowed("https://x.cdn.example/a.wav", ["*.cdn.example"])
    assert not host_allowed("https://cdn.example.evil/a.wav", ["*.cdn.example"])
    assert not host_allowed("https://127.0.0.1:9/a.wav", ["media.twiliocdn.com"])
    assert not host_allowed("file:///etc/passwd", ["media.twiliocdn.com"])
    # https on the default port only, unless an origin is listed exactly
    assert not host_allowed("http://media.twiliocdn.com/a.wav", ["media.twiliocdn.com"])
    assert not host_allowed("https://media.twiliocdn.com:8443/a.wav", ["media.twiliocdn.com"])
    assert host_allowed("https://media.twiliocdn.com:443/a.wav", ["media.twiliocdn.com"])
    assert not host_allowed("https://user:pw@media.twiliocdn.com/a.wav", ["media.twiliocdn.com"])
    assert host_allowed("http://127.0.0.1:9000/media/a.wav?Token=1", ["http://127.0.0.1:9000"])
    assert not host_allowed("http://127.0.0.1:9001/media/a.wav", ["http://127.0.0.1:9000"])
    assert not host_allowed("https://127.0.0.1:9000/media/a.wav", ["http://127.0.0.1:9000"])
    assert not host_allowed("http://127.0.0.1:9000/a.wav", ["127.0.0.1"])
    assert not host_allowed("https://h:99999/a.wav", ["h"])  # an invalid port: refused, not an error


def test_media_hosts_default_to_the_api_host_or_origin():
    from archiver.core.config import Settings

    assert Settings().twilio_media_host_patterns == ["intelligence.twilio.com"]
    assert Settings(twilio_base_url="http://127.0.0.1:9000").twilio_media_host_patterns == [
        "http://127.0.0.1:9000"
    ]
    listed = Settings(twilio_media_hosts="media.twiliocdn.com, http://127.0.0.1:9000/")
    assert listed.twilio_media_host_patterns == ["media.twiliocdn.com", "http://127.0.0.1:9000"]


def test_the_backfill_progress_bar_counts_archived_items_of_those_found():
    import io

    from tqdm import tqdm

    from archiver.cli.backfill import show_progress

    out = io.StringIO()
    status = {"state": "running", "found": 40, "archived": 10, "windows_done": 2, "list_requests": 3,
              "enqueued": 38, "skipped_known": 2}  # fmt: skip
    with tqdm(file=out, desc="run 7") as bar:
        show_progress(bar, status)
        assert (bar.n, bar.total) == (10, 40)
        show_progress(bar, {**status, "found": 0, "archived": 0})
        assert (bar.n, bar.total) == (0, 1)  # nothing found yet: an empty bar, not a division by zero
    text = out.getvalue()
    assert "run 7" in text and "10/40" in text and "list requests 3" in text and "already known 2" in text
