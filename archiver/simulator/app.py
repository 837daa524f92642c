"""The simulator's HTTP app: Bandwidth's Voice API, Twilio's Conversational Intelligence v2 API,
media downloads, and the admin API.

The admin API (``/admin``, ``Authorization: Bearer <token>``) seeds resources and scenarios, sends
webhooks, sets faults and rate limits, reads and advances the clock, and reads the audit log of
every provider request served. A background ticker delivers what simulated time makes due
(requested recording transcriptions, completed Twilio transcripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver.core.timestamps import parse_timestamp
from archiver.simulator.bandwidth_api import BandwidthApi
from archiver.simulator.config import SimulatorConfig
from archiver.simulator.credentials import BandwidthClients, BandwidthOAuth, TwilioAccounts, TwilioCredentials
from archiver.simulator.deliveries import Deliveries
from archiver.simulator.exposure import MAX_SENTENCES, bounded_count
from archiver.simulator.faults import FaultRule, Faults, TokenBucket
from archiver.simulator.guard import ApiGuard
from archiver.simulator.resources import LIST_ORDERS, Deletable, Recording
from archiver.simulator.scenarios import Scenario, populate
from archiver.simulator.state import World
from archiver.simulator.twilio_api import TwilioApi

log = logging.getLogger("archiver.simulator")


AdminHandler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def create_simulator_app(config: SimulatorConfig, faults: Faults | None = None) -> Starlette:
    world = World(
        seed=config.seed,
        bandwidth_account_id=config.account_id,
        twilio_account_sid=config.twilio_account_sid,
        list_order=config.list_order,
    )
    fault_state = faults or Faults()

    def guard(provider: str, authenticate: Any, error: Any, principal: Any = None) -> ApiGuard:
        return ApiGuard(world, fault_state, provider, authenticate, error, principal or (lambda _r: None))

    legacy = config.legacy_username, config.legacy_password
    oauth = BandwidthOAuth(
        config.client_id,
        [config.client_secret],
        world.clock.now,
        token_lifetime=config.token_lifetime,
        legacy_user=(legacy[0], legacy[1]) if legacy[0] and legacy[1] else None,
    )
    twilio_credentials = TwilioCredentials(
        config.twilio_account_sid,
        config.twilio_auth_token,
        config.twilio_secondary_auth_token,
        dict(config.twilio_api_keys),
    )
    # Any number of accounts besides the configured ones, each with its own credentials.
    bandwidth_clients, twilio_accounts = BandwidthClients(oauth), TwilioAccounts(twilio_credentials)
    bandwidth = BandwidthApi(
        world, guard, bandwidth_clients, config.bandwidth_base_url, on_transcription_requested=lambda _r: None
    )
    twilio = TwilioApi(world, guard, twilio_accounts, config.public_root, config.public_root)
    media_guard = ApiGuard(world, fault_state, "twilio-media", lambda _r: "media", twilio._error)

    # --- simulated time: what becomes due, and webhooks sent on request -----------------------------

    deliveries = Deliveries(world, config, twilio_accounts)
    tick = deliveries.tick
    delivering = deliveries.lock

    async def send_webhooks(_request: Request, body: dict[str, Any]) -> Response:
        return JSONResponse({"deliveries": await deliveries.on_request(body)})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async def ticker() -> None:
            while True:
                await asyncio.sleep(config.tick_seconds)
                try:
                    await tick()
                except Exception:
                    log.exception("simulator tick failed")

        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()

    # --- admin API -------------------------------------------------------------------------------

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, f"Bearer {config.admin_token}".encode())

    def admin(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            try:
                raw = await request.body()
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                return await handler(request, body)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)

        return wrapped

    def deletion(resource: Deletable) -> dict[str, Any]:
        return resource.deletion_state(world.clock.now())

    async def reset(_request: Request, body: dict[str, Any]) -> Response:
        async with delivering:
            world.reset(body.get("seed"))
            world.list_order = config.list_order
            fault_state.clear()
            bandwidth_clients.reset()
            twilio_accounts.reset()
            config.drop_callbacks = False
        return JSONResponse({"ok": True})

    async def create_realtime(_request: Request, body: dict[str, Any]) -> Response:
        account_id = str(body.get("account_id", config.account_id))
        tracks = tuple(body.get("tracks", ("inbound", "outbound")))
        created = [
            world.add_realtime_transcription(account_id, body.get("call_id"), tracks)
            for _ in range(bounded_count(body.get("count", 1)))
        ]
        return JSONResponse(
            {"created": [{**t.body(), "startTime": t.start_time.isoformat()} for t in created]}
        )

    async def list_realtime(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse(
            {"transcriptions": [{**t.body(), **deletion(t)} for t in world.realtime.values()]}
        )

    async def undelete_realtime(_request: Request, body: dict[str, Any]) -> Response:
        """Serve a deleted transcription again (a provider whose deletion did not take)."""
        for t in world.realtime.values():
            if t.transcription_id == body["id"]:
                t.deleted_at = t.purge_at = None
                return JSONResponse({"ok": True})
        return JSONResponse({"error": "not_found"}, status_code=404)

    def recording_summary(r: Recording) -> dict[str, Any]:
        t = r.transcription
        return {
            **r.metadata(config.bandwidth_base_url),
            "size": r.size,
            "seed": r.seed,
            "durationSeconds": r.duration,
            **deletion(r),
            "media_deleted_at": r.media_deleted_at.isoformat() if r.media_deleted_at else None,
            "transcription_state": None
            if t is None
            else {"id": t.transcription_id, "status": t.status, **deletion(t)},
        }

    async def create_recordings(_request: Request, body: dict[str, Any]) -> Response:
        start = parse_timestamp(body["start_time"]) if body.get("start_time") else None
        spread = float(body.get("spread_seconds", 0))
        created = []
        for i in range(bounded_count(body.get("count", 1))):
            created.append(
                world.add_recording(
                    str(body.get("account_id", config.account_id)),
                    start_time=start + timedelta(seconds=spread * i) if start else None,
                    duration=body.get("duration"),
                    channels=body.get("channels"),
                    file_format=body.get("file_format"),
                    status=body.get("status", "complete"),
                    call_id=body.get("call_id"),
                    with_transcription=body.get("with_transcription"),
                    clips=bool(body.get("clips", True)),
                    legacy_transcription=bool(body.get("legacy_transcription")),
                    to=body.get("to"),
                    from_=body.get("from"),
                )
            )
        return JSONResponse(
            {"created": [recording_summary(r) for r in created[:1000]], "count": len(created)}
        )

    async def get_recording(request: Request, _body: dict[str, Any]) -> Response:
        for r in world.recordings.values():
            if r.recording_id == request.path_params["recording_id"]:
                return JSONResponse(recording_summary(r))
        return JSONResponse({"error": "not_found"}, status_code=404)

    async def scenario(_request: Request, body: dict[str, Any]) -> Response:
        return JSONResponse(populate(world, Scenario.from_dict(body, config.account_id)))

    async def create_twilio_transcripts(_request: Request, body: dict[str, Any]) -> Response:
        service_sid = body.get("service_sid")
        if service_sid is None:
            service = world.add_service(
                f"admin-{len(world.services)}",
                account_sid=body.get("account_sid"),
                webhook_url=body.get("webhook_url"),
                webhook_http_method=body.get("webhook_http_method"),
            )
            service_sid = service.sid
        options = {
            k: body[k]
            for k in (
                "sentences",
                "operator_results",
                "queued_seconds",
                "processing_seconds",
                "fails",
                "customer_key",
                "media_duration",
            )
            if k in body
        }
        if "sentences" in options:
            options["sentences"] = bounded_count(options["sentences"], "sentences", MAX_SENTENCES)
        channel = body.get("channel") or {"media_properties": {"source_sid": world.new_sid("RE")}}
        created = [
            world.add_transcript(service_sid, channel, **options)
            for _ in range(bounded_count(body.get("count", 1)))
        ]
        return JSONResponse(
            {"service_sid": service_sid, "created": [twilio.transcript_json(t) for t in created]}
        )

    async def list_twilio_transcripts(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse(
            {
                "transcripts": [
                    {**twilio.transcript_json(t), **deletion(t)} for t in world.transcripts.values()
                ]
            }
        )

    async def bandwidth_oauth(request: Request, body: dict[str, Any]) -> Response:
        """GET: the credential's state (no secret, no token); PUT: ``token_lifetime``,
        ``client_secret``/``client_secrets`` (a rotation), ``accounts`` (the scope). ``client_id``
        (query or body): another client than the configured one."""
        client = bandwidth_clients.get(
            body.get("client_id") or request.query_params.get("client_id") or oauth.client_id
        )
        if request.method == "PUT":
            client.configure(body)
        return JSONResponse(client.describe())

    async def revoke_tokens(request: Request, body: dict[str, Any]) -> Response:
        client = bandwidth_clients.get(body.get("client_id") or oauth.client_id)
        return JSONResponse({"revoked": client.revoke_all()})

    async def add_bandwidth_client(_request: Request, body: dict[str, Any]) -> Response:
        """``{client_id, client_secret, accounts: [...]}``: a credential scoped to those accounts."""
        client = bandwidth_clients.add(
            str(body["client_id"]), str(body["client_secret"]), list(body["accounts"])
        )
        return JSONResponse(client.describe(), status_code=201)

    async def twilio_credentials_admin(request: Request, body: dict[str, Any]) -> Response:
        sid = body.get("account_sid") or request.query_params.get("account_sid") or config.twilio_account_sid
        account = twilio_accounts.get(str(sid))
        if account is None:
            raise KeyError(f"no account {sid!r}")
        if request.method == "PUT":
            account.configure(body)
        return JSONResponse(account.describe())

    async def add_twilio_account(_request: Request, body: dict[str, Any]) -> Response:
        """``{account_sid, auth_token, api_keys: {SK…: secret}}``: another account (or subaccount)."""
        account = twilio_accounts.add(
            str(body["account_sid"]), str(body["auth_token"]), dict(body.get("api_keys") or {})
        )
        return JSONResponse(account.describe(), status_code=201)

    async def list_order(request: Request, body: dict[str, Any]) -> Response:
        if request.method == "PUT":
            if body.get("order") not in LIST_ORDERS:
                raise ValueError(f"order must be one of {', '.join(LIST_ORDERS)}")
            world.list_order = body["order"]
        return JSONResponse({"order": world.list_order})

    async def get_faults(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse(fault_state.as_dict())

    async def set_faults(_request: Request, body: dict[str, Any]) -> Response:
        rules = [FaultRule.from_dict(rule) for rule in body.get("rules", [])]
        if body.get("append"):
            fault_state.rules.extend(rules)
        else:
            fault_state.rules[:] = rules
        return JSONResponse(fault_state.as_dict())

    async def set_rate_limits(_request: Request, body: dict[str, Any]) -> Response:
        limits = {
            key: TokenBucket(
                float(v["rate"]), float(v.get("burst", v["rate"])), v.get("retry_after_format", "seconds")
            )
            for key, v in body.get("limits", {}).items()
        }
        if not body.get("append"):
            fault_state.rate_limits.clear()
        fault_state.rate_limits.update(limits)
        return JSONResponse(fault_state.as_dict())

    async def set_callbacks(_request: Request, body: dict[str, Any]) -> Response:
        config.drop_callbacks = bool(body.get("drop", False))
        return JSONResponse({"drop": config.drop_callbacks})

    async def get_clock(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse({"now": world.clock.now().isoformat(), "offset_seconds": world.clock.offset})

    async def advance_clock(_request: Request, body: dict[str, Any]) -> Response:
        world.clock.advance(float(body["seconds"]))
        delivered = await tick()
        return JSONResponse(
            {
                "now": world.clock.now().isoformat(),
                "offset_seconds": world.clock.offset,
                "delivered": delivered,
            }
        )

    async def run_tick(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse({"delivered": await tick()})

    async def get_audit(request: Request, _body: dict[str, Any]) -> Response:
        q = request.query_params
        method, contains = q.get("method"), q.get("path_contains")
        since = int(q.get("since_seq", "0"))
        entries = [
            e.as_dict()
            for e in world.audit
            if e.seq > since
            and (not method or e.method == method.upper())
            and (not contains or contains in e.path)
        ]
        if q.get("count_only"):
            by_status: dict[str, int] = {}
            for e in entries:
                by_status[str(e["status"])] = by_status.get(str(e["status"]), 0) + 1
            return JSONResponse({"count": len(entries), "by_status": by_status})
        return JSONResponse({"count": len(entries), "entries": entries})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def audited_media(handler: Any) -> Any:
        return media_guard(handler)

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/healthz", healthz),
            Route("/admin/reset", admin(reset), methods=["POST"]),
            Route("/admin/realtime-transcriptions", admin(create_realtime), methods=["POST"]),
            Route("/admin/realtime-transcriptions", admin(list_realtime), methods=["GET"]),
            Route("/admin/realtime-transcriptions/undelete", admin(undelete_realtime), methods=["POST"]),
            Route("/admin/recordings", admin(create_recordings), methods=["POST"]),
            Route("/admin/recordings/{recording_id}", admin(get_recording), methods=["GET"]),
            Route("/admin/scenario", admin(scenario), methods=["POST"]),
            Route("/admin/twilio/transcripts", admin(create_twilio_transcripts), methods=["POST"]),
            Route("/admin/twilio/transcripts", admin(list_twilio_transcripts), methods=["GET"]),
            Route("/admin/webhooks", admin(send_webhooks), methods=["POST"]),
            Route("/admin/bandwidth/oauth", admin(bandwidth_oauth), methods=["GET", "PUT"]),
            Route("/admin/bandwidth/oauth/revoke", admin(revoke_tokens), methods=["POST"]),
            Route("/admin/bandwidth/clients", admin(add_bandwidth_client), methods=["POST"]),
            Route("/admin/twilio/accounts", admin(add_twilio_account), methods=["POST"]),
            Route("/admin/bandwidth/list-order", admin(list_order), methods=["GET", "PUT"]),
            Route("/admin/twilio/credentials", admin(twilio_credentials_admin), methods=["GET", "PUT"]),
            Route("/admin/faults", admin(get_faults), methods=["GET"]),
            Route("/admin/faults", admin(set_faults), methods=["PUT", "POST"]),
            Route("/admin/rate-limits", admin(set_rate_limits), methods=["PUT", "POST"]),
            Route("/admin/callbacks", admin(set_callbacks), methods=["PUT"]),
            Route("/admin/clock", admin(get_clock), methods=["GET"]),
            Route("/admin/clock/advance", admin(advance_clock), methods=["POST"]),
            Route("/admin/tick", admin(run_tick), methods=["POST"]),
            Route("/admin/audit", admin(get_audit), methods=["GET"]),
            *twilio.downloads.routes(audited_media),
            *twilio.routes(),
            *bandwidth.routes(),
        ],
    )
