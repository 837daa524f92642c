"""Classifying provider HTTP responses into :mod:`archiver.providers.errors` (shared by clients)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import httpx

from archiver.clock import Clock
from archiver.providers.errors import NotFound, ProviderRejected, ProviderUnavailable, RateLimited
from archiver.providers.retry_after import parse_retry_after


def raise_for_response(
    response: httpx.Response, method: str, url: str, clock: Clock, describe: Callable[[httpx.Response], str]
) -> NoReturn:
    status = response.status_code
    message = f"{method} {url}: HTTP {status} {describe(response)}"
    if status == 429:
        delay = parse_retry_after(response.headers.get("retry-after"), clock.now())
        raise RateLimited(message, retry_after=delay)
    if status >= 500:
        raise ProviderUnavailable(message, status=status)
    if status == 404:
        raise NotFound(message, status=status)
    raise ProviderRejected(message, status=status)


def timeouts(connect: float, read: float) -> httpx.Timeout:
    return httpx.Timeout(read, connect=connect, pool=connect)
