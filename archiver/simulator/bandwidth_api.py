"""Bandwidth Voice API (``/api/v2``): recordings, their media and transcriptions, real-time
transcriptions; OAuth 2.0 bearer tokens from ``/api/v1/oauth2/token`` (:mod:`.credentials`);
``{type, description, id}`` error bodies (docs/providers.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from archiver.core.timestamps import parse_timestamp
from archiver.simulator.credentials import BandwidthClients
from archiver.simulator.guard import ApiGuard
from archiver.simulator.media import CONTENT_TYPES, iter_media
from archiver.simulator.resources import Recording
from archiver.simulator.state import World

PREFIX = "/api/v2"
ERROR_TYPES = {
    400: "validation",
    401: "authentication-error",
    403: "authorization-error",
    404: "validation",
    405: "validation",
    415: "validation",
    429: "error",
    500: "internal-error",
    503: "system-overloaded",
}
DESCRIPTIONS = {
    401: "The credentials provided were invalid",
    403: "Access is denied",
    429: "Too many requests",
    500: "An unknown internal error occurred",
    503: "Managing too many concurrent calls",
}


def voice_error(
    status: int, description: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = {
        "type": ERROR_TYPES.get(status, "error"),
        "description": description or DESCRIPTIONS.get(status, "Request failed"),
        "id": None,
    }
    return JSONResponse(body, status_code=status, headers=headers)


class BandwidthApi:
    def __init__(
        self,
        world: World,
        guard_factory: Callable[..., ApiGuard],
        oauth: BandwidthClients,
        base_url: str,
        on_transcription_requested: Callable[[Recording], None],
    ) -> None:
        self.world = world
        self.base_url = base_url
        self.oauth = oauth
        self._on_transcription_requested = on_transcription_requested
        self.guard = guard_factory("bandwidth", self._authenticate, self._error, oauth.principal)
        # The token endpoint: the guard's faults and audit, its own client authentication.
        self.token_guard = guard_factory("bandwidth", lambda _request: "oauth", self._error)

    def _authenticate(self, request: Request) -> str | int | None:
        return self.oauth.authenticate(request, str(request.path_params.get("account_id", "")))

    @staticmethod
    def _error(status: int, _reason: str, headers: dict[str, str] | None) -> Response:
        return voice_error(status, None, headers)

    # --- lookups ---------------------------------------------------------------------------------

    def _recording(self, request: Request) -> Recording | None:
        p = request.path_params
        recording = self.world.recordings.get((p["account_id"], p["call_id"], p["recording_id"]))
        return recording if recording is not None and recording.live else None

    @staticmethod
    def _not_found(what: str, ident: str) -> Response:
        return voice_error(404, f"{what} [{ident}] not found")

    # --- recordings ------------------------------------------------------------------------------

    async def list_account_recordings(self, request: Request) -> Response:
        q = request.query_params
        bounds: dict[str, datetime | None] = {}
        for name in ("minStartTime", "maxStartTime"):
            value = q.get(name)
            bounds[name] = parse_timestamp(value) if value else None
            if value and bounds[name] is None:
                return voice_error(400, f"{name} is not a valid ISO8601 date-time")
        found = self.world.list_recordings(
            request.path_params["account_id"],
            bounds["minStartTime"],
            bounds["maxStartTime"],
            q.get("to"),
            q.get("from"),
        )
        return JSONResponse([r.metadata(self.base_url) for r in found])

    async def list_call_recordings(self, request: Request) -> Response:
        p = request.path_params
        found = [
            r
            for (account, call, _), r in self.world.recordings.items()
            if account == p["account_id"] and call == p["call_id"] and r.live
        ]
        found.sort(key=lambda r: r.start_time)
        return JSONResponse([r.metadata(self.base_url) for r in found])

    async def recording(self, request: Request) -> Response:
        recording = self._recording(request)
        if recording is None:
            return self._not_found("Recording", request.path_params["recording_id"])
        if request.method == "DELETE":
            # Metadata, media and transcription all become inaccessible now; purged later.
            self.world.delete(recording)
            if recording.transcription is not None and recording.transcription.live:
                self.world.delete(recording.transcription)
            return Response(status_code=204)
        return JSONResponse(recording.metadata(self.base_url))

    async def media(self, request: Request) -> Response:
        recording = self._recording(request)
        if recording is None or not recording.media_available:
            return self._not_found("Recording media", request.path_params["recording_id"])
        if request.method == "DELETE":
            recording.media_deleted_at = self.world.clock.now()
            recording.media_purge_at = self.world.purge_time()
            return Response(status_code=204)
        return StreamingResponse(
            iter_media(recording.duration, recording.channels, recording.file_format, recording.seed),
            media_type=CONTENT_TYPES[recording.file_format],
            headers={"Content-Length": str(recording.size)},
        )

    async def transcription(self, request: Request) -> Response:
        recording = self._recording(request)
        if recording is None:
            return self._not_found("Recording", request.path_params["recording_id"])
        if request.method == "POST":
            return await self._create_transcription(request, recording)
        t = recording.transcription
        if t is None or not t.live or t.status != "available":
            return self._not_found("Transcription for recording", recording.recording_id)
        if request.method == "DELETE":
            self.world.delete(t)
            return Response(status_code=204)
        return JSONResponse(t.body())

    async def _create_transcription(self, request: Request, recording: Recording) -> Response:
        try:
            body: Any = json.loads(await request.body() or b"null")
        except ValueError:
            return voice_error(400, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return voice_error(400, "A transcribeRecording body is required")
        if not (0.5 < recording.duration < 4 * 3600):
            return voice_error(
                400,
                "Transcription is only available for recordings longer than 500 "
                "milliseconds and shorter than 4 hours",
            )
        if not recording.media_available:
            return voice_error(400, "The recording has no media to transcribe")
        timeout = body.get("callbackTimeout")
        if timeout is not None and not (isinstance(timeout, int | float) and 1 <= timeout <= 25):
            return voice_error(400, "callbackTimeout must be between 1 and 25")
        transcription = self.world.make_recording_transcription(recording, status="processing")
        transcription.available_at = self.world.clock.now() + self._transcription_delay(recording)
        transcription.callback = {
            "url": body.get("callbackUrl"),
            "method": (body.get("callbackMethod") or "POST").upper(),
            "username": body.get("username"),
            "password": body.get("password"),
            "tag": body.get("tag"),
        }
        transcription.notified = False
        recording.transcription = transcription
        self._on_transcription_requested(recording)
        return Response(status_code=204)

    @staticmethod
    def _transcription_delay(recording: Recording) -> Any:
        from datetime import timedelta

        return timedelta(seconds=min(30.0, 1.0 + recording.duration / 600))

    async def update_recording_state(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return voice_error(400, "Request body is not valid JSON")
        if not isinstance(body, dict) or body.get("state") not in ("paused", "recording"):
            return voice_error(400, "state must be 'paused' or 'recording'")
        p = request.path_params
        calls = {call for (account, call, _) in self.world.recordings if account == p["account_id"]}
        calls |= {call for (account, call, _) in self.world.realtime if account == p["account_id"]}
        if p["call_id"] not in calls:
            return self._not_found("Call", p["call_id"])
        return Response(status_code=200)

    # --- real-time transcriptions -----------------------------------------------------------------

    async def list_realtime(self, request: Request) -> Response:
        p = request.path_params
        return JSONResponse(
            [
                {
                    "transcriptionId": t.transcription_id,
                    "transcriptionName": t.name,
                    "transcriptionUrl": f"{self.base_url}/accounts/{t.account_id}/calls/{t.call_id}"
                    f"/transcriptions/{t.transcription_id}",
                }
                for t in self.world.realtime.values()
                if t.account_id == p["account_id"] and t.call_id == p["call_id"] and t.live
            ]
        )

    async def realtime(self, request: Request) -> Response:
        p = request.path_params
        found = self.world.realtime.get((p["account_id"], p["call_id"], p["transcription_id"]))
        if found is None or not found.live:
            return self._not_found("Transcription", p["transcription_id"])
        if request.method == "DELETE":
            self.world.delete(found)
            return Response(status_code=200)  # documented: 200, not 204
        return JSONResponse(found.body())

    async def not_found(self, request: Request) -> Response:
        return voice_error(404, f"Resource {request.url.path} not found")

    def routes(self) -> list[Route]:
        g = self.guard
        base = PREFIX + "/accounts/{account_id}"
        call = base + "/calls/{call_id}"
        rec = call + "/recordings/{recording_id}"
        return [
            Route("/api/v1/oauth2/token", self.token_guard(self.oauth.token_endpoint), methods=["POST"]),
            Route(base + "/recordings", g(self.list_account_recordings), methods=["GET"]),
            Route(call + "/recording", g(self.update_recording_state), methods=["PUT"]),
            Route(call + "/recordings", g(self.list_call_recordings), methods=["GET"]),
            Route(rec, g(self.recording), methods=["GET", "DELETE"]),
            Route(rec + "/media", g(self.media), methods=["GET", "DELETE"]),
            Route(rec + "/transcription", g(self.transcription), methods=["GET", "POST", "DELETE"]),
            Route(call + "/transcriptions", g(self.list_realtime), methods=["GET"]),
            Route(call + "/transcriptions/{transcription_id}", g(self.realtime), methods=["GET", "DELETE"]),
            Route(
                PREFIX + "/{rest:path}", g(self.not_found), methods=["GET", "POST", "PUT", "DELETE", "PATCH"]
            ),
        ]
