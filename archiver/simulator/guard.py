"""What every provider API request goes through: authentication, the account's rate limit, fault
rules, and the audit log (with the bytes actually sent, also for streams cut short)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archiver.simulator.faults import FaultRule, Faults, retry_after_header
from archiver.simulator.resources import AuditEntry
from archiver.simulator.state import World

log = logging.getLogger("archiver.simulator")

Handler = Callable[[Request], Awaitable[Response]]
ErrorBody = Callable[[int, str, dict[str, str] | None], Response]


class SimulatedReset(Exception):
    """Raised inside a response body: the server drops the connection mid-body."""


class ApiGuard:
    def __init__(
        self,
        world: World,
        faults: Faults,
        provider: str,
        authenticate: Callable[[Request], str | int | None],
        error: ErrorBody,
        principal: Callable[[Request], str | None] = lambda _request: None,
    ) -> None:
        self.world = world
        self.faults = faults
        self.provider = provider
        #: The rate limit's key (the account), or the status that refuses the request (None: 401).
        self.authenticate = authenticate
        self.error = error
        #: Who the request authenticated as, for the audit log (never a secret).
        self.principal = principal

    def __call__(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            method, path = request.method, request.url.path
            response, rule = await self._respond(request, handler)
            self._rate_limit_headers(request, response)
            if rule is not None and rule.breaks_body:
                response = await _break_body(response, rule)
            entry = self.world.record(
                method,
                path,
                request.url.query,
                response.status_code,
                int(response.headers.get("content-length", "0") or 0),
                credential=self.principal(request),
            )
            log.info("%s %s -> %d", method, path, response.status_code)
            if isinstance(response, StreamingResponse):
                response.body_iterator = _counting(response.body_iterator, entry)
            return response

        return guarded

    def _rate_limit_headers(self, request: Request, response: Response) -> None:
        """Twilio declares X-Rate-Limit-* on every operation; sent when the account has a budget."""
        if self.provider != "twilio":
            return
        account = self.authenticate(request)
        bucket = (
            self.faults.rate_limits.get(f"{self.provider}:{account}") if isinstance(account, str) else None
        )
        if bucket is not None:
            response.headers["X-Rate-Limit-Limit"] = str(int(bucket.burst))
            response.headers["X-Rate-Limit-Remaining"] = str(max(0, int(bucket.tokens)))
            response.headers["X-Rate-Limit-Config"] = f"{bucket.rate:g}/s"

    async def _respond(self, request: Request, handler: Handler) -> tuple[Response, FaultRule | None]:
        account = self.authenticate(request)
        if account is None:
            return self.error(401, "unauthorized", None), None
        if isinstance(account, int):
            return self.error(account, "forbidden", None), None
        bucket = self.faults.rate_limits.get(f"{self.provider}:{account}")
        if bucket is not None:
            wait = bucket.take()
            if wait is not None:
                header = retry_after_header(wait, bucket.retry_after_format, self.world.clock.now())
                return self.error(429, "rate_limited", {"Retry-After": header} if header else None), None
        rule = self.faults.pick(self.provider, request.method, request.url.path)
        if rule is not None:
            if rule.latency_seconds:
                await asyncio.sleep(rule.latency_seconds)
            if rule.status == 429:
                header = retry_after_header(rule.retry_after, rule.retry_after_format, self.world.clock.now())
                return self.error(429, "rate_limited", {"Retry-After": header} if header else None), rule
            if rule.status:
                return self.error(rule.status, "injected", None), rule
        return await handler(request), rule


async def _chunks(response: Response) -> AsyncIterator[bytes]:
    if isinstance(response, StreamingResponse):
        async for chunk in response.body_iterator:
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
    else:
        yield bytes(response.body)


async def _break_body(response: Response, rule: FaultRule) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    length = int(response.headers.get("content-length", "0") or 0)

    async def reset_after(limit: int) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in _chunks(response):
            if sent + len(chunk) >= limit:
                yield chunk[: limit - sent]
                raise SimulatedReset(f"connection reset after {limit} bytes (simulated)")
            sent += len(chunk)
            yield chunk

    async def truncated(limit: int) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in _chunks(response):
            if sent >= limit:
                break
            piece = chunk[: limit - sent]
            sent += len(piece)
            yield piece

    async def corrupted() -> AsyncIterator[bytes]:
        middle = rule.corrupt_offset if rule.corrupt_offset is not None else length // 2
        sent = 0
        async for chunk in _chunks(response):
            piece = chunk
            if sent <= middle < sent + len(chunk):
                i = middle - sent
                piece = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            sent += len(piece)
            yield piece

    if rule.reset_after_bytes is not None:
        headers["content-length"] = str(length)
        body: AsyncIterator[bytes] = reset_after(rule.reset_after_bytes)
    elif rule.truncate_to_bytes is not None:
        headers["content-length"] = str(min(length, rule.truncate_to_bytes))
        body = truncated(rule.truncate_to_bytes)
    else:
        headers["content-length"] = str(length)
        body = corrupted()
    return StreamingResponse(body, status_code=response.status_code, headers=headers)


async def _counting(body: Iterable[Any] | AsyncIterable[Any], entry: AuditEntry) -> AsyncIterator[bytes]:
    """Record in the audit entry how many bytes were really sent."""
    sent = 0
    try:
        if hasattr(body, "__aiter__"):
            async for chunk in body:  # type: ignore[union-attr]
                sent += len(chunk)
                yield chunk
        else:
            for chunk in body:  # type: ignore[union-attr]
                sent += len(chunk)
                yield chunk
    except SimulatedReset:
        entry.note = f"reset after {sent} bytes"
        raise
    finally:
        entry.bytes = sent
