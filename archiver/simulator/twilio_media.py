"""Twilio's downloads: media and encrypted content at pre-signed URLs (``Token`` in the query) on
the media host, as Twilio's ``media_url`` and encrypted ``location`` are; a wrong or non-ASCII token
is a 404."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from archiver.simulator.credentials import TwilioCredentials
from archiver.simulator.media import CONTENT_TYPES, iter_media, media_size
from archiver.simulator.resources import TwilioTranscript
from archiver.simulator.state import World
from archiver.simulator.twilio_common import raw, twilio_error

__all__ = ["TwilioDownloads"]


class TwilioDownloads:
    def __init__(self, world: World, credentials: TwilioCredentials, media_base_url: str) -> None:
        self.world = world
        self.media_base_url = media_base_url.rstrip("/")
        # Pre-signed media URLs stay valid while the auth token is rotated: keyed once.
        self._media_key = hashlib.sha256(f"media:{credentials.auth_token}".encode()).digest()

    def token(self, sid: str) -> str:
        return hmac.new(self._media_key, sid.encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, t: TwilioTranscript) -> str:
        return f"{self.media_base_url}/media/twilio/{t.sid}.wav?Token={self.token(t.sid)}"

    def encrypted_url(self, transcript: TwilioTranscript, name: str) -> str:
        token = self.token(f"{transcript.sid}/{name}")
        return f"{self.media_base_url}/media/twilio/{transcript.sid}/encrypted/{name}?Token={token}"

    async def encrypted_download(self, request: Request) -> Response:
        """An opaque blob standing for the public-key-encrypted content (pre-signed, as media)."""
        sid, name = request.path_params["sid"], request.path_params["name"]
        transcript = self.world.transcripts.get(sid)
        token = request.query_params.get("Token", "")
        if (
            transcript is None
            or not transcript.live
            or not hmac.compare_digest(raw(token), self.token(f"{sid}/{name}").encode())
        ):
            return twilio_error(404, "Encrypted content not found")
        blob = b"".join(hashlib.sha256(f"{sid}:{name}:{i}".encode()).digest() for i in range(32))
        return Response(blob, media_type="application/octet-stream")

    async def media_download(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        transcript = self.world.transcripts.get(sid)
        token = request.query_params.get("Token", "")
        valid = hmac.compare_digest(raw(token), self.token(sid).encode())
        if transcript is None or not transcript.live or not valid:
            return twilio_error(404, "Media not found")
        size = media_size(transcript.media_duration, 1, "wav", transcript.media_seed)
        return StreamingResponse(
            iter_media(transcript.media_duration, 1, "wav", transcript.media_seed),
            media_type=CONTENT_TYPES["wav"],
            headers={"Content-Length": str(size)},
        )

    def routes(self, audited: Callable[[Any], Any]) -> list[Route]:
        return [
            Route("/media/twilio/{sid}.wav", audited(self.media_download), methods=["GET"]),
            Route("/media/twilio/{sid}/encrypted/{name}", audited(self.encrypted_download), methods=["GET"]),
        ]
