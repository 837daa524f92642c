"""Bandwidth's OAuth 2.0 client credentials grant (docs/providers.md, "Bandwidth: authentication").

``POST {token_url}`` with ``Authorization: Basic base64(client_id:client_secret)`` and the form body
``grant_type=client_credentials`` answers ``{"access_token", "token_type": "Bearer", "expires_in"}``;
every API request then carries ``Authorization: Bearer <access_token>``.

Invariants:

* one token per process (per :class:`TokenSource`), shared by its threads: fetched when first needed,
  reused until shortly before it expires (60 s, or a quarter of a shorter lifetime), and fetched by
  one thread while the others wait for it;
* a token lives only in this process's memory: never logged (every redacting filter learns it), never
  written to the database, Redis or S3, and sent only below the configured API base URL;
* a 401/403 to a cached token drops it and the request is sent once more with a new one; a 401/403
  to a new token, or the token endpoint refusing the client, is :class:`CredentialsRefused`: a problem
  of the account, which the pipeline pauses (its items are not at fault);
* the token request has explicit timeouts; its 429 is :class:`RateLimited` with the Retry-After, its
  5xx and dropped connections are retried in place like any provider request;
* a refused client secret is read again from its file (``ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE``)
  and, if it changed, tried at once; a failed token request is remembered for a while (a refusal of
  the same secret for a few seconds, a 429 for its Retry-After, a 5xx for two seconds), so that the
  threads that waited for it, and a backlog of items, do not each ask the token endpoint again.

Why not a library: Authlib's httpx client is moving to ``httpx2`` (its ``httpx`` fallback is
deprecated), its synchronous client fetches without a lock, and it reads a 429 body as a token;
httpx-auth fetches once per waiting thread and folds every error status into one exception. The
grant itself is one form POST; what is ours is the sharing, the timing and the classification.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass, field

import httpx

from archiver.core.clock import Clock, SystemClock
from archiver.core.logging import remember_token
from archiver.providers.credentials import REFUSED_STATUSES, SecretSource, basic_header, require_base_url
from archiver.providers.errors import CredentialsRefused, ProviderError, ProviderUnavailable, RateLimited
from archiver.providers.http import ProviderHttp, timeouts

__all__ = ["AccessToken", "BearerAuth", "TokenSource"]

log = logging.getLogger(__name__)

#: A token is replaced once fewer than this many seconds of it are left (Bandwidth's SDK: 60 s) ...
REFRESH_MARGIN_SECONDS = 60.0
#: ... or, for a short-lived token, once less than this share of its lifetime is left.
SHORT_LIFETIME_SHARE = 0.25
#: How long a refused secret is not offered again (unless its file changes meanwhile).
REFUSAL_HOLD_SECONDS = 15.0
#: How long a token endpoint that failed (5xx, unreachable) is not asked again.
FAILURE_HOLD_SECONDS = 2.0
#: The lifetime assumed when the token endpoint does not say (RFC 6749 §5.1 leaves it optional).
DEFAULT_LIFETIME_SECONDS = 3600.0


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    issued_at: float
    expires_at: float

    def usable(self, now: float) -> bool:
        lifetime = self.expires_at - self.issued_at
        return now < self.expires_at - min(REFRESH_MARGIN_SECONDS, lifetime * SHORT_LIFETIME_SHARE)


@dataclass(frozen=True)
class _Held:
    """A failed token request, answered again to whoever asks before ``until``."""

    until: float
    error: ProviderError

    def again(self, now: float) -> ProviderError:
        """A fresh copy (one exception object raised in many threads would pile up tracebacks)."""
        e = self.error
        if isinstance(e, CredentialsRefused):
            return CredentialsRefused(str(e), provider=e.provider, status=e.status)
        if isinstance(e, RateLimited):
            return RateLimited(str(e), retry_after=max(0.0, self.until - now))
        copy = ProviderUnavailable(str(e), status=e.status)
        copy.retried_in_place = True
        return copy


def _describe_token_error(response: httpx.Response) -> str:
    """RFC 6749 §5.2 ``{error, error_description}``, Bandwidth's ``{type, description}``, or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        if "error" in body:
            return f"{body.get('error')}: {body.get('error_description') or ''}".rstrip(": ")
        if "description" in body:
            return f"{body.get('type')}: {body.get('description')}"
    return response.text[:200]


class TokenSource(ProviderHttp):
    """The access token of one client id, for one process."""

    provider_name = "bandwidth"
    describe_error = staticmethod(_describe_token_error)

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        secret: SecretSource,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        hold_seconds: float = REFUSAL_HOLD_SECONDS,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._secret = secret
        self._clock = clock or SystemClock()
        self._hold = hold_seconds
        self._http = httpx.Client(
            timeout=timeouts(connect_timeout, read_timeout),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "call-archiver"},
        )
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._held: _Held | None = None
        #: Tokens this process obtained (for tests and benchmarks).
        self.fetches = 0

    def close(self) -> None:
        self._http.close()

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def current(self) -> tuple[str, bool]:
        """The token to send, and whether it is new (obtained while this request waited): a
        refusal of a new token is the credentials', not the token's age."""
        token = self._token
        if token is not None and token.usable(self._now()):
            return token.value, False
        with self._lock:
            token = self._token
            if token is not None and token.usable(self._now()):  # another thread fetched it
                return token.value, True
            self._token = self._fetch(honour_hold=True)
            return self._token.value, True

    def invalidate(self, value: str) -> None:
        """Drop ``value`` if it is still the cached token (a 401/403 answered it)."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def forget(self) -> None:
        """Drop the token and any failure held: the next request asks the token endpoint (a check
        of the credentials)."""
        with self._lock:
            self._token = self._held = None

    def refresh(self) -> None:
        """Fetch a new token now, whatever the cache and any failure held."""
        with self._lock:
            self._token = self._held = None
            self._token = self._fetch(honour_hold=False)

    def _fetch(self, *, honour_hold: bool) -> AccessToken:
        held, now = self._held, self._now()
        if honour_hold and held is not None and now < held.until and not self._retry_refused_secret(held):
            raise held.again(now)
        try:
            try:
                token = self._request_token()
            except CredentialsRefused:
                if not self._secret.reload():
                    raise
                token = self._request_token()  # the file holds a new secret: try it at once
        except CredentialsRefused as refused:
            self._hold_failure(refused, self._hold)
            raise
        except RateLimited as limited:
            self._hold_failure(limited, limited.retry_after if limited.retry_after is not None else 1.0)
            raise
        except ProviderUnavailable as down:
            self._hold_failure(down, FAILURE_HOLD_SECONDS)
            raise
        self._held = None
        return token

    def _retry_refused_secret(self, held: _Held) -> bool:
        """A refusal held, but the secret's file now holds another: worth asking again at once."""
        return isinstance(held.error, CredentialsRefused) and self._secret.reload()

    def _hold_failure(self, error: ProviderError, seconds: float) -> None:
        self._held = _Held(self._now() + seconds, error)

    def _refused(self, status: int) -> bool:
        """The token endpoint refusing the request (any 4xx but 429) is the account's problem:
        wrong or revoked credentials, or a wrong token URL. It is never an item's."""
        return 400 <= status < 500 and status != 429

    def _request_token(self) -> AccessToken:
        issued = self._now()
        headers = {"Authorization": basic_header(self._client_id, self._secret.get())}
        form = {"grant_type": "client_credentials"}
        response = self._with_retries(
            "POST",
            lambda: self._request_once("POST", self.token_url, data=form, headers=headers),
            in_place=True,  # asking for a token again is harmless
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        value = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:  # not a token endpoint: a configuration problem
            raise CredentialsRefused(
                f"POST {self.token_url}: HTTP {response.status_code} without an access_token "
                "(is ARCHIVER_BANDWIDTH_TOKEN_URL right?)",
                provider="bandwidth",
                status=response.status_code,
            )
        assert isinstance(data, dict)
        token_type = str(data.get("token_type") or "Bearer")
        if token_type.lower() != "bearer":
            raise CredentialsRefused(
                f"POST {self.token_url}: token type {token_type[:40]!r}, not Bearer", provider="bandwidth"
            )
        remember_token(value)
        try:
            lifetime = float(data.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        self.fetches += 1
        log.info("bandwidth access token obtained for client %s (valid %.0f s)", self._client_id, lifetime)
        return AccessToken(value, issued, issued + max(lifetime, 1.0))


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer`` from a :class:`TokenSource`, only below ``base_url``; a 401/403 to a
    cached token is answered by one more try with a new token."""

    def __init__(self, tokens: TokenSource, base_url: str) -> None:
        self._tokens = tokens
        self._base_url = base_url

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        require_base_url(request, self._base_url, "Bandwidth access token")
        token, new = self._tokens.current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code in REFUSED_STATUSES and not new:
            self._tokens.invalidate(token)
            token, _new = self._tokens.current()
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
