"""Reading the accounts registry: ``ARCHIVER_ACCOUNTS_FILE`` (TOML), or the single-account
environment variables as the one-account case.

The file (docs/accounts.md has a whole example)::

    [defaults]                      # optional: what every account inherits
    deletion_policy = "delete"
    [defaults.storage]
    bucket = "archive"

    [[bandwidth]]
    account_id = "9900001"
    client_id = "a1b2c3"
    client_secret = { file = "/run/secrets/bandwidth-9900001" }
    callback_username = "hooks-9900001"
    callback_password = { env = "HOOKS_9900001_PASSWORD" }
    [bandwidth.storage]             # the last [[bandwidth]]'s bucket: the customer's, by a role
    bucket = "customer-a"
    role_arn = "arn:aws:iam::123456789012:role/archiver"
    external_id = "customer-a-7f3e"

    [[twilio]]
    account_sid = "AC…"
    api_key_sid = "SK…"
    api_key_secret = { file = "/run/secrets/twilio-api-key" }
    auth_token = { file = "/run/secrets/twilio-auth-token" }

Every error names the file, the account and the field. Secrets are references (``{ file = … }`` or
``{ env = … }``), never inline: the file can then be a ConfigMap, and only the secrets Secrets.
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from archiver.accounts.registry import (
    ANY_ACCOUNT,
    BandwidthAccount,
    Registry,
    Secret,
    StorageTarget,
    TwilioAccount,
)
from archiver.core.config import ConfigError, Settings
from archiver.core.exposure import is_placeholder
from archiver.core.ids import InvalidId, validate
from archiver.core.logging import remember_secret
from archiver.core.secrets import read_secret_file
from archiver.core.settings.values import DeletionPolicy

__all__ = ["AccountsFileError", "load_registry", "registry_from_file", "registry_from_settings"]

#: The single-account settings a registry file replaces: set beside it, they would be ignored.
PER_ACCOUNT_SETTINGS = (
    "bandwidth_account_id",
    "bandwidth_client_id",
    "bandwidth_client_secret",
    "twilio_account_sid",
    "twilio_auth_token",
    "twilio_secondary_auth_token",
    "twilio_api_key_sid",
    "twilio_api_key_secret",
    "intake_username",
    "intake_password",
)


ROLE_ARN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"


class AccountsFileError(ConfigError):
    """The registry file cannot be used; the message names the file, the account and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    file: str | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self

    def resolve(self) -> Secret:
        if self.file is not None:
            try:
                value = read_secret_file(self.file)
            except OSError as exc:
                raise ValueError(f"cannot read {self.file!r}: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{self.file!r} is not UTF-8 text") from None
            source, path = f"file:{self.file}", self.file
        else:
            assert self.env is not None
            value = os.environ.get(self.env, "")
            source, path = f"env:{self.env}", None
        if not value:
            raise ValueError(f"{source} is empty or missing")
        if is_placeholder(value):
            raise ValueError(f"{source} holds a placeholder, not a secret")
        remember_secret(value)  # redacted wherever it might appear in a log line
        return Secret(SecretStr(value), source, path)


def _no_inline_secret(value: object) -> object:
    if isinstance(value, str):
        raise ValueError('a secret is a reference, { file = "…" } or { env = "…" }, never written inline')
    return value


class StorageEntry(_Strict):
    bucket: str | None = None
    prefix: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    object_lock: bool | None = None
    role_arn: str | None = Field(default=None, pattern=ROLE_ARN)
    external_id: str | None = Field(default=None, min_length=2, max_length=1224)
    role_session_seconds: int | None = Field(default=None, ge=900, le=43200)
    sts_endpoint_url: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip("/")
        if value and (
            not re.fullmatch(r"[A-Za-z0-9._/-]+", value)
            or any(part in ("", ".", "..") for part in value.split("/"))
        ):
            raise ValueError("a prefix is path segments of A-Z a-z 0-9 . _ - (no empty, '.' or '..' one)")
        return value


class Rules(_Strict):
    deletion_policy: DeletionPolicy | None = None
    requests_per_second: float | None = Field(default=None, ge=0)
    retention_days: float | None = Field(default=None, gt=0)


class Defaults(Rules):
    storage: StorageEntry = StorageEntry()


class BandwidthEntry(Rules):
    account_id: str
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    callback_username: str = Field(min_length=1)
    callback_password: SecretRef
    storage: StorageEntry = StorageEntry()

    _refs = field_validator("client_secret", "callback_password", mode="before")(_no_inline_secret)


class TwilioEntry(Rules):
    account_sid: str
    api_key_sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$")
    api_key_secret: SecretRef | None = None
    auth_token: SecretRef
    secondary_auth_token: SecretRef | None = None
    storage: StorageEntry = StorageEntry()

    _refs = field_validator("api_key_secret", "auth_token", "secondary_auth_token", mode="before")(
        _no_inline_secret
    )

    @model_validator(mode="after")
    def _api_key_pair(self) -> TwilioEntry:
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("api_key_sid and api_key_secret go together")
        return self


def _storage(settings: Settings, defaults: StorageEntry, entry: StorageEntry) -> StorageTarget:
    """The entry's storage: its own fields, else the file's defaults, else ``ARCHIVER_S3_*``."""

    def pick(name: str, fallback: Any) -> Any:
        own, default = getattr(entry, name), getattr(defaults, name)
        return own if own is not None else default if default is not None else fallback

    return StorageTarget(
        bucket=pick("bucket", settings.s3_bucket),
        prefix=pick("prefix", settings.s3_prefix),
        region=pick("region", settings.s3_region),
        endpoint_url=pick("endpoint_url", settings.s3_endpoint_url),
        kms_key_id=pick("kms_key_id", None),
        object_lock=pick("object_lock", False),
        role_arn=pick("role_arn", None),
        external_id=pick("external_id", None),
        role_session_seconds=pick("role_session_seconds", 3600),
        sts_endpoint_url=pick("sts_endpoint_url", None),
    )


def _rules(defaults: Rules, entry: Rules) -> dict[str, Any]:
    return {
        name: getattr(entry, name) if getattr(entry, name) is not None else getattr(defaults, name)
        for name in Rules.model_fields
    }


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(entry)"


def _entry_error(path: str, label: str, error: ValidationError) -> AccountsFileError:
    problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in error.errors(include_url=False))
    return AccountsFileError(f"accounts file {path}: {label}: {problems}")


def registry_from_file(path: str, settings: Settings) -> Registry:
    """The registry in ``path``; :class:`AccountsFileError` names what is wrong, and where."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise AccountsFileError(f"accounts file {path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AccountsFileError(f"accounts file {path}: not valid TOML: {exc}") from None
    unknown = set(document) - {"defaults", "bandwidth", "twilio"}
    if unknown:
        raise AccountsFileError(
            f"accounts file {path}: unknown table(s) {', '.join(sorted(unknown))}; "
            "expected [defaults], [[bandwidth]] and [[twilio]]"
        )
    try:
        defaults = Defaults.model_validate(document.get("defaults", {}))
    except ValidationError as exc:
        raise _entry_error(path, "[defaults]", exc) from None
    registry = Registry(source=f"ARCHIVER_ACCOUNTS_FILE={path}", from_file=True)
    for provider in ("bandwidth", "twilio"):
        entries = document.get(provider, [])
        if not isinstance(entries, list):
            raise AccountsFileError(f"accounts file {path}: [[{provider}]] must be an array of tables")
        for index, raw in enumerate(entries, start=1):
            _add(registry, provider, index, raw, defaults, settings, path)
    if not registry.bandwidth and not registry.twilio:
        raise AccountsFileError(f"accounts file {path}: no [[bandwidth]] or [[twilio]] account")
    _refuse_shared_webhook_credentials(registry, path)
    return registry


def _refuse_shared_webhook_credentials(registry: Registry, path: str) -> None:
    """Two accounts with the same callback credentials (or Twilio signing token) would each accept
    the other's events on their path: the file is refused, naming both."""
    seen: dict[tuple[str, str], str] = {}
    for account in registry.bandwidth.values():
        if account.callback_password is not None:
            key = (account.callback_username or "", account.callback_password.get())
            if key in seen:
                raise AccountsFileError(
                    f"accounts file {path}: bandwidth accounts {seen[key]} and {account.account_id} have the "
                    "same callback credentials: each account needs its own"
                )
            seen[key] = account.account_id
    tokens: dict[str, str] = {}
    for twilio in registry.twilio.values():
        for token in twilio.signing_tokens():
            if token in tokens and tokens[token] != twilio.account_id:
                raise AccountsFileError(
                    f"accounts file {path}: twilio accounts {tokens[token]} and {twilio.account_id} share an "
                    "auth token: each account signs with its own"
                )
            tokens[token] = twilio.account_id


def _add(
    registry: Registry,
    provider: Literal["bandwidth", "twilio"],
    index: int,
    raw: object,
    defaults: Defaults,
    settings: Settings,
    path: str,
) -> None:
    key = "account_id" if provider == "bandwidth" else "account_sid"
    named = raw.get(key) if isinstance(raw, dict) else None
    label = f"{provider} account {named}" if isinstance(named, str) else f"{provider} entry {index}"
    try:
        if provider == "bandwidth":
            entry: BandwidthEntry | TwilioEntry = BandwidthEntry.model_validate(raw)
        else:
            entry = TwilioEntry.model_validate(raw)
        account_id = getattr(entry, key)
        validate("bandwidth_account" if provider == "bandwidth" else "twilio_account", account_id)
    except ValidationError as exc:
        raise _entry_error(path, label, exc) from None
    except InvalidId as exc:
        raise AccountsFileError(f"accounts file {path}: {label}: {key}: {exc}") from None
    table: dict[str, Any] = registry.bandwidth if provider == "bandwidth" else registry.twilio
    if account_id in table:
        raise AccountsFileError(f"accounts file {path}: {label}: listed twice")
    common = {
        "account_id": account_id,
        "storage": _storage(settings, defaults.storage, entry.storage),
        **_rules(defaults, entry),
    }
    try:
        if isinstance(entry, BandwidthEntry):
            table[account_id] = BandwidthAccount(
                **common,
                client_id=entry.client_id,
                client_secret=_resolve(entry.client_secret, "client_secret"),
                callback_username=entry.callback_username,
                callback_password=_resolve(entry.callback_password, "callback_password"),
            )
        else:
            table[account_id] = TwilioAccount(
                **common,
                api_key_sid=entry.api_key_sid,
                api_key_secret=_resolve(entry.api_key_secret, "api_key_secret"),
                auth_token=_resolve(entry.auth_token, "auth_token"),
                secondary_auth_token=_resolve(entry.secondary_auth_token, "secondary_auth_token"),
            )
    except ValueError as exc:
        raise AccountsFileError(f"accounts file {path}: {label}: {exc}") from None


def _resolve(ref: SecretRef | None, name: str) -> Secret | None:
    if ref is None:
        return None
    try:
        return ref.resolve()
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _env_secret(settings: Settings, name: str) -> Secret | None:
    value = getattr(settings, name)
    if value is None:
        return None
    path = settings.secret_file(name)
    source = f"file:{path}" if path else f"env:ARCHIVER_{name.upper()}"
    return Secret(value, source, path)


def registry_from_settings(settings: Settings) -> Registry:
    """The single-account environment as a registry of (at most) one account per provider."""
    registry = Registry(source="environment (ARCHIVER_BANDWIDTH_*, ARCHIVER_TWILIO_*)")
    storage = _storage(settings, StorageEntry(), StorageEntry())
    common: dict[str, Any] = {"storage": storage, "deletion_policy": settings.deletion_policy}
    if settings.bandwidth_client_id is not None or settings.intake_username is not None:
        account_id = settings.bandwidth_account_id or ANY_ACCOUNT
        registry.bandwidth[account_id] = BandwidthAccount(
            account_id=account_id,
            client_id=settings.bandwidth_client_id,
            client_secret=_env_secret(settings, "bandwidth_client_secret"),
            callback_username=settings.intake_username,
            callback_password=_env_secret(settings, "intake_password"),
            requests_per_second=settings.bandwidth_requests_per_second,
            **common,
        )
    if settings.twilio_account_sid is not None:
        registry.twilio[settings.twilio_account_sid] = TwilioAccount(
            account_id=settings.twilio_account_sid,
            api_key_sid=settings.twilio_api_key_sid,
            api_key_secret=_env_secret(settings, "twilio_api_key_secret"),
            auth_token=_env_secret(settings, "twilio_auth_token"),
            secondary_auth_token=_env_secret(settings, "twilio_secondary_auth_token"),
            requests_per_second=settings.twilio_requests_per_second,
            **common,
        )
    return registry


def load_registry(settings: Settings) -> Registry:
    """The registry these settings name: the file, or the environment's single account."""
    path = settings.accounts_file
    if path is None:
        return registry_from_settings(settings)
    beside = [
        f"ARCHIVER_{name.upper()}" for name in PER_ACCOUNT_SETTINGS if getattr(settings, name) is not None
    ]
    if beside:
        raise AccountsFileError(
            f"ARCHIVER_ACCOUNTS_FILE is set: the accounts come from {path} only; unset {', '.join(beside)}"
        )
    return registry_from_file(path, settings)
