"""The intake's ASGI app (Starlette).

``POST /webhooks/bandwidth/{accountId}`` (and ``/webhooks/twilio/{AccountSid}``): the account's
own credentials (:mod:`archiver.intake.auth`), checked in constant time; body size bounded while it
is read, the event parsed and validated, then the event and its item committed before the 204 (in a
transaction shared with concurrent requests: :mod:`archiver.intake.group_commit`). Work is enqueued
after the commit. Every refusal is a 4xx with a JSON body
``{"error": code, "message": text}``, and stores nothing.

``GET /healthz`` answers 200 while the database answers. Prometheus's metrics
(:mod:`archiver.ops.metrics`) are not served here, on the port providers reach, but on a port of their
own (:mod:`archiver.intake.server`): the registry is ``app.state.metrics_registry``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver.accounts import ANY_ACCOUNT
from archiver.core.logging import log_context
from archiver.db.session import reconnecting
from archiver.intake.auth import BasicAuthChecker, bandwidth_account, twilio_account
from archiver.intake.bandwidth import parse_bandwidth_event, parse_bandwidth_query
from archiver.intake.group_commit import GroupCommitRecorder
from archiver.intake.metrics import IntakeMetrics
from archiver.intake.twilio import event_fields, parse_twilio_event, signature_valid, signed_params
from archiver.intake.untrusted import EventRejected
from archiver.ops.metrics import PipelineCollector
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.events import AcceptedEvent, Recorded, record_event, record_events

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
EventResult = tuple[Recorded, int | None]


class ErrorResponse(JSONResponse):
    """A refusal: ``{"error": code, "message": …}``; ``code`` is the reason counted in metrics."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__({"error": code, "message": message}, status_code=status, headers=headers)
        self.code = code


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return ErrorResponse(status, code, message, headers)


def measured(metrics: IntakeMetrics, provider: str, handler: Handler) -> Handler:
    """Count and time every answer of ``handler``, refusals by their reason."""

    latency = metrics.latency.labels(provider)
    # Each status's counter, made once: labels() takes a lock and builds a key on every call.
    answered = functools.cache(functools.partial(metrics.requests.labels, provider))

    async def wrapper(request: Request) -> Response:
        started = time.perf_counter()
        with log_context(provider=provider):
            response = await handler(request)
        latency.observe(time.perf_counter() - started)
        answered(str(response.status_code)).inc()
        if isinstance(response, ErrorResponse):
            metrics.rejected.labels(provider, response.code).inc()
        return response

    return wrapper


async def read_body_limited(request: Request, limit: int, seconds: float = 20.0) -> bytes:
    """The body, refused past ``limit`` bytes or ``seconds`` (a client that sends it slowly holds a
    connection: bounded in time as well as in size)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit() and len(declared) <= 18):
            raise EventRejected(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise EventRejected(413, "body_too_large", f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise EventRejected(413, "body_too_large", f"body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise EventRejected(408, "timeout", f"body not received within {seconds:g} s") from None
    return b"".join(chunks)


def event_batch_writer(
    ctx: PipelineContext, on_sent: Callable[[str, int], None] | None = None
) -> Callable[[Sequence[AcceptedEvent]], tuple[list[EventResult], Callable[[], None]]]:
    """The intake's batch writer for :class:`GroupCommitRecorder`: record the batch; once the
    requests are answered, send its messages (``on_sent(how, count)`` after)."""

    def write(events: Sequence[AcceptedEvent]) -> tuple[list[EventResult], Callable[[], None]]:
        batch = record_events(ctx, events)

        def send() -> None:
            how = batch.send(ctx)
            if on_sent is not None and batch.messages:
                on_sent(how, len(batch.messages))

        return batch.results, send

    return write


def create_app(ctx: PipelineContext) -> Starlette:
    settings = ctx.settings
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)
    registry.register(PipelineCollector(ctx.db, ctx.shared_counters, settings.metrics_cache_seconds))
    if not ctx.accounts.current().from_file:
        settings.require("intake_username", "intake_password")

    recorder: GroupCommitRecorder[AcceptedEvent, EventResult] = GroupCommitRecorder(
        event_batch_writer(ctx, lambda how, n: metrics.messages.labels(how).inc(n)),
        lambda event: record_event(ctx, event),
        settings.intake_max_batch,
        concurrency=settings.intake_writers,
        on_batch=metrics.batch_events.observe,
    )

    async def accept(request: Request, parse: Callable[[bytes], AcceptedEvent]) -> Response:
        path_account = request.path_params.get("account")
        try:
            account = bandwidth_account(ctx.accounts.current(), path_account)
        except EventRejected as rejected:
            challenge = {"WWW-Authenticate": 'Basic realm="archiver"'} if rejected.status == 401 else None
            return error(rejected.status, rejected.code, rejected.message, challenge)
        assert account.callback_username is not None and account.callback_password is not None
        auth = BasicAuthChecker(account.callback_username, account.callback_password.get())
        if not auth.check(request.headers.get("authorization")):
            return error(
                401,
                "unauthorized",
                "missing or wrong credentials",
                {"WWW-Authenticate": 'Basic realm="archiver"'},
            )
        try:
            raw = await read_body_limited(
                request, settings.intake_max_body_bytes, settings.intake_body_timeout_seconds
            )
            event = parse(raw)
        except EventRejected as rejected:
            return error(rejected.status, rejected.code, rejected.message)
        except ClientDisconnect:
            return error(400, "bad_request", "client disconnected")
        # The body may take seconds to come: an account removed, or its credentials changed,
        # meanwhile is refused as it would be now.
        now_known = ctx.accounts.current().bandwidth_account(path_account or account.account_id)
        if now_known is None or not now_known.same_callback(account):
            return error(
                401,
                "unauthorized",
                "missing or wrong credentials",
                {"WWW-Authenticate": 'Basic realm="archiver"'},
            )
        expected = path_account or (account.account_id if account.account_id != ANY_ACCOUNT else None)
        if expected and event.account_id not in (None, expected):
            log.warning(
                "refused %s event for account %s (expected: %s)", event.event_type, event.account_id, expected
            )
            return error(422, "unexpected_account", f"account {event.account_id} is not archived here")
        return await store(event)

    accepted = functools.cache(metrics.accepted.labels)  # provider, event type, outcome: a known set

    async def store(event: AcceptedEvent) -> Response:
        """Commit the event and its item (with the events of concurrent requests), then answer:
        durable before the 2xx."""
        try:
            recorded, item_id = await recorder.record(event)
        except (DataError, IntegrityError) as exc:
            # The event itself cannot be stored: a retry would fail alike, so not a 503.
            log.warning("%s event not storable: %s", event.event_type, type(exc.orig).__name__)
            return error(422, "unstorable", "the event holds a value the archive cannot store")
        except DBAPIError as exc:
            # Not stored, so not acknowledged: the provider may deliver it again.
            log.error("database unavailable; %s event not stored: %s", event.event_type, type(exc).__name__)
            return error(503, "unavailable", "the archive database is unavailable; try again")
        accepted(event.provider, event.event_type, recorded.value).inc()
        if log.isEnabledFor(logging.INFO):
            with log_context(item_id=item_id, call_id=event.item.call_id if event.item else None):
                log.info(
                    "%s %s event %s (item %s)", event.provider, event.event_type, recorded.value, item_id
                )
        return Response(status_code=204, headers={"X-Archiver-Event": recorded.value})

    async def twilio_webhook(request: Request) -> Response:
        try:
            account = twilio_account(ctx.accounts.current(), request.path_params.get("account"))
        except EventRejected as rejected:
            return error(rejected.status, rejected.code, rejected.message)
        signature = request.headers.get("x-twilio-signature")
        if not signature:  # refused before its body is read
            return error(403, "forbidden", "missing or invalid X-Twilio-Signature")
        content_type = request.headers.get("content-type", "")
        query = dict(request.query_params)
        try:
            raw = await read_body_limited(
                request, settings.intake_max_body_bytes, settings.intake_body_timeout_seconds
            )
            signed, json_body = signed_params(content_type, raw, query)
        except EventRejected as rejected:
            return error(rejected.status, rejected.code, rejected.message)
        except ClientDisconnect:
            return error(400, "bad_request", "client disconnected")
        try:  # as it is now that the body is here (it may have taken seconds): removed, or rotated
            twilio_tokens = twilio_account(
                ctx.accounts.current(), request.path_params.get("account")
            ).signing_tokens()
        except EventRejected as rejected:
            return error(rejected.status, rejected.code, rejected.message)
        base = settings.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
        url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        # While the auth token is rotated, Twilio may sign with either: both are tried, nothing else.
        if not any(signature_valid(token, url, signed, signature, json_body) for token in twilio_tokens):
            return error(403, "forbidden", "missing or invalid X-Twilio-Signature")
        try:  # parsed only once the signature is known good
            fields = event_fields(content_type, raw, query, signed)
            event = parse_twilio_event(
                fields, raw.decode("utf-8", "replace") or json.dumps(fields), account.account_id
            )
        except EventRejected as rejected:
            return error(rejected.status, rejected.code, rejected.message)
        if event is None:
            metrics.accepted.labels("twilio", "other", "ignored").inc()
            return Response(status_code=204, headers={"X-Archiver-Event": "ignored"})
        return await store(event)

    async def bandwidth_webhook(request: Request) -> Response:
        if request.method == "GET":
            query = dict(request.query_params)
            return await accept(request, lambda _raw: parse_bandwidth_query(query))
        return await accept(request, parse_bandwidth_event)

    def _database_ok() -> bool:
        with ctx.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    async def healthz(_request: Request) -> Response:
        try:
            await run_in_threadpool(reconnecting, _database_ok)
        except Exception as exc:
            log.warning("health check: database unreachable: %s", exc)
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    async def not_found(_request: Request, _exc: Exception) -> Response:
        return error(404, "not_found", "no such endpoint")

    async def internal_error(_request: Request, _exc: Exception) -> Response:
        return error(500, "internal", "unexpected error; it has been logged")

    async def method_not_allowed(_request: Request, _exc: Exception) -> Response:
        return error(405, "method_not_allowed", "method not allowed")

    app = Starlette(
        routes=[
            *(
                Route(path, measured(metrics, "bandwidth", bandwidth_webhook), methods=["GET", "POST"])
                for path in ("/webhooks/bandwidth", "/webhooks/bandwidth/{account}")
            ),
            *(
                Route(path, measured(metrics, "twilio", twilio_webhook), methods=["GET", "POST"])
                for path in ("/webhooks/twilio", "/webhooks/twilio/{account}")
            ),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        # Anything unexpected: a JSON 500 (the error is logged by archiver.intake.server.CatchAll).
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: internal_error},
    )
    app.state.metrics_registry = registry
    return app
