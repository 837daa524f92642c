"""Twilio Conversational Intelligence v2 (``/v2``): Services, Transcripts, Sentences, Media,
OperatorResults and their encrypted variants. Basic auth with the account SID and its primary or
secondary auth token, or an API key (:mod:`.credentials`); form-encoded requests, JSON responses,
Twilio's error body for every refusal (an unknown path included: 20404).

Lists page as Twilio's do: ``meta.url`` is the page itself (with its ``PageToken``),
``next_page_url`` carries a ``PA…`` token (the items after this page), ``previous_page_url`` a ``PB…``
token (the page before this one), ``first_page_url`` none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver.core.timestamps import parse_timestamp
from archiver.simulator.credentials import TwilioAccounts
from archiver.simulator.guard import ApiGuard
from archiver.simulator.resources import TwilioService, TwilioTranscript, iso_seconds
from archiver.simulator.state import World
from archiver.simulator.twilio_common import (
    BadParameter,
    operator_result,
    twilio_error,
)
from archiver.simulator.twilio_media import TwilioDownloads
from archiver.simulator.twilio_paging import page_size, paged


class TwilioApi:
    def __init__(
        self,
        world: World,
        guard_factory: Callable[..., ApiGuard],
        accounts: TwilioAccounts,
        base_url: str,
        media_base_url: str,
    ) -> None:
        self.world = world
        self.accounts = accounts
        self.base_url = base_url.rstrip("/")
        self.media_base_url = media_base_url.rstrip("/")
        self.downloads = TwilioDownloads(world, accounts.default, media_base_url)
        # Every resource belongs to an account: a request sees its own account's only (404 otherwise).
        self.guard = guard_factory("twilio", accounts.authenticate, self._error, accounts.principal)

    @staticmethod
    def _error(status: int, _reason: str, headers: dict[str, str] | None) -> Response:
        return twilio_error(status, None, headers)

    # --- helpers ----------------------------------------------------------------------------------

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def _transcript(self, sid: str, request: Request) -> TwilioTranscript | None:
        transcript = self.world.transcripts.get(sid)
        if transcript is None or not transcript.live:
            return None
        return transcript if transcript.account_sid == self.accounts.authenticate(request) else None

    def transcript_json(self, t: TwilioTranscript) -> dict[str, Any]:
        now = self.world.clock.now()
        status = t.status(now)
        url = f"{self.base_url}/v2/Transcripts/{t.sid}"
        return {
            "account_sid": t.account_sid,
            "service_sid": t.service_sid,
            "sid": t.sid,
            "date_created": iso_seconds(t.created_at),
            "date_updated": iso_seconds(min(now, t.finished_at)),
            "status": status,
            "channel": t.channel,
            "data_logging": False,
            "language_code": t.language_code,
            "customer_key": t.customer_key,
            "media_start_time": None,
            "duration": int(t.media_duration) if status == "completed" else 0,
            "url": url,
            "redaction": t.redaction,
            "encryption_credential_sid": None,
            "links": {
                "sentences": f"{url}/Sentences",
                "encrypted_sentences": f"{url}/Sentences/Encrypted",
                "media": f"{url}/Media",
                "operator_results": f"{url}/OperatorResults",
                "encrypted_operator_results": f"{url}/OperatorResults/Encrypted",
            },
        }

    def service_json(self, s: TwilioService) -> dict[str, Any]:
        return {
            "account_sid": s.account_sid,
            "auto_redaction": s.auto_redaction,
            "media_redaction": s.media_redaction,
            "auto_transcribe": s.auto_transcribe,
            "data_logging": False,
            "date_created": iso_seconds(s.date_created),
            "date_updated": iso_seconds(s.date_updated),
            "friendly_name": s.friendly_name,
            "language_code": s.language_code,
            "sid": s.sid,
            "unique_name": s.unique_name,
            "url": f"{self.base_url}/v2/Services/{s.sid}",
            "webhook_url": s.webhook_url,
            "webhook_http_method": s.webhook_http_method or "NULL",
            "read_only_attached_operator_sids": [],
            "version": s.version,
            "encryption_credential_sid": None,
        }

    def operator_result(self, t: TwilioTranscript, index: int) -> dict[str, Any]:
        return operator_result(self.world, self.base_url, t, index)

    def media_token(self, sid: str) -> str:
        return self.downloads.token(sid)

    def media_url(self, t: TwilioTranscript) -> str:
        return self.downloads.url(t)

    # --- Services ---------------------------------------------------------------------------------

    async def services(self, request: Request) -> Response:
        if request.method == "POST":
            form = await self._form(request)
            if not form.get("UniqueName"):
                return twilio_error(400, "Missing required parameter UniqueName in the post body")
            method = form.get("WebhookHttpMethod")
            if method is not None and method.upper() not in ("GET", "POST", "NULL"):
                return twilio_error(400, "WebhookHttpMethod must be GET, POST or NULL")
            service = self.world.add_service(
                form["UniqueName"],
                account_sid=self.accounts.authenticate(request),
                friendly_name=form.get("FriendlyName"),
                webhook_url=form.get("WebhookUrl"),
                webhook_http_method=method.upper() if method and method.upper() != "NULL" else None,
                auto_transcribe=form.get("AutoTranscribe", "").lower() == "true",
                auto_redaction=form.get("AutoRedaction", "").lower() == "true",
                media_redaction=form.get("MediaRedaction", "").lower() == "true",
                language_code=form.get("LanguageCode"),
            )
            return JSONResponse(self.service_json(service), status_code=201)
        size = page_size(request, 1000)
        account = self.accounts.authenticate(request)
        items = sorted(
            (s for s in self.world.services.values() if s.live and s.account_sid == account),
            key=lambda s: s.sid,
        )
        return paged(request, self.base_url, "services", items, size, lambda s: [s.sid], self.service_json)

    async def service(self, request: Request) -> Response:
        service = self.world.services.get(request.path_params["sid"])
        if service is None or not service.live or service.account_sid != self.accounts.authenticate(request):
            return twilio_error(404, f"The requested resource {request.url.path} was not found")
        if request.method == "DELETE":
            self.world.delete(service)
            return Response(status_code=204)
        if request.method == "POST":
            form = await self._form(request)
            if "WebhookUrl" in form:
                service.webhook_url = form["WebhookUrl"] or None
            if "WebhookHttpMethod" in form:
                method = form["WebhookHttpMethod"].upper()
                if method not in ("GET", "POST", "NULL"):
                    return twilio_error(400, "WebhookHttpMethod must be GET, POST or NULL")
                service.webhook_http_method = None if method == "NULL" else method
            if "FriendlyName" in form:
                service.friendly_name = form["FriendlyName"]
            for field, name in (("auto_redaction", "AutoRedaction"), ("auto_transcribe", "AutoTranscribe")):
                if name in form:
                    setattr(service, field, form[name].lower() == "true")
            service.version += 1
            service.date_updated = self.world.clock.now()
        return JSONResponse(self.service_json(service))

    # --- Transcripts ------------------------------------------------------------------------------

    async def transcripts(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._create_transcript(request)
        size = page_size(request, 1000)
        q = request.query_params
        now = self.world.clock.now()
        bounds = {}
        for name in ("AfterDateCreated", "BeforeDateCreated", "AfterStartTime", "BeforeStartTime"):
            if name in q:
                bounds[name] = parse_timestamp(q[name])
                if bounds[name] is None:
                    raise BadParameter(f"{name} is not a valid date-time")

        account = self.accounts.authenticate(request)

        def wanted(t: TwilioTranscript) -> bool:
            if not t.live or t.account_sid != account:
                return False
            if q.get("ServiceSid") and t.service_sid != q["ServiceSid"]:
                return False
            if q.get("Status") and t.status(now) != q["Status"]:
                return False
            if q.get("LanguageCode") and t.language_code != q["LanguageCode"]:
                return False
            if (
                q.get("SourceSid")
                and t.channel.get("media_properties", {}).get("source_sid") != q["SourceSid"]
            ):
                return False
            for name, bound in bounds.items():
                assert bound is not None
                if name.startswith("After") and t.created_at < bound:
                    return False
                if name.startswith("Before") and t.created_at >= bound:
                    return False
            return True

        items = sorted(
            filter(wanted, self.world.transcripts.values()), key=lambda t: (-t.created_at.timestamp(), t.sid)
        )
        return paged(
            request,
            self.base_url,
            "transcripts",
            items,
            size,
            lambda t: [-t.created_at.timestamp(), t.sid],
            self.transcript_json,
        )

    async def _create_transcript(self, request: Request) -> Response:
        form = await self._form(request)
        service = self.world.services.get(form.get("ServiceSid", ""))
        if service is None or not service.live or service.account_sid != self.accounts.authenticate(request):
            return twilio_error(400, "ServiceSid must name an existing Service")
        try:
            channel = json.loads(form.get("Channel", ""))
        except ValueError:
            return twilio_error(400, "Channel must be a JSON object")
        props = channel.get("media_properties") if isinstance(channel, dict) else None
        if not isinstance(props, dict) or not (props.get("media_url") or props.get("source_sid")):
            return twilio_error(400, "Channel.media_properties needs media_url or source_sid")
        key = form.get("CustomerKey")
        if key is not None and len(key) > 64:
            return twilio_error(400, "CustomerKey is longer than 64 characters")
        transcript = self.world.add_transcript(service.sid, channel, customer_key=key)
        return JSONResponse(self.transcript_json(transcript), status_code=202)

    async def transcript(self, request: Request) -> Response:
        transcript = self._transcript(request.path_params["sid"], request)
        if transcript is None:
            return twilio_error(404, f"The requested resource {request.url.path} was not found")
        if request.method == "DELETE":
            self.world.delete(transcript)
            return Response(status_code=204)
        return JSONResponse(self.transcript_json(transcript))

    def _completed(self, request: Request) -> TwilioTranscript | Response:
        transcript = self._transcript(request.path_params["sid"], request)
        if transcript is None or transcript.status(self.world.clock.now()) != "completed":
            return twilio_error(404, f"The requested resource {request.url.path} was not found")
        return transcript

    def _redacted(self, request: Request, transcript: TwilioTranscript) -> bool:
        raw = request.query_params.get("Redacted")
        return transcript.redaction if raw is None else raw.lower() == "true"

    async def sentences(self, request: Request) -> Response:
        transcript = self._completed(request)
        if isinstance(transcript, Response):
            return transcript
        size = page_size(request, 5000)
        redacted = self._redacted(request, transcript)
        return paged(
            request,
            self.base_url,
            "sentences",
            range(transcript.sentence_count),
            size,
            lambda i: [i],
            lambda i: self.world.sentence_at(transcript, i, redacted),
            ordered_ints=True,
        )

    async def media(self, request: Request) -> Response:
        transcript = self._completed(request)
        if isinstance(transcript, Response):
            return transcript
        return JSONResponse(
            {
                "account_sid": transcript.account_sid,
                "media_url": self.media_url(transcript),
                "service_sid": transcript.service_sid,
                "sid": transcript.sid,
                "url": f"{self.base_url}/v2/Transcripts/{transcript.sid}/Media",
            }
        )

    async def operator_results(self, request: Request) -> Response:
        transcript = self._completed(request)
        if isinstance(transcript, Response):
            return transcript
        size = page_size(request, 1000)
        items = list(range(transcript.operator_result_count))
        return paged(
            request,
            self.base_url,
            "operator_results",
            items,
            size,
            lambda i: [i],
            lambda i: self.operator_result(transcript, i),
        )

    async def operator_result_one(self, request: Request) -> Response:
        transcript = self._completed(request)
        if isinstance(transcript, Response):
            return transcript
        for i in range(transcript.operator_result_count):
            result = self.operator_result(transcript, i)
            if result["operator_sid"] == request.path_params["operator_sid"]:
                return JSONResponse(result)
        return twilio_error(404, f"The requested resource {request.url.path} was not found")

    def _encrypted_url(self, transcript: TwilioTranscript, name: str) -> str:
        return self.downloads.encrypted_url(transcript, name)

    async def encrypted_sentences(self, request: Request) -> Response:
        transcript = self._completed(request)
        if isinstance(transcript, Response):
            return transcript
        return JSONResponse(
            {
                "location": self._encrypted_url(transcript, "sentences"),
                "transcript_sid": transcript.sid,
                "url": f"{self.base_url}/v2/Transcripts/{transcript.sid}/Sentences/Encrypted",
            }
        )

    async def encrypted_operator_results(self, request: Request) -> Response:
        transcript = self._completed(request)
        if isinstance(transcript, Response):
            return transcript
        return JSONResponse(
            {
                "locations": [
                    self._encrypted_url(transcript, f"operator-results-{i}")
                    for i in range(transcript.operator_result_count)
                ],
                "transcript_sid": transcript.sid,
                "url": f"{self.base_url}/v2/Transcripts/{transcript.sid}/OperatorResults/Encrypted",
            }
        )

    async def not_found(self, request: Request) -> Response:
        return twilio_error(404, f"The requested resource {request.url.path} was not found")

    def routes(self) -> list[Route]:
        def g(handler: Callable[[Request], Any]) -> Any:
            async def with_bad_parameters(request: Request) -> Response:
                try:
                    response: Response = await handler(request)
                except BadParameter as exc:
                    return twilio_error(400, str(exc))
                return response

            return self.guard(with_bad_parameters)

        tr = "/v2/Transcripts/{sid}"
        return [
            Route("/v2/Services", g(self.services), methods=["GET", "POST"]),
            Route("/v2/Services/{sid}", g(self.service), methods=["GET", "POST", "DELETE"]),
            Route("/v2/Transcripts", g(self.transcripts), methods=["GET", "POST"]),
            Route(tr, g(self.transcript), methods=["GET", "DELETE"]),
            Route(tr + "/Sentences", g(self.sentences), methods=["GET"]),
            Route(tr + "/Sentences/Encrypted", g(self.encrypted_sentences), methods=["GET"]),
            Route(tr + "/OperatorResults/Encrypted", g(self.encrypted_operator_results), methods=["GET"]),
            Route(tr + "/Media", g(self.media), methods=["GET"]),
            Route(tr + "/OperatorResults", g(self.operator_results), methods=["GET"]),
            Route(tr + "/OperatorResults/{operator_sid}", g(self.operator_result_one), methods=["GET"]),
            Route("/v2/{rest:path}", g(self.not_found), methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
