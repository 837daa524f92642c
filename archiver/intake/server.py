"""Serving the intake: uvicorn with bounded connections, one catch-all for the unexpected, and the
metrics on a port of their own.

Invariants:

* no client holds a connection for free: a new or kept-alive connection must deliver a request's
  headers within ``ARCHIVER_INTAKE_HEADER_TIMEOUT_SECONDS`` of its opening or of the request's first
  byte (uvicorn times out only idle keep-alive connections, and a byte every second resets that);
  a body must arrive within ``ARCHIVER_INTAKE_BODY_TIMEOUT_SECONDS`` (the app); idle keep-alive
  connections close after ``ARCHIVER_INTAKE_KEEP_ALIVE_SECONDS``; at most
  ``ARCHIVER_INTAKE_MAX_CONNECTIONS`` at once;
* nothing unexpected escapes as a bare 500: the app answers it with a JSON 500, and it is logged
  through our logger (redacted, JSON when configured), never by uvicorn's;
* ``/metrics`` is not on the webhook port: it is served on ``ARCHIVER_METRICS_HOST``:
  ``ARCHIVER_METRICS_PORT`` (loopback by default).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from archiver.core.config import Settings

__all__ = ["CatchAll", "HeaderTimeoutProtocol", "serve"]

log = logging.getLogger("archiver.intake")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's headers."""

    header_timeout = 10.0  # set by :func:`serve`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never says anything is closed too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class CatchAll:
    """The outermost ASGI layer: an exception that got past the app (which has already answered it
    with a JSON 500) is logged here, through our logging, and goes no further."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def tracking(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if scope["type"] == "http" and not answered:
                body = b'{"error": "internal", "message": "unexpected error; it has been logged"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
                    }
                )
                await send({"type": "http.response.body", "body": body})


def serve_metrics(registry: CollectorRegistry, settings: Settings) -> None:
    """Prometheus's own HTTP server, in a thread, on the metrics address (0: none)."""
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


def serve(app: ASGIApp, settings: Settings, host: str, port: int, access_log: bool) -> None:
    registry = getattr(getattr(app, "state", None), "metrics_registry", None)
    if registry is not None:
        serve_metrics(registry, settings)
    HeaderTimeoutProtocol.header_timeout = settings.intake_header_timeout_seconds
    uvicorn.run(
        CatchAll(app),
        host=host,
        port=port,
        http=HeaderTimeoutProtocol,
        log_config=None,  # uvicorn's records go through our handlers: redacted, JSON if configured
        log_level=settings.log_level.lower(),
        access_log=access_log,
        timeout_keep_alive=int(max(1, settings.intake_keep_alive_seconds)),
        limit_concurrency=settings.intake_max_connections,
        timeout_graceful_shutdown=10,
    )
