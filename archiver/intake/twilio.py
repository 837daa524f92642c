"""Twilio's transcript-available webhook (docs/providers.md, "Twilio Conversational Intelligence").

The ``X-Twilio-Signature`` is checked exactly as Twilio computes it: base64(HMAC-SHA1(auth token,
URL + every parameter name followed by its values, names sorted)). The URL is the one Twilio
requested, rebuilt from ``ARCHIVER_PUBLIC_BASE_URL`` so that it works behind a proxy, and tried with
and without the default port. A JSON body is signed through the URL's ``bodySHA256`` parameter, which
must be the SHA-256 of the body. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

from archiver.core.ids import InvalidId, validate
from archiver.db.models import Provider
from archiver.intake.untrusted import EventRejected, check_strings, load_json_object
from archiver.pipeline.events import AcceptedEvent
from archiver.pipeline.items import AnnouncedItem

TRANSCRIPT_AVAILABLE = "voice_intelligence_transcript_available"


def compute_signature(auth_token: str, url: str, params: Mapping[str, Sequence[str]]) -> str:
    payload = url
    for name in sorted(set(params)):
        for value in sorted(set(params[name])):
            payload += name + value
    return base64.b64encode(
        hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    ).decode()


def _port_variants(url: str) -> list[str]:
    """The URL as given, with the scheme's default port added, and without any port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    with_port = urlunsplit(
        (parts.scheme, f"{host}:{parts.port or default}", parts.path, parts.query, parts.fragment)
    )
    without_port = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    variants = [url]
    if parts.port in (None, default):
        variants += [with_port, without_port]
    return list(dict.fromkeys(variants))


def signature_valid(
    auth_token: str, url: str, params: Mapping[str, Sequence[str]], signature: str | None, body: bytes | None
) -> bool:
    """``params``: the form fields (POST form); empty for JSON and GET. ``body``: the raw JSON body."""
    if not signature:
        return False
    given = signature.encode("utf-8", "surrogateescape")  # bytes: any header compares, none raises
    if body is not None:
        claimed = parse_qs(urlsplit(url).query).get("bodySHA256", [""])[0]
        actual = hashlib.sha256(body).hexdigest().encode("ascii")
        if not hmac.compare_digest(actual, claimed.encode("utf-8", "surrogateescape")):
            return False
    matches = [
        hmac.compare_digest(compute_signature(auth_token, v, params).encode("ascii"), given)
        for v in _port_variants(url)
    ]
    return any(matches)


def parse_twilio_event(
    fields: Mapping[str, str], raw: str, expected_account: str | None
) -> AcceptedEvent | None:
    """The event's item, or ``None`` for other event types (acknowledged and ignored)."""
    event_type = fields.get("event_type") or TRANSCRIPT_AVAILABLE  # older payloads carry none
    if event_type != TRANSCRIPT_AVAILABLE:
        return None
    try:
        transcript_sid = validate("twilio_transcript", fields.get("transcript_sid"))
        account_sid = validate("twilio_account", fields.get("account_sid"))
        if fields.get("service_sid"):
            validate("twilio_service", fields.get("service_sid"))
    except InvalidId as exc:
        raise EventRejected(422, "invalid_id", str(exc)) from None
    if expected_account and account_sid != expected_account:
        raise EventRejected(422, "unexpected_account", f"account {account_sid} is not archived here")
    key = (
        "twilio:" + hashlib.sha256(f"{event_type}\x1f{account_sid}\x1f{transcript_sid}".encode()).hexdigest()
    )
    item = AnnouncedItem.twilio_transcript(account_sid, transcript_sid)
    return AcceptedEvent(Provider.TWILIO, event_type, key, account_sid, raw, item)


def signed_params(
    content_type: str, body: bytes, query: Mapping[str, str]
) -> tuple[dict[str, list[str]], bytes | None]:
    """What the signature covers besides the URL: the form fields (POST form), or nothing (GET,
    JSON); and the raw JSON body, whose SHA-256 the URL carries. Nothing is parsed but a flat form."""
    if content_type.startswith("application/json"):
        return {}, body
    if body:
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False), None
        except UnicodeDecodeError:
            raise EventRejected(400, "bad_request", "form body is not UTF-8") from None
    return {}, None  # GET: the parameters are in the signed URL


def event_fields(
    content_type: str, body: bytes, query: Mapping[str, str], form: Mapping[str, list[str]]
) -> dict[str, str]:
    """The event's fields, once its signature is known good: JSON is parsed only then (bounded
    nesting), and no field may hold what cannot be stored."""
    if content_type.startswith("application/json"):
        data, _text = load_json_object(body)
        return {k: str(v) for k, v in data.items() if v is not None}
    fields = {k: v[-1] for k, v in form.items()} if body else dict(query)
    check_strings(fields)
    return fields
