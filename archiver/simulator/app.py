"""The simulator's HTTP app: Bandwidth's real-time transcription API and the admin API.

Bandwidth routes live under ``/api/v2`` with Basic auth and ``{type, description, id}`` error bodies.
The admin API (``/admin``, ``Authorization: Bearer <token>``) seeds resources, sends webhooks, sets
faults, reads and advances the clock, and reads the audit log of every API request served.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver.simulator.faults import FaultRule, Faults
from archiver.simulator.state import RealtimeTranscription, World
from archiver.simulator.webhooks import (
    IntakeTarget,
    deliver,
    realtime_available_event,
    realtime_rejected_event,
)

API_PREFIX = "/api/v2"

log = logging.getLogger("archiver.simulator")


@dataclass
class SimulatorConfig:
    username: str = "sim-user"
    password: str = "sim-password"  # noqa: S105 - the simulator's own default
    admin_token: str = "sim-admin-token"  # noqa: S105
    account_id: str = "9900000"
    public_base_url: str = "http://127.0.0.1:9000/api/v2"
    seed: int = 1
    intake: IntakeTarget | None = None


def voice_error(status: int, type_: str, description: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"type": type_, "description": description, "id": None}, status_code=status, headers=headers
    )


def create_simulator_app(config: SimulatorConfig, faults: Faults | None = None) -> Starlette:
    world = World(seed=config.seed)
    fault_state = faults or Faults()
    expected_basic = "Basic " + base64.b64encode(f"{config.username}:{config.password}".encode()).decode()

    # --- Bandwidth API ----------------------------------------------------------------------------

    async def api(request: Request) -> Response:
        path = request.url.path
        method = request.method
        response = await _api_response(request, path, method)
        size = int(response.headers.get("content-length", "0") or 0)
        world.record(method, path, request.url.query, response.status_code, size)
        log.info("%s %s -> %d (%d bytes)", method, path, response.status_code, size)
        return response

    async def _api_response(request: Request, path: str, method: str) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected_basic):
            return voice_error(401, "authentication-error", "The credentials provided were invalid")
        rule = fault_state.pick(method, path)
        if rule is not None:
            if rule.latency_seconds:
                await asyncio.sleep(rule.latency_seconds)
            if rule.status == 429:
                header = rule.retry_after_header(world.clock.now())
                return voice_error(
                    429, "error", "Too many requests", {"Retry-After": header} if header else None
                )
            if rule.status >= 500:
                kind = "system-overloaded" if rule.status == 503 else "internal-error"
                return voice_error(rule.status, kind, "An unknown internal error occurred")
            if rule.status >= 400:
                return voice_error(rule.status, "error", "Injected fault")
        parts = path[len(API_PREFIX) :].strip("/").split("/")
        # accounts/{a}/calls/{c}/transcriptions[/{t}]
        if (
            len(parts) >= 5
            and parts[0] == "accounts"
            and parts[2] == "calls"
            and parts[4] == "transcriptions"
        ):
            account_id, call_id = parts[1], parts[3]
            if len(parts) == 5 and method == "GET":
                return JSONResponse(
                    [
                        {
                            "transcriptionId": t.transcription_id,
                            "transcriptionName": t.name,
                            "transcriptionUrl": _url(t),
                        }
                        for t in world.realtime.values()
                        if t.account_id == account_id and t.call_id == call_id and t.deleted_at is None
                    ]
                )
            if len(parts) == 6:
                found = world.realtime.get((account_id, call_id, parts[5]))
                if found is None or found.deleted_at is not None:
                    return voice_error(404, "validation", f"Transcription [{parts[5]}] not found")
                if method == "GET":
                    return JSONResponse(found.body())
                if method == "DELETE":
                    world.delete_realtime(found)
                    return Response(status_code=200)
                return voice_error(405, "validation", "Method not allowed")
        return voice_error(404, "validation", "Resource not found")

    def _url(t: RealtimeTranscription) -> str:
        call = f"{config.public_base_url}/accounts/{t.account_id}/calls/{t.call_id}"
        return f"{call}/transcriptions/{t.transcription_id}"

    # --- admin API ----------------------------------------------------------------------------------

    def authorized(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {config.admin_token}")

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    AdminHandler = Callable[[Request, dict[str, Any]], Awaitable[Response]]

    def admin(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            try:
                return await handler(request, await body_of(request))
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)

        return wrapped

    async def reset(_request: Request, body: dict[str, Any]) -> Response:
        world.reset(body.get("seed"))
        fault_state.rules.clear()
        return JSONResponse({"ok": True})

    async def create_realtime(_request: Request, body: dict[str, Any]) -> Response:
        count = int(body.get("count", 1))
        account_id = str(body.get("account_id", config.account_id))
        created = [
            world.add_realtime_transcription(
                account_id, body.get("call_id"), tuple(body.get("tracks", ("inbound", "outbound")))
            )
            for _ in range(count)
        ]
        return JSONResponse(
            {"created": [{**t.body(), "startTime": t.start_time.isoformat()} for t in created]}
        )

    async def list_realtime(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse(
            {
                "transcriptions": [
                    {
                        **t.body(),
                        "deleted_at": t.deleted_at.isoformat() if t.deleted_at else None,
                        "purge_at": t.purge_at.isoformat() if t.purge_at else None,
                        "purged": bool(t.purge_at and t.purge_at <= world.clock.now()),
                    }
                    for t in world.realtime.values()
                ]
            }
        )

    async def undelete_realtime(_request: Request, body: dict[str, Any]) -> Response:
        """Make a deleted transcription served again (a provider whose deletion did not take)."""
        for t in world.realtime.values():
            if t.transcription_id == body["id"]:
                t.deleted_at = t.purge_at = None
                return JSONResponse({"ok": True})
        return JSONResponse({"error": "not_found"}, status_code=404)

    async def send_webhooks(_request: Request, body: dict[str, Any]) -> Response:
        target = config.intake
        if body.get("intake_url"):
            target = IntakeTarget(body["intake_url"], body.get("username"), body.get("password"))
        if target is None:
            raise ValueError("no intake_url given and none configured")
        event = body.get("event", "available")
        wanted = set(body.get("ids") or [])
        times = 2 if body.get("duplicate") else 1
        key = body.get("key", "realTimeTranscription")
        results = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as client:
            for t in list(world.realtime.values()):
                if wanted and t.transcription_id not in wanted:
                    continue
                if event == "rejected":
                    payload = realtime_rejected_event(
                        t,
                        config.public_base_url,
                        world.new_transcription_id("s"),
                        body.get("cause", "duplicate"),
                    )
                else:
                    payload = realtime_available_event(t, config.public_base_url, key)
                for _ in range(times):
                    outcome = await deliver(client, target, payload)
                    log.info("webhook %s -> %s: %s", payload["eventType"], target.url, outcome)
                    results.append(
                        {"id": payload.get(key, payload.get("transcription", {})).get("id"), **outcome}
                    )
        return JSONResponse({"deliveries": results})

    async def get_faults(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse({"rules": fault_state.as_list()})

    async def set_faults(_request: Request, body: dict[str, Any]) -> Response:
        rules = [FaultRule.from_dict(rule) for rule in body.get("rules", [])]
        if body.get("append"):
            fault_state.rules.extend(rules)
        else:
            fault_state.rules[:] = rules
        return JSONResponse({"rules": fault_state.as_list()})

    async def get_clock(_request: Request, _body: dict[str, Any]) -> Response:
        return JSONResponse({"now": world.clock.now().isoformat(), "offset_seconds": world.clock.offset})

    async def advance_clock(_request: Request, body: dict[str, Any]) -> Response:
        world.clock.advance(float(body["seconds"]))
        return JSONResponse({"now": world.clock.now().isoformat(), "offset_seconds": world.clock.offset})

    async def get_audit(request: Request, _body: dict[str, Any]) -> Response:
        method = request.query_params.get("method")
        contains = request.query_params.get("path_contains")
        entries = [
            e.as_dict()
            for e in world.audit
            if (not method or e.method == method.upper()) and (not contains or contains in e.path)
        ]
        return JSONResponse({"count": len(entries), "entries": entries})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/admin/reset", admin(reset), methods=["POST"]),
            Route("/admin/realtime-transcriptions", admin(create_realtime), methods=["POST"]),
            Route("/admin/realtime-transcriptions", admin(list_realtime), methods=["GET"]),
            Route("/admin/realtime-transcriptions/undelete", admin(undelete_realtime), methods=["POST"]),
            Route("/admin/webhooks", admin(send_webhooks), methods=["POST"]),
            Route("/admin/faults", admin(get_faults), methods=["GET"]),
            Route("/admin/faults", admin(set_faults), methods=["PUT", "POST"]),
            Route("/admin/clock", admin(get_clock), methods=["GET"]),
            Route("/admin/clock/advance", admin(advance_clock), methods=["POST"]),
            Route("/admin/audit", admin(get_audit), methods=["GET"]),
            Route(API_PREFIX + "/{path:path}", api, methods=methods),
        ]
    )
