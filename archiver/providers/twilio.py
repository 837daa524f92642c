"""Twilio Conversational Intelligence v2 client (httpx, Basic auth with an API key or the account
SID and auth token, form-encoded requests, explicit timeouts).

Lists are followed by ``meta.next_page_url``, but only while it stays on the configured base URL.
Media URLs are fetched without credentials, and only from the configured media hosts. A 401/403 is
:class:`~archiver.providers.errors.CredentialsRefused` (a problem of the account), once the secret
has been read again from its file, if it came from one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from archiver.core.clock import Clock, SystemClock
from archiver.core.exposure import origin
from archiver.core.ids import validate
from archiver.providers.credentials import RereadableBasicAuth, SecretSource
from archiver.providers.errors import ProviderRejected, ProviderUnavailable
from archiver.providers.http import DeleteOutcome, FetchedDocument, ProviderHttp, timeouts

log = logging.getLogger(__name__)

RATE_HEADERS = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-config")


def describe_twilio_error(response: httpx.Response) -> str:
    """Both error shapes: legacy ``{code, message, more_info, status}`` and RFC 9457."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("message") or body.get("detail") or body.get("title")
        return f"{code}: {message}" if code else str(message)
    return response.text[:200]


def host_allowed(url: str, patterns: list[str]) -> bool:
    """``url`` may be fetched: ``https`` on the default port from a listed host (``*.example.com``
    matches its subdomains), or exactly a listed origin (``http://127.0.0.1:9000``: the simulator)."""
    wanted = origin(url)
    parts = urlsplit(url)
    if wanted is None or parts.username or parts.password:
        return False
    scheme, host, port = wanted
    plain_https = scheme == "https" and port == 443
    for pattern in patterns:
        if "://" in pattern:
            if origin(pattern) == wanted:
                return True
        elif plain_https and (host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))):
            return True
    return False


class TwilioClient(ProviderHttp):
    """``username``: an API key SID (SK…) whose ``secret`` is the key's secret; by default the
    account SID, whose ``secret`` is the auth token."""

    describe_error = staticmethod(describe_twilio_error)

    provider_name = "twilio"

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        secret: str | SecretSource,
        media_hosts: list[str],
        username: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account_sid = validate("twilio_account", account_sid)
        self.media_hosts = media_hosts
        self._clock = clock or SystemClock()
        limits = httpx.Limits(max_connections=10, max_keepalive_connections=5)
        secret = secret if isinstance(secret, SecretSource) else SecretSource(secret)
        self._http = httpx.Client(
            auth=RereadableBasicAuth(username or account_sid, secret, self.base_url, "Twilio credentials"),
            timeout=timeouts(connect_timeout, read_timeout),
            limits=limits,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "call-archiver"},
        )
        # Media lives elsewhere (pre-signed URLs): never send the account's credentials there.
        self._media = httpx.Client(
            timeout=timeouts(connect_timeout, read_timeout),
            limits=limits,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "call-archiver"},
        )

    def close(self) -> None:
        self._http.close()
        self._media.close()

    def check_credentials(self) -> None:
        """Raise unless Twilio accepts the credentials now: the cheapest request on the resource the
        archiver works with (one transcript of the list)."""
        self._get_json(f"{self.base_url}/v2/Transcripts?PageSize=1")

    def transcript_url(self, sid: str) -> str:
        return f"{self.base_url}/v2/Transcripts/{validate('twilio_transcript', sid)}"

    # --- operations -------------------------------------------------------------------------------

    def get_transcript(self, sid: str) -> FetchedDocument:
        return self._get_json(self.transcript_url(sid))

    def create_transcript(
        self, service_sid: str, channel: dict[str, Any], customer_key: str | None
    ) -> FetchedDocument:
        form = {"ServiceSid": validate("twilio_service", service_sid), "Channel": json.dumps(channel)}
        if customer_key:
            form["CustomerKey"] = customer_key
        response = self._request("POST", f"{self.base_url}/v2/Transcripts", data=form)
        return FetchedDocument(response.content, response.headers.get("content-type", ""), response.json())

    def delete_transcript(self, sid: str) -> DeleteOutcome:
        """204 deleted; 404 already gone."""
        return self._delete(self.transcript_url(sid))

    def transcript_exists(self, sid: str) -> bool:
        return self._exists(self.transcript_url(sid))

    def pages(self, path: str, key: str, params: dict[str, str]) -> Iterator[list[Any]]:
        """Every page of a list, following ``meta.next_page_url`` verbatim while it stays on our host."""
        url: str | None = f"{self.base_url}{path}?{urlencode(params)}"
        while url:
            items, url = self.page(url, key)
            yield items

    def transcript_page(self, next_url: str | None, params: dict[str, str]) -> tuple[list[Any], str | None]:
        """One page of ``GET /v2/Transcripts`` (``next_url``: a previous page's ``meta.next_page_url``)."""
        return self.page(next_url or f"{self.base_url}/v2/Transcripts?{urlencode(params)}", "transcripts")

    def page(self, url: str, key: str) -> tuple[list[Any], str | None]:
        """One page of a list and the URL of the next (``None`` at the end); never leaves our host."""
        if not url.startswith(self.base_url + "/"):
            raise ProviderRejected(f"next_page_url {url!r} leaves {self.base_url}")
        data = self._get_json(url).data
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ProviderUnavailable(f"GET {url}: no {key!r} list in the page")
        meta = data.get("meta") or {}
        following = meta.get("next_page_url") or data.get("next_page_uri")
        if isinstance(following, str) and following.startswith("/"):
            following = self.base_url + following
        return items, following if isinstance(following, str) and following else None

    def media_url(self, sid: str, redacted: bool) -> str | None:
        data = self._get_json(f"{self.transcript_url(sid)}/Media?Redacted={str(redacted).lower()}").data
        url = data.get("media_url") if isinstance(data, dict) else None
        return url if isinstance(url, str) and url else None

    @contextmanager
    def stream_media(self, url: str) -> Iterator[httpx.Response]:
        shown = url.split("?", maxsplit=1)[0]  # the query of a pre-signed URL is a credential
        if not host_allowed(url, self.media_hosts):
            raise ProviderRejected(f"media_url host of {shown!r} is not in ARCHIVER_TWILIO_MEDIA_HOSTS")
        with self._stream(self._media, url, shown) as response:
            yield response

    # --- plumbing ---------------------------------------------------------------------------------

    def _on_response(self, response: httpx.Response, url: str) -> None:
        rate = {h: response.headers[h] for h in RATE_HEADERS if h in response.headers}
        if rate:
            level = logging.INFO if response.status_code == 429 else logging.DEBUG
            log.log(level, "twilio rate limit %s: %s", url, rate)
