"""HTTP plumbing shared by the provider clients: requests, JSON documents, deletes, existence
checks and streams, with every response classified into :mod:`archiver.providers.errors` in one
place."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import httpx

from archiver.core.clock import Clock
from archiver.core.counters import SharedCounters
from archiver.core.rate_budget import RateBudget
from archiver.providers.errors import (
    CredentialsRefused,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from archiver.providers.retry_after import parse_retry_after

log = logging.getLogger(__name__)

#: Methods a lost answer cannot make harmful to repeat: a repeated DELETE finds the artifact gone
#: (404, which ``_delete`` reads as already deleted). A POST is never repeated in place.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE"})


class DeleteOutcome(StrEnum):
    DELETED = "deleted"
    ALREADY_GONE = "already_gone"


@dataclass(frozen=True)
class FetchedDocument:
    """A provider response body exactly as served, and its parsed JSON."""

    body: bytes
    content_type: str
    data: Any


def timeouts(connect: float, read: float) -> httpx.Timeout:
    return httpx.Timeout(read, connect=connect, pool=connect)


def raise_for_response(
    response: httpx.Response,
    method: str,
    url: str,
    clock: Clock,
    describe: Callable[[httpx.Response], str],
    refused: Callable[[int], bool] = lambda _status: False,
    provider: str = "provider",
) -> NoReturn:
    """Classify an error response. ``refused(status)``: whether that status means the account's
    credentials were refused (only for requests that carried them)."""
    status = response.status_code
    message = f"{method} {url}: HTTP {status} {describe(response)}"
    if status == 429:
        delay = parse_retry_after(response.headers.get("retry-after"), clock.now())
        raise RateLimited(message, retry_after=delay)
    if status >= 500:
        raise ProviderUnavailable(message, status=status)
    if refused(status):
        raise CredentialsRefused(message, provider=provider, status=status)
    if status == 404:
        raise NotFound(message, status=status)
    raise ProviderRejected(message, status=status)


class ProviderHttp:
    """Base of the provider clients. Subclasses set ``_http``, ``_clock`` and ``describe_error``;
    ``budget``, when set, is the account's request budget shared by every worker."""

    _http: httpx.Client
    _clock: Clock
    #: The provider's name in metrics.
    provider_name = "provider"
    budget: RateBudget | None = None
    counters: SharedCounters | None = None
    #: In-place retries of an idempotent request after a 5xx or a connection error, before the
    #: failure goes to the step's retry policy, which re-runs the whole step (every request of a
    #: transcript with its sentences, results and media, again). 429s are not retried here: they
    #: are the provider's pacing, which the step's policy honours without counting an attempt.
    retries: int = 0
    retry_backoff: float = 0.5
    #: Responses received, whatever their status (a backfill reports the requests it made).
    answered: int = 0

    def _retry_delay(self, retry: int) -> float:
        """Full jitter, from ``retry_backoff`` doubling per retry, at most 4 s."""
        ceiling = min(4.0, self.retry_backoff * (2**retry))
        return random.uniform(ceiling / 2, ceiling)

    def _with_retries(
        self, method: str, send: Callable[[], httpx.Response], *, in_place: bool | None = None
    ) -> httpx.Response:
        """``in_place``: whether a failure may be repeated here (default: for idempotent methods). A
        failure that an inner loop already retried (the access token's request, made for this one)
        is not retried again: the retries would multiply."""
        retries = self.retries if (method in IDEMPOTENT_METHODS if in_place is None else in_place) else 0
        for retry in range(retries + 1):
            try:
                return send()
            except ProviderUnavailable as exc:
                if retry == retries or exc.retried_in_place:
                    exc.retried_in_place = True
                    raise
                delay = self._retry_delay(retry)
                log.info("%s; retrying in place in %.2f s (%d of %d)", exc, delay, retry + 1, retries)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _spend(self, method: str, url: str) -> None:
        """Take a slot of the shared budget before an API request; a slot too far away becomes a
        ``RateLimited`` that the step's retry policy turns into a later attempt, not a 429."""
        if self.budget is None:
            return
        reservation = self.budget.acquire()
        if not reservation.granted:
            raise RateLimited(
                f"{method} {url}: shared rate budget spent ({self.budget.rate:g}/s); next slot in "
                f"{reservation.wait:.1f} s",
                retry_after=reservation.wait,
            )

    @staticmethod
    def describe_error(response: httpx.Response) -> str:
        return response.text[:200]

    def _on_response(self, response: httpx.Response, url: str) -> None:
        """A hook for every response (Twilio logs its rate-limit headers)."""

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._with_retries(method, lambda: self._request_once(method, url, **kwargs))

    def _request_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self._spend(method, url)
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        self.answered += 1 + len(response.history)  # an auth's second try is a request too
        self._on_response(response, url)
        if 200 <= response.status_code < 300:
            return response
        self._raise_for(response, method, url)

    def _refused(self, status: int) -> bool:
        """Whether ``status``, answered to a request with the account's credentials, means the
        provider refuses them (401/403: their auth has already tried again with fresh ones)."""
        return status in (401, 403)

    def _raise_for(
        self, response: httpx.Response, method: str, url: str, *, credentials: bool = True
    ) -> NoReturn:
        """``credentials``: the request carried the account's credentials (a media host's did not)."""
        refused = self._refused if credentials else lambda _status: False
        if self.counters is not None:
            if response.status_code == 429:
                self.counters.incr(f"provider_429:{self.provider_name}")
            elif refused(response.status_code):
                self.counters.incr(f"provider_auth_failures:{self.provider_name}")
        raise_for_response(
            response, method, url, self._clock, self.describe_error, refused, self.provider_name
        )

    def _get_json(self, url: str, params: dict[str, str] | None = None) -> FetchedDocument:
        response = self._request("GET", url, params=params)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise ProviderUnavailable(f"GET {url}: body is not JSON", status=response.status_code) from exc
        return FetchedDocument(
            response.content, response.headers.get("content-type", "application/json"), data
        )

    def _delete(self, url: str) -> DeleteOutcome:
        """A DELETE answered 2xx (200 or 204 alike) deleted it; 404 means it was already gone."""
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

    @contextmanager
    def _stream(self, client: httpx.Client, url: str, shown: str) -> Iterator[httpx.Response]:
        """A streaming GET whose errors are raised before the body is read (``shown``: the URL as
        it may appear in messages). Opening it is retried in place; a body cut short is not (its
        bytes are already on their way to S3): that is for the step's retry policy."""
        response = self._with_retries("GET", lambda: self._open_stream(client, url, shown))
        try:
            yield response
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"GET {shown}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()

    def _open_stream(self, client: httpx.Client, url: str, shown: str) -> httpx.Response:
        if client is self._http:  # the provider's API; media hosts elsewhere have no shared budget
            self._spend("GET", shown)
        try:
            response = client.send(client.build_request("GET", url), stream=True)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"GET {shown}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            try:
                response.read()
            except httpx.TransportError:
                pass
            finally:
                response.close()
            self._raise_for(response, "GET", shown, credentials=client is self._http)
        return response
