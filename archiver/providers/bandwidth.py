"""Bandwidth Voice API client (httpx, Basic auth, explicit timeouts).

URLs are built only from the configured base URL and validated ids; a URL found in a webhook body
is never fetched. Responses are classified into :mod:`archiver.providers.errors`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from archiver.clock import Clock, SystemClock
from archiver.ids import validate
from archiver.providers.errors import (
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from archiver.providers.retry_after import parse_retry_after

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

    # --- operations -----------------------------------------------------------------------------

    def get_realtime_transcription(
        self, account_id: str, call_id: str, transcription_id: str
    ) -> FetchedDocument:
        url = self.realtime_transcription_url(account_id, call_id, transcription_id)
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

    def delete_realtime_transcription(
        self, account_id: str, call_id: str, transcription_id: str
    ) -> DeleteOutcome:
        """DELETE answers 200 (as documented) or 204; 404 means it is already gone."""
        url = self.realtime_transcription_url(account_id, call_id, transcription_id)
        try:
            self._request("DELETE", url)
        except NotFound:
            return DeleteOutcome.ALREADY_GONE
        return DeleteOutcome.DELETED

    def realtime_transcription_exists(self, account_id: str, call_id: str, transcription_id: str) -> bool:
        url = self.realtime_transcription_url(account_id, call_id, transcription_id)
        try:
            self._request("GET", url)
        except NotFound:
            return False
        return True

    # --- plumbing -----------------------------------------------------------------------------------

    def _request(self, method: str, url: str) -> httpx.Response:
        try:
            response = self._http.request(method, url)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = _describe_error(response)
        message = f"{method} {url}: HTTP {status} {detail}"
        if status == 429:
            delay = parse_retry_after(response.headers.get("retry-after"), self._clock.now())
            raise RateLimited(message, retry_after=delay)
        if status >= 500:
            raise ProviderUnavailable(message, status=status)
        if status == 404:
            raise NotFound(message, status=status)
        raise ProviderRejected(message, status=status)
