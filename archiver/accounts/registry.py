"""The provider accounts one deployment serves, each with its credentials, bucket and rules.

A registry is a value: loaded (from ``ARCHIVER_ACCOUNTS_FILE``, or from the single-account
environment variables) and validated whole, then swapped for a newer one when the file changes
(:mod:`archiver.accounts.watch`). Nothing here does I/O but reading secret files.

Invariant: a secret is held as a :class:`Secret` (its value hidden from ``repr`` and logs, its file
remembered so a refused value can be read again); no secret is ever written inline in the file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from archiver.core.settings.values import DeletionPolicy

__all__ = [
    "ANY_ACCOUNT",
    "Account",
    "BandwidthAccount",
    "Registry",
    "Secret",
    "StorageTarget",
    "TwilioAccount",
]

Provider = Literal["bandwidth", "twilio"]

_FINGERPRINT_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class Secret:
    """A secret's value, where it came from (``file:/path`` or ``env:NAME``) and its file, if any,
    to read again when the provider refuses the value."""

    value: SecretStr
    source: str
    path: str | None = None

    def get(self) -> str:
        return self.value.get_secret_value()


@dataclass(frozen=True)
class StorageTarget:
    """Where an account's archive goes: its bucket and prefix, and how to reach them."""

    bucket: str | None
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    #: SSE-KMS with this key on every object written; checked by ``archiver accounts check``.
    kms_key_id: str | None = None
    #: The bucket must have Object Lock enabled (checked, never assumed).
    object_lock: bool = False
    #: A role in the customer's AWS account, assumed with ``external_id`` ("bring your own bucket").
    role_arn: str | None = None
    external_id: str | None = None
    role_session_seconds: int = 3600
    #: Where AssumeRole is asked: by default the storage endpoint when it has one (S3-compatible
    #: servers serve STS there), else AWS's regional STS.
    sts_endpoint_url: str | None = None

    @property
    def client_key(self) -> tuple[str, str | None, str | None, str | None, int, str | None]:
        """Accounts whose targets share this key share one S3 client (one connection pool): the
        bucket is a parameter of each request, the credentials and endpoint are not."""
        sts = self.sts_endpoint_url or self.endpoint_url
        return (
            self.region,
            self.endpoint_url,
            self.role_arn,
            self.external_id,
            self.role_session_seconds,
            sts,
        )


@dataclass(frozen=True)
class _Account:
    account_id: str
    storage: StorageTarget
    deletion_policy: DeletionPolicy | None = None
    requests_per_second: float | None = None
    retention_days: float | None = None

    def fingerprint(self) -> str:
        """Changes whenever anything of the entry does, its secrets' values included: what a cached
        client was built from. Keyed with a random key of this process, so that it says nothing
        of a secret even if it were ever shown."""
        parts = []
        for name, value in sorted(vars(self).items()):
            shown = value.get() if isinstance(value, Secret) else repr(value)
            parts.append(f"{name}={shown}")
        return hmac.new(_FINGERPRINT_KEY, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class BandwidthAccount(_Account):
    """A Bandwidth account (``accountId``): its OAuth client, and the Basic credentials its
    callbacks carry. ``account_id`` ``"*"``: the single-account environment, any account."""

    client_id: str | None = None
    client_secret: Secret | None = None
    callback_username: str | None = None
    callback_password: Secret | None = None

    provider: Provider = field(default="bandwidth", init=False)

    def same_callback(self, other: BandwidthAccount) -> bool:
        """The same callback credentials (in constant time: nothing to learn from how long)."""
        mine = f"{self.callback_username}\x00{self.callback_password.get() if self.callback_password else ''}"
        theirs = (
            f"{other.callback_username}\x00{other.callback_password.get() if other.callback_password else ''}"
        )
        return hmac.compare_digest(mine.encode(), theirs.encode())


@dataclass(frozen=True)
class TwilioAccount(_Account):
    """A Twilio account or subaccount (``AccountSid``): REST credentials (an API key, or the auth
    token) and the auth tokens its webhooks are signed with."""

    api_key_sid: str | None = None
    api_key_secret: Secret | None = None
    auth_token: Secret | None = None
    secondary_auth_token: Secret | None = None

    provider: Provider = field(default="twilio", init=False)

    def signing_tokens(self) -> list[str]:
        """Twilio signs with the primary auth token; during a rotation, either is accepted."""
        return [s.get() for s in (self.auth_token, self.secondary_auth_token) if s is not None]


Account = BandwidthAccount | TwilioAccount

#: The single-account environment's Bandwidth entry serves events of any account id.
ANY_ACCOUNT = "*"


@dataclass(frozen=True)
class Registry:
    """Every account served, by provider and id. ``source`` says where it was read from."""

    source: str
    bandwidth: dict[str, BandwidthAccount] = field(default_factory=dict)
    twilio: dict[str, TwilioAccount] = field(default_factory=dict)
    #: Read from ``ARCHIVER_ACCOUNTS_FILE`` (per-account webhook paths only) or from the environment.
    from_file: bool = False

    def get(self, provider: str, account_id: str) -> Account | None:
        """The account's entry; in the single-account environment, the Bandwidth entry serves any
        account id unless ``ARCHIVER_BANDWIDTH_ACCOUNT_ID`` names one."""
        if provider == "bandwidth":
            return self.bandwidth.get(account_id) or self.bandwidth.get(ANY_ACCOUNT)
        if provider == "twilio":
            return self.twilio.get(account_id)
        return None

    def bandwidth_account(self, account_id: str) -> BandwidthAccount | None:
        found = self.get("bandwidth", account_id)
        return found if isinstance(found, BandwidthAccount) else None

    def twilio_account(self, account_sid: str) -> TwilioAccount | None:
        found = self.get("twilio", account_sid)
        return found if isinstance(found, TwilioAccount) else None

    def accounts(self) -> list[Account]:
        return [*self.bandwidth.values(), *self.twilio.values()]

    def knows(self, provider: str, account_id: str) -> bool:
        return self.get(provider, account_id) is not None

    def named(self, provider: str) -> list[str] | None:
        """The ids of the provider's accounts, or ``None`` when any id is served (the environment's
        Bandwidth entry without an account id)."""
        table: dict[str, BandwidthAccount] | dict[str, TwilioAccount] = (
            self.bandwidth if provider == "bandwidth" else self.twilio
        )
        return None if ANY_ACCOUNT in table else sorted(table)
