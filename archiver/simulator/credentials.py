"""The providers' credentials as they are today (docs/providers.md, "Bandwidth: authentication").

* **Bandwidth**: OAuth 2.0 client credentials only, since Bandwidth decommissioned API users on
  2026-12-02. ``POST /api/v1/oauth2/token`` (Basic ``client_id:client_secret``, form
  ``grant_type=client_credentials``) answers ``{access_token, token_type, expires_in}``; the Voice API
  takes ``Authorization: Bearer``. An expired, unknown or revoked token, and HTTP Basic, are answered
  401 in Bandwidth's error shape (Basic is accepted only with the legacy flag, to show the old world);
  a token for an account outside the credential's scope is answered 403. A credential may hold two
  secrets while one is rotated.
* **Twilio**: HTTP Basic with the account SID and its primary or secondary auth token, or with an API
  key (``SK…``) and its secret. Webhooks are signed with the primary auth token.

Nothing here is ever logged or put in the audit log: it records token requests like any other, by
method, path and status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["BandwidthClients", "BandwidthOAuth", "TwilioAccounts", "TwilioCredentials", "basic_credentials"]


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header, or ``None``."""
    if not header.startswith("Basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _one_of(value: str, allowed: list[str]) -> bool:
    found = False
    for candidate in allowed:  # every candidate compared, in constant time
        found |= hmac.compare_digest(value.encode(), candidate.encode())
    return found


def oauth_error(status: int, error: str, description: str) -> Response:
    """RFC 6749 §5.2's error body."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@dataclass
class BandwidthOAuth:
    """Bandwidth's token endpoint and the tokens it issued; times on the simulator's clock."""

    client_id: str
    client_secrets: list[str]
    now: Callable[[], datetime]
    token_lifetime: float = 3600.0
    #: The credential's account scope; ``None``: every account.
    accounts: list[str] | None = None
    #: The decommissioned API user, accepted only when given (``--legacy-basic-auth``).
    legacy_user: tuple[str, str] | None = None
    tokens: dict[str, tuple[datetime, list[str] | None]] = field(default_factory=dict, repr=False)
    issued: int = 0
    _defaults: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._defaults = {
            "client_secrets": list(self.client_secrets),
            "token_lifetime": self.token_lifetime,
            "accounts": self.accounts,
            "legacy_user": self.legacy_user,
        }

    def reset(self) -> None:
        """Back to the configuration it started with; tokens already issued stay valid."""
        for name, value in self._defaults.items():
            setattr(self, name, list(value) if isinstance(value, list) else value)

    async def token_endpoint(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        given = basic_credentials(request.headers.get("authorization", ""))
        if given is None or not (
            hmac.compare_digest(given[0].encode(), self.client_id.encode())
            and _one_of(given[1], self.client_secrets)
        ):
            return oauth_error(401, "invalid_client", "Bad client credentials")
        now = self.now()
        self.tokens = {t: v for t, v in self.tokens.items() if v[0] > now}  # forget the expired
        token = secrets.token_urlsafe(32)
        self.tokens[token] = (now + timedelta(seconds=self.token_lifetime), self.accounts)
        self.issued += 1
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_lifetime)},
            headers={"Cache-Control": "no-store"},
        )

    def authenticate(self, request: Request, account_id: str) -> str | int | None:
        """The account (the rate limit's key), or the status refusing the request."""
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            issued = self.tokens.get(header[7:])
            if issued is None or issued[0] <= self.now():
                return None  # unknown, revoked or expired: 401
            scope = issued[1]
            return account_id if scope is None or account_id in scope else 403
        given = basic_credentials(header)
        if given is not None and self.legacy_user is not None:
            user, password = self.legacy_user
            if hmac.compare_digest(given[0].encode(), user.encode()) and _one_of(given[1], [password]):
                return account_id
        return None

    def revoke_all(self) -> int:
        revoked = len(self.tokens)
        self.tokens.clear()
        return revoked

    def configure(self, body: dict[str, Any]) -> None:
        """``token_lifetime``; ``client_secret`` (rotated: the old one is refused from now on) or
        ``client_secrets`` (two during a rotation); ``accounts`` (the scope; null: every account)."""
        if "token_lifetime" in body:
            lifetime = float(body["token_lifetime"])
            if lifetime <= 0:
                raise ValueError("token_lifetime must be positive")
            self.token_lifetime = lifetime
        if "client_secret" in body:
            self.client_secrets = [str(body["client_secret"])]
        if "client_secrets" in body:
            self.client_secrets = [str(s) for s in body["client_secrets"]]
        if not self.client_secrets or not all(self.client_secrets):
            raise ValueError("a credential needs at least one non-empty secret")
        if "accounts" in body:
            self.accounts = None if body["accounts"] is None else [str(a) for a in body["accounts"]]

    def describe(self) -> dict[str, Any]:
        """What the admin API shows: never a secret nor a token; the SHA-256 of each token issued
        and not yet forgotten, so that a test can prove none of them reached a log."""
        now = self.now()
        return {
            "client_id": self.client_id,
            "token_lifetime": self.token_lifetime,
            "accounts": self.accounts,
            "secrets": len(self.client_secrets),
            "tokens_issued": self.issued,
            "tokens_live": sum(1 for expires, _ in self.tokens.values() if expires > now),
            "token_sha256": sorted(hashlib.sha256(t.encode()).hexdigest() for t in self.tokens),
            "legacy_basic_auth": self.legacy_user is not None,
        }


@dataclass
class TwilioCredentials:
    account_sid: str
    auth_token: str
    secondary_auth_token: str | None = None
    #: API keys: SID (SK…) → secret.
    api_keys: dict[str, str] = field(default_factory=dict)
    _defaults: tuple[str, str | None, dict[str, str]] = field(default=("", None, {}), repr=False)

    def __post_init__(self) -> None:
        self._defaults = (self.auth_token, self.secondary_auth_token, dict(self.api_keys))

    def reset(self) -> None:
        auth_token, secondary, api_keys = self._defaults
        self.auth_token, self.secondary_auth_token, self.api_keys = auth_token, secondary, dict(api_keys)

    def authenticate(self, request: Request) -> str | None:
        given = basic_credentials(request.headers.get("authorization", ""))
        if given is None:
            return None
        user, password = given
        if hmac.compare_digest(user.encode(), self.account_sid.encode()):
            tokens = [t for t in (self.auth_token, self.secondary_auth_token) if t]
            return self.account_sid if _one_of(password, tokens) else None
        secret = self.api_keys.get(user)
        return self.account_sid if secret is not None and _one_of(password, [secret]) else None

    def configure(self, body: dict[str, Any]) -> None:
        """``auth_token`` (the primary, which signs webhooks), ``secondary_auth_token`` (null:
        none), ``api_keys`` ({SID: secret}, replacing them all), ``promote_secondary`` (the
        secondary becomes the primary, as in Twilio's console)."""
        if body.get("promote_secondary"):
            if not self.secondary_auth_token:
                raise ValueError("there is no secondary auth token to promote")
            self.auth_token, self.secondary_auth_token = self.secondary_auth_token, None
        if "auth_token" in body:
            self.auth_token = str(body["auth_token"])
        if "secondary_auth_token" in body:
            value = body["secondary_auth_token"]
            self.secondary_auth_token = None if value is None else str(value)
        if "api_keys" in body:
            self.api_keys = {str(k): str(v) for k, v in dict(body["api_keys"]).items()}

    def describe(self) -> dict[str, Any]:
        return {
            "account_sid": self.account_sid,
            "secondary_auth_token": self.secondary_auth_token is not None,
            "api_keys": sorted(self.api_keys),
        }


class BandwidthClients:
    """Every Bandwidth OAuth client the simulator knows: the configured one (``default``), and the
    ones added with ``POST /admin/bandwidth/clients``, each scoped to its accounts as Bandwidth
    scopes a credential. A token works for its client's accounts only (403 for any other)."""

    def __init__(self, default: BandwidthOAuth) -> None:
        self.default = default
        self.added: dict[str, BandwidthOAuth] = {}

    def all(self) -> list[BandwidthOAuth]:
        return [self.default, *self.added.values()]

    def add(self, client_id: str, secret: str, accounts: list[str]) -> BandwidthOAuth:
        if not client_id or not secret or client_id == self.default.client_id:
            raise ValueError("a client needs its own client_id and a secret")
        client = BandwidthOAuth(
            client_id, [secret], self.default.now, self.default.token_lifetime, [str(a) for a in accounts]
        )
        self.added[client_id] = client
        return client

    def get(self, client_id: str) -> BandwidthOAuth:
        found = self.default if client_id == self.default.client_id else self.added.get(client_id)
        if found is None:
            raise KeyError(f"no client {client_id!r}")
        return found

    def reset(self) -> None:
        self.added.clear()
        self.default.reset()

    async def token_endpoint(self, request: Request) -> Response:
        given = basic_credentials(request.headers.get("authorization", ""))
        client = self.added.get(given[0]) if given is not None else None
        return await (client or self.default).token_endpoint(request)

    def _issuer(self, request: Request) -> BandwidthOAuth | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            token = header[7:]
            return next((c for c in self.all() if token in c.tokens), None)
        return None

    def authenticate(self, request: Request, account_id: str) -> str | int | None:
        return (self._issuer(request) or self.default).authenticate(request, account_id)

    def principal(self, request: Request) -> str | None:
        """The client whose token the request carries (the audit's "credential"; not a secret)."""
        issuer = self._issuer(request)
        return issuer.client_id if issuer is not None else None


class TwilioAccounts:
    """Every Twilio account the simulator knows: the configured one and those added with
    ``POST /admin/twilio/accounts``. A request is the account whose SID (or API key) it carries."""

    def __init__(self, default: TwilioCredentials) -> None:
        self.default = default
        self.added: dict[str, TwilioCredentials] = {}

    def all(self) -> list[TwilioCredentials]:
        return [self.default, *self.added.values()]

    def get(self, account_sid: str) -> TwilioCredentials | None:
        return self.default if account_sid == self.default.account_sid else self.added.get(account_sid)

    def add(self, account_sid: str, auth_token: str, api_keys: dict[str, str]) -> TwilioCredentials:
        if not account_sid or not auth_token or self.get(account_sid) is not None:
            raise ValueError("an account needs its own account_sid and an auth token")
        account = TwilioCredentials(account_sid, auth_token, None, dict(api_keys))
        self.added[account_sid] = account
        return account

    def reset(self) -> None:
        self.added.clear()
        self.default.reset()

    def authenticate(self, request: Request) -> str | None:
        for account in self.all():
            found = account.authenticate(request)
            if found is not None:
                return found
        return None

    def principal(self, request: Request) -> str | None:
        """The user of the request's Basic credentials, if they are valid: an AC or SK SID."""
        given = basic_credentials(request.headers.get("authorization", ""))
        return given[0] if given is not None and self.authenticate(request) is not None else None
