"""Bandwidth Voice API client (httpx, OAuth 2.0 client credentials, explicit timeouts).

URLs are built only from the configured base URL and validated ids; a URL found in a webhook body
is never fetched. Every request carries the process's access token (:mod:`archiver.providers.oauth`).
Responses are classified into :mod:`archiver.providers.errors`; a 401/403 that a new token does not
cure is :class:`~archiver.providers.errors.CredentialsRefused`, a problem of the account.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx

from archiver.core.clock import Clock, SystemClock
from archiver.core.ids import validate
from archiver.core.timestamps import iso_millis
from archiver.providers.credentials import SecretSource
from archiver.providers.errors import NotFound, ProviderUnavailable
from archiver.providers.http import DeleteOutcome, FetchedDocument, ProviderHttp, timeouts
from archiver.providers.oauth import BearerAuth, TokenSource

__all__ = ["BandwidthClient", "DeleteOutcome", "FetchedDocument"]

log = logging.getLogger(__name__)


def _describe_error(response: httpx.Response) -> str:
    """The provider's ``{type, description}``, or a short excerpt of whatever came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("type" in body or "description" in body):
        return f"{body.get('type')}: {body.get('description')}"
    return response.text[:200]


class BandwidthClient(ProviderHttp):
    describe_error = staticmethod(_describe_error)

    provider_name = "bandwidth"

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str | SecretSource,
        token_url: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._clock = clock or SystemClock()
        secret = client_secret if isinstance(client_secret, SecretSource) else SecretSource(client_secret)
        #: This process's access token (one per client, shared by its threads).
        self.tokens = TokenSource(
            token_url=token_url,
            client_id=client_id,
            secret=secret,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            transport=transport,
            clock=self._clock,
        )
        self._http = httpx.Client(
            auth=BearerAuth(self.tokens, self.base_url),
            timeout=timeouts(connect_timeout, read_timeout),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "call-archiver"},
        )

    def close(self) -> None:
        self._http.close()
        self.tokens.close()

    def check_credentials(self, account_id: str) -> None:
        """Raise unless the provider accepts the credentials for ``account_id`` now: a new token
        (the secret read again if refused), then the cheapest authenticated request (the account's
        recordings in an empty window), which that new token answers."""
        self.tokens.forget()
        now = self._clock.now()
        self.list_recordings(account_id, iso_millis(now), iso_millis(now + timedelta(milliseconds=1)))

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

    def list_recordings(
        self,
        account_id: str,
        min_start: str,
        max_start: str,
        *,
        to: str | None = None,
        from_: str | None = None,
    ) -> list[Any]:
        """``GET /accounts/{accountId}/recordings`` for ``[min_start, max_start)``: at most 1000, no paging.
        httpx encodes a leading ``+`` of ``to``/``from`` as ``%2B``, as Bandwidth requires."""
        account_id = validate("bandwidth_account", account_id)
        params = {"minStartTime": min_start, "maxStartTime": max_start}
        if to:
            params["to"] = to
        if from_:
            params["from"] = from_
        data = self._get_json(f"{self.base_url}/accounts/{account_id}/recordings", params=params).data
        if not isinstance(data, list):
            raise ProviderUnavailable("recordings list is not a JSON array")
        return data

    def list_realtime_transcriptions(self, account_id: str, call_id: str) -> list[Any]:
        account_id = validate("bandwidth_account", account_id)
        call_id = validate("bandwidth_call", call_id)
        data = self._get_json(f"{self.base_url}/accounts/{account_id}/calls/{call_id}/transcriptions").data
        return data if isinstance(data, list) else []

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
        with self._stream(self._http, url, url) as response:
            yield response

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
        self._request("POST", url, json=body)

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
