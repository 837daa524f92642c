"""What the simulator sends on its own: callbacks simulated time makes due (a requested recording
transcription becoming available, a Twilio transcript completing), and the webhooks the admin API
asks for, only ever to configured targets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

from archiver.simulator.config import SimulatorConfig
from archiver.simulator.credentials import TwilioAccounts
from archiver.simulator.resources import Recording
from archiver.simulator.state import World
from archiver.simulator.webhooks import (
    IntakeTarget,
    deliver_bandwidth,
    deliver_twilio,
    realtime_available_event,
    realtime_rejected_event,
    record_complete_event,
    recording_available_event,
    transcript_available_params,
    transcription_available_event,
)

__all__ = ["Deliveries"]

log = logging.getLogger("archiver.simulator")


class Deliveries:
    def __init__(self, world: World, config: SimulatorConfig, accounts: TwilioAccounts) -> None:
        self.world = world
        self.config = config
        self.accounts = accounts
        #: Held while a tick claims and delivers what became due, and by ``/admin/reset``: a reset
        #: waits for the callbacks already on their way, so none of them arrives after it.
        self.lock = asyncio.Lock()

    async def tick(self) -> dict[str, int]:
        """Deliver what simulated time made due (each callback once, whichever tick finds it)."""
        async with self.lock:
            return await self._deliver_due()

    async def _deliver_due(self) -> dict[str, int]:
        now = self.world.clock.now()
        delivered = {"transcription_available": 0, "twilio_transcript_available": 0}
        due_recordings = [
            r
            for r in self.world.recordings.values()
            if r.transcription is not None
            and not r.transcription.notified
            and r.transcription.available_at is not None
            and r.transcription.available_at <= now
        ]
        due_transcripts = [
            t for t in self.world.transcripts.values() if not t.notified and t.finished_at <= now and t.live
        ]
        if not due_recordings and not due_transcripts:
            return delivered
        # Claimed before the first await: each callback goes out once, whichever tick (the
        # background loop's or /admin/tick) finds it.
        for recording in due_recordings:
            assert recording.transcription is not None
            recording.transcription.notified = True
        for transcript in due_transcripts:
            transcript.notified = True
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as client:
            for recording in due_recordings:
                t = recording.transcription
                assert t is not None and t.available_at is not None
                t.status, t.completed_time = "available", t.available_at
                callback = t.callback or {}
                target = self.bandwidth_target(
                    callback.get("url"),
                    callback.get("username"),
                    callback.get("password"),
                    callback.get("method", "POST"),
                )
                if self.config.drop_callbacks:
                    log.info("dropped transcriptionAvailable for %s (drop_callbacks)", recording.recording_id)
                elif target is not None and recording.live:
                    body = transcription_available_event(recording, self.config.bandwidth_base_url)
                    if callback.get("tag"):
                        body["tag"] = callback["tag"]
                    await self.send_bandwidth(client, target, body)
                    delivered["transcription_available"] += 1
            for transcript in due_transcripts:
                if transcript.fails:
                    continue
                service = self.world.services.get(transcript.service_sid)
                url = (service.webhook_url if service else None) or self.config.twilio_intake_url
                if url and not self.config.drop_callbacks:
                    method = (service.webhook_http_method if service else None) or "POST"
                    params = transcript_available_params(transcript)
                    fmt = self.config.twilio_webhook_format
                    await self.send_twilio(
                        client, url, method, fmt, params, account_sid=transcript.account_sid
                    )
                    delivered["twilio_transcript_available"] += 1
        return delivered

    def bandwidth_target(
        self, url: str | None, username: str | None, password: str | None, method: str = "POST"
    ) -> IntakeTarget | None:
        if url:
            return IntakeTarget(self.config.webhook_target(url), username, password, method)
        if self.config.intake is not None:
            return IntakeTarget(
                self.config.intake.url, self.config.intake.username, self.config.intake.password, method
            )
        return None

    async def send_bandwidth(
        self,
        client: httpx.AsyncClient,
        target: IntakeTarget,
        body: dict[str, Any],
        times: int | None = None,
    ) -> list[dict[str, Any]]:
        results = []
        for _ in range(times or (2 if self.config.duplicate_webhooks else 1)):
            outcome = await deliver_bandwidth(client, target, body)
            log.info("webhook %s -> %s: %s", body["eventType"], target.url, outcome)
            results.append(outcome)
        return results

    async def send_twilio(
        self,
        client: httpx.AsyncClient,
        url: str,
        method: str,
        fmt: Any,
        params: dict[str, str],
        signing_token: str | None = None,
        account_sid: str | None = None,
    ) -> dict[str, Any]:
        """Signed as Twilio signs: with the primary auth token of the transcript's account (unless
        told otherwise)."""
        account = self.accounts.get(account_sid or "") or self.accounts.default
        token = signing_token or account.auth_token
        outcome = await deliver_twilio(client, url, method, fmt, token, params)
        log.info("webhook twilio transcript_available -> %s: %s", url, outcome)
        return outcome

    async def on_request(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``POST /admin/webhooks``: the events asked for, to a configured target."""
        event = body.get("event", "available")
        if body.get("intake_url"):
            self.config.webhook_target(body["intake_url"])  # nowhere but a configured target, checked first
        wanted = set(body.get("ids") or [])
        times = 2 if body.get("duplicate") else 1
        results: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as client:
            if event == "twilio":
                for t in list(self.world.transcripts.values()):
                    if wanted and t.sid not in wanted:
                        continue
                    service = self.world.services.get(t.service_sid)
                    url = (
                        (self.config.webhook_target(body["intake_url"]) if body.get("intake_url") else None)
                        or (service.webhook_url if service else None)
                        or self.config.twilio_intake_url
                    )
                    if not url:
                        raise ValueError("no intake_url given and no webhook URL configured")
                    method = (
                        body.get("method") or (service.webhook_http_method if service else None) or "POST"
                    )
                    fmt = body.get("format", self.config.twilio_webhook_format)
                    account = self.accounts.get(t.account_sid) or self.accounts.default
                    signing = body.get("signing_token") or (
                        account.secondary_auth_token if body.get("sign_with") == "secondary" else None
                    )
                    for _ in range(times):
                        params = transcript_available_params(t)
                        outcome = await self.send_twilio(
                            client, url, method, fmt, params, signing, account_sid=t.account_sid
                        )
                        results.append({"id": t.sid, **outcome})
                return results
            target = self.bandwidth_target(
                body.get("intake_url"), body.get("username"), body.get("password"), body.get("method", "POST")
            )
            if target is None:
                raise ValueError("no intake_url given and none configured")
            for payload, ident in self._bandwidth_events(event, body, wanted):
                for outcome in await self.send_bandwidth(client, target, payload, times):
                    results.append({"id": ident, **outcome})
        return results

    def _bandwidth_events(
        self, event: str, body: dict[str, Any], wanted: set[str]
    ) -> list[tuple[dict[str, Any], str]]:
        base = self.config.bandwidth_base_url
        if event in ("available", "rejected"):
            out = []
            for t in list(self.world.realtime.values()):
                if wanted and t.transcription_id not in wanted:
                    continue
                if event == "rejected":
                    rejected_id = self.world.new_id("s")
                    out.append(
                        (
                            realtime_rejected_event(t, base, rejected_id, body.get("cause", "duplicate")),
                            rejected_id,
                        )
                    )
                else:
                    out.append(
                        (
                            realtime_available_event(t, base, body.get("key", "realTimeTranscription")),
                            t.transcription_id,
                        )
                    )
            return out
        builders: dict[str, Callable[[Recording], dict[str, Any] | None]] = {
            "recordComplete": lambda r: record_complete_event(r, base, "recordComplete"),
            "recordingComplete": lambda r: record_complete_event(r, base, "recordingComplete"),
            "recordingAvailable": lambda r: recording_available_event(r, base, body.get("status")),
            "transcriptionAvailable": lambda r: (
                transcription_available_event(r, base, body.get("shape", "docs"))
                if r.transcription is not None
                else None
            ),
        }
        if event not in builders:
            raise ValueError(f"unknown event {event!r}")
        out = []
        for r in list(self.world.recordings.values()):
            if wanted and r.recording_id not in wanted:
                continue
            payload = builders[event](r)
            if payload is not None:
                if body.get("media_url"):
                    payload["mediaUrl"] = body["media_url"]
                out.append((payload, r.recording_id))
        return out
