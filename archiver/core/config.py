"""One typed settings object, read from ``ARCHIVER_*`` environment variables and an optional ``.env``.

The variable names are a public interface: deployments depend on them. Each entry point asks for the
settings it needs with :meth:`Settings.require`, so that ``archiver db upgrade`` does not demand provider
credentials, while the worker refuses to start without them, naming the missing variable.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Self
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from archiver.core import secrets
from archiver.core.secrets import FILE_SECRETS, mask_url_password, read_secret_file
from archiver.core.settings.intake import IntakeSettings
from archiver.core.settings.pipeline import PipelineSettings
from archiver.core.settings.processes import ProcessSettings
from archiver.core.settings.providers import ProviderSettings
from archiver.core.settings.storage import StorageSettings

ENV_PREFIX = "ARCHIVER_"


class ConfigError(Exception):
    """A missing or invalid setting; the message names the environment variable."""


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


LEGACY_BANDWIDTH_MESSAGE = (
    "Bandwidth decommissioned API users (username/password, ARCHIVER_BANDWIDTH_USERNAME and "
    "ARCHIVER_BANDWIDTH_PASSWORD) on 2026-12-02: its APIs now accept only OAuth 2.0 client credentials. "
    "Create API credentials in the Bandwidth App (Account > API Credentials) and set "
    "ARCHIVER_BANDWIDTH_CLIENT_ID and ARCHIVER_BANDWIDTH_CLIENT_SECRET "
    "(or ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE)"
)


class Settings(
    StorageSettings, ProviderSettings, IntakeSettings, PipelineSettings, ProcessSettings, BaseSettings
):
    """Every setting (its declaration is in :mod:`archiver.core.settings`), read from ``ARCHIVER_*``
    variables or a ``.env`` file, validated together; a secret may come from its ``_FILE``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # An empty variable is an unset one: how a Compose override or a systemd drop-in turns off
        # a setting its base file gives (docs/accounts.md: the registry in place of the single account).
        env_ignore_empty=True,
    )

    @field_validator("twilio_account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"AC[0-9a-fA-F]{32}", value):
            raise ValueError("must be AC followed by 32 hex digits")
        return value

    @field_validator("twilio_api_key_sid")
    @classmethod
    def _api_key_sid(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"SK[0-9a-fA-F]{32}", value):
            raise ValueError("must be SK followed by 32 hex digits")
        return value

    @field_validator(*(f"{name}_file" for name in FILE_SECRETS))
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            secret = read_secret_file(value)
        except OSError as exc:
            raise ValueError(f"cannot read {value!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{value!r} is not UTF-8 text") from None
        if not secret:
            raise ValueError(f"{value!r} is empty")
        return value

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Self:
        """``ARCHIVER_X_FILE`` gives ``ARCHIVER_X`` its value; both at once is a mistake."""
        for name in FILE_SECRETS:
            path = getattr(self, f"{name}_file")
            if path is None:
                continue
            if getattr(self, name) is not None:
                raise ValueError(f"set {env_name(name)} or {env_name(name)}_FILE, not both")
            setattr(self, name, SecretStr(read_secret_file(path)))
        self._refuse_placeholders()
        if self.account_pause_max_seconds < self.account_pause_seconds:
            raise ValueError(
                "ARCHIVER_ACCOUNT_PAUSE_MAX_SECONDS must be at least ARCHIVER_ACCOUNT_PAUSE_SECONDS"
            )
        return self

    def _refuse_placeholders(self) -> None:
        """A placeholder (``CHANGE-ME``) where a secret goes stops the start."""
        named = secrets.placeholders_in(self, env_name)
        if named:
            raise ValueError(
                f"{', '.join(named)}: a placeholder, not a secret (like deploy/archiver.env.example's "
                "CHANGE-ME); set the real value"
            )

    @property
    def shared_redis_url(self) -> str | None:
        url = self.redis_url or self.broker_url
        return url if url.startswith(("redis://", "rediss://", "unix://")) else None

    @property
    def twilio_media_host_patterns(self) -> list[str]:
        """Hosts (``https`` on the default port) and origins (``http://host:port``, any scheme and
        port exactly) media may come from; by default the API's own: its host if it is ``https`` on
        the default port, else its origin (the simulator)."""
        hosts = [h.strip().lower().rstrip("/") for h in self.twilio_media_hosts.split(",") if h.strip()]
        if not hosts:
            base = urlsplit(self.twilio_base_url)
            plain_https = base.scheme == "https" and base.port in (None, 443)
            hosts = [str(base.hostname) if plain_https else f"{base.scheme}://{base.netloc}".lower()]
        return hosts

    @field_validator(
        "bandwidth_base_url", "bandwidth_token_url", "s3_endpoint_url", "public_base_url", "twilio_base_url"
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value.rstrip("/")

    @field_validator("media_spool_dir")
    @classmethod
    def _existing_directory(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isdir(value):
            raise ValueError("must be an existing directory")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if (value and not re.fullmatch(r"[A-Za-z0-9._\-/]+", value)) or ".." in value.split("/"):
            raise ValueError("may contain only letters, digits, '.', '_', '-' and '/'")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError("is not a database URL") from exc
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        if not url.drivername.startswith(("postgresql", "sqlite")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return url.render_as_string(hide_password=False)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    def require(self, *fields: str) -> None:
        """Fail, naming every missing variable, unless all ``fields`` are set. Bandwidth's client
        credentials missing where the decommissioned username/password are set: fail saying so."""
        missing = [f for f in fields if getattr(self, f) in (None, "")]
        if not missing:
            return
        names = ", ".join(env_name(f) for f in missing)
        legacy = self.bandwidth_username or self.bandwidth_password
        if legacy and {"bandwidth_client_id", "bandwidth_client_secret"} & set(missing):
            raise ConfigError(f"{LEGACY_BANDWIDTH_MESSAGE}. Missing: {names}")
        raise ConfigError("missing required setting(s): " + names)

    def secret_file(self, name: str) -> str | None:
        """The file ``name`` (one of :data:`FILE_SECRETS`) was read from, if any."""
        path: str | None = getattr(self, f"{name}_file")
        return path

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, for log redaction."""
        return secrets.secret_values(self)

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "database_url", mask_url_password(self.database_url)
        yield "broker_url", mask_url_password(self.broker_url)


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        if problem["loc"]:
            parts.append(f"{env_name(str(problem['loc'][0]))}: {problem['msg']}")
        else:  # a rule across settings: its message names them
            parts.append(str(problem["msg"]).removeprefix("Value error, "))
    return "invalid setting(s): " + "; ".join(parts)


def load_settings() -> Settings:
    """Read the settings; raise :class:`ConfigError` naming the variable on a bad value."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
