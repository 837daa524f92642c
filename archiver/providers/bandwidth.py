"""Bandwidth Voice API client (httpx, Basic auth, explicit timeouts).

URLs are built only from the configured base URL and validated ids; a URL found in a webhook body
is never fetched. Responses are classified into :mod:`archiver.providers.errors`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import httpx

from archiver.clock import Clock, SystemClock
from archiver.ids import validate
from archiver.providers.errors import NotFound, ProviderUnavailable
from archiver.providers.http import raise_for_response

log = logging.getLogger(__name__)


class DeleteOutcome(StrEnum):
    DELETED = "deleted"
    ALREADY_GONE = "already_gone"


@dataclass(frozen=True)
class FetchedDocument:
    """A provider response body exactly as served, and its parsed JSON."""

    body: bytes
    content_type: str
    data: Any


def _describe_error(response: httpx.Response) -> str:
    """The provider's ``{type, description}``, or a short excerpt of whatever came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("type" in body or "description" in body):
        return f"{body.get('type')}: {body.get('description')}"
    return response.text[:200]


class BandwidthClient:
    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._clock = clock or SystemClock()
        self._http = httpx.Client(
            auth=httpx.BasicAuth(username, password),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "call-archiver"},
        )

    def close(self) -> None:
        self._http.close()

    # --- URLs ---------------------------------------------------------------------------------------

    def realtime_transcription_url(self, account_id: str, call_id: str, transcription_id: str) -> str:
        account_id = validate("bandwidth_account", account_id)
        call_id = validate("bandwidth_call", call_id)
        transcription_id = validate("bandwidth_transcription", transcription_id)
        return f"{self.base_url}/accounts/{account_id}/calls/{call_id}/transcriptions/{transcription_id}"

    def recording_url(self, account_id: str, call_id: str, recording_id: str) -> str:
        account_id = validate("bandwidth_account", account_id)
        call_id = validate("bandwidth_call", call_id)
        recording_id = validate("bandwidth_recording", recording_id)
        return f"{self.base_url}/accounts/{account_id}/calls/{call_id}/recordings/{recording_id}"

    # --- recordings -------------------------------------------------------------------------------

    def get_recording(self, account_id: str, call_id: str, recording_id: str) -> FetchedDocument:
        """``callRecordingMetadata``."""
        return self._get_json(self.recording_url(account_id, call_id, recording_id))

    def get_recording_transcription(
        self, account_id: str, call_id: str, recording_id: str
    ) -> FetchedDocument:
        """``recordingTranscriptions``."""
        return self._get_json(self.recording_url(account_id, call_id, recording_id) + "/transcription")

    @contextmanager
    def stream_media(self, account_id: str, call_id: str, recording_id: str) -> Iterator[httpx.Response]:
        """The media response, streaming; errors are raised before the body is read."""
        url = self.recording_url(account_id, call_id, recording_id) + "/media"
        try:
            with self._http.stream("GET", url) as response:
                if not 200 <= response.status_code < 300:
                    response.read()
                    self._raise_for(response, "GET", url)
                yield response
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from exc

    def request_transcription(
        self,
        account_id: str,
        call_id: str,
        recording_id: str,
        *,
        callback_url: str,
        username: str,
        password: str,
    ) -> None:
        """``POST …/transcription`` (204); the result arrives on ``transcriptionAvailable``."""
        url = self.recording_url(account_id, call_id, recording_id) + "/transcription"
        body = {
            "callbackUrl": callback_url,
            "callbackMethod": "POST",
            "username": username,
            "password": password,
            "tag": recording_id,
        }
        self._request("POST", url, json_body=body)

    def delete_recording(self, account_id: str, call_id: str, recording_id: str) -> DeleteOutcome:
        """Deletes metadata, media and transcription (204); 404: already gone."""
        return self._delete(self.recording_url(account_id, call_id, recording_id))

    def delete_recording_media(self, account_id: str, call_id: str, recording_id: str) -> DeleteOutcome:
        return self._delete(self.recording_url(account_id, call_id, recording_id) + "/media")

    def recording_exists(self, account_id: str, call_id: str, recording_id: str) -> bool:
        return self._exists(self.recording_url(account_id, call_id, recording_id))

    def media_exists(self, account_id: str, call_id: str, recording_id: str) -> bool:
        try:
            with self.stream_media(account_id, call_id, recording_id):
                return True  # the body is not read: closing the stream is enough
        except NotFound:
            return False

    # --- real-time transcriptions -------------------------------------------------------------------

    def get_realtime_transcription(
        self, account_id: str, call_id: str, transcription_id: str
    ) -> FetchedDocument:
        return self._get_json(self.realtime_transcription_url(account_id, call_id, transcription_id))

    def delete_realtime_transcription(
        self, account_id: str, call_id: str, transcription_id: str
    ) -> DeleteOutcome:
        """DELETE answers 200 (as documented) or 204; 404 means it is already gone."""
        return self._delete(self.realtime_transcription_url(account_id, call_id, transcription_id))

    def realtime_transcription_exists(self, account_id: str, call_id: str, transcription_id: str) -> bool:
        return self._exists(self.realtime_transcription_url(account_id, call_id, transcription_id))

    # --- plumbing -----------------------------------------------------------------------------------

    def _get_json(self, url: str) -> FetchedDocument:
        response = self._request("GET", url)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise ProviderUnavailable(f"GET {url}: body is not JSON", status=response.status_code) from exc
        return FetchedDocument(
            body=response.content,
            content_type=response.headers.get("content-type", "application/json"),
            data=data,
        )

    def _delete(self, url: str) -> DeleteOutcome:
        """DELETE answers 200 (real-time transcriptions, as documented) or 204; 404: already gone."""
        try:
            self._request("DELETE", url)
        except NotFound:
            return DeleteOutcome.ALREADY_GONE
        return DeleteOutcome.DELETED

    def _exists(self, url: str) -> bool:
        try:
            self._request("GET", url)
        except NotFound:
            return False
        return True

    def _request(self, method: str, url: str, json_body: object = None) -> httpx.Response:
        try:
            response = self._http.request(method, url, json=json_body)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if 200 <= response.status_code < 300:
            return response
        self._raise_for(response, method, url)

    def _raise_for(self, response: httpx.Response, method: str, url: str) -> NoReturn:
        raise_for_response(response, method, url, self._clock, _describe_error)
