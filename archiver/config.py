"""One typed settings object, read from ``ARCHIVER_*`` environment variables and an optional ``.env``.

The variable names are a public interface: deployments depend on them. Each entry point asks for the
settings it needs with :meth:`Settings.require`, so that ``archiver db upgrade`` does not demand provider
credentials, while the worker refuses to start without them, naming the missing variable.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from archiver.exposure import placeholder_names, url_password

ENV_PREFIX = "ARCHIVER_"


class ConfigError(Exception):
    """A missing or invalid setting; the message names the environment variable."""


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


#: Bandwidth's OAuth 2.0 token endpoint (CONTRACTS.md §1.1; docs/providers.md).
BANDWIDTH_TOKEN_URL = "https://api.bandwidth.com/api/v1/oauth2/token"  # noqa: S105 - a URL

#: Secrets that may also be read from a file named by ``ARCHIVER_<NAME>_FILE`` (the Docker and
#: Kubernetes secrets convention). A provider's API secret (Bandwidth's client secret, Twilio's API
#: key secret or auth token) is read again when the provider refuses it, so one rotated in place takes
#: effect without a restart; the intake's password and the webhook-signing tokens are read at start.
FILE_SECRETS = (
    "bandwidth_client_secret",
    "twilio_auth_token",
    "twilio_secondary_auth_token",
    "twilio_api_key_secret",
    "intake_password",
)

#: Settings that are URLs which may carry a password.
_SECRET_URLS = ("database_url", "migrations_database_url", "broker_url", "redis_url")

LEGACY_BANDWIDTH_MESSAGE = (
    "Bandwidth decommissioned API users (username/password, ARCHIVER_BANDWIDTH_USERNAME and "
    "ARCHIVER_BANDWIDTH_PASSWORD) on 2026-12-02: its APIs now accept only OAuth 2.0 client credentials. "
    "Create API credentials in the Bandwidth App (Account > API Credentials) and set "
    "ARCHIVER_BANDWIDTH_CLIENT_ID and ARCHIVER_BANDWIDTH_CLIENT_SECRET "
    "(or ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE)"
)


def read_secret_file(path: str) -> str:
    """A secret file's value: its text without the trailing newline that editors and ``echo`` add."""
    return Path(path).read_text("utf-8").rstrip("\r\n")


#: delete: the whole artifact at the provider (a recording: metadata, media and transcription);
#: delete_media: only a recording's media (other artifacts are kept); archive_only: nothing.
DeletionPolicy = Literal["delete", "delete_media", "archive_only"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- storage of state and queueing -----------------------------------------------------------
    database_url: str = Field(default="sqlite:///archiver.db", repr=False)
    #: ``archiver db upgrade`` connects with this one: a role with DDL rights the runtime role lacks
    #: (deploy/postgres-roles.sql). Default: ``database_url``.
    migrations_database_url: str | None = Field(default=None, repr=False)
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)

    # --- S3 ------------------------------------------------------------------------------------------
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None

    # --- Bandwidth -------------------------------------------------------------------------------------
    bandwidth_account_id: str | None = None
    #: OAuth 2.0 client credentials (the Bandwidth App's "API Credentials"): the only way in since
    #: 2026-12-02.
    bandwidth_client_id: str | None = None
    bandwidth_client_secret: SecretStr | None = None
    bandwidth_client_secret_file: str | None = None
    bandwidth_token_url: str = BANDWIDTH_TOKEN_URL
    #: Decommissioned by Bandwidth on 2026-12-02; read only to stop with a message that says so.
    bandwidth_username: str | None = None
    bandwidth_password: SecretStr | None = None
    bandwidth_base_url: str = "https://voice.bandwidth.com/api/v2"

    # --- Twilio Conversational Intelligence -----------------------------------------------------------
    twilio_account_sid: str | None = None
    #: The account's primary auth token: the key of webhook signatures, and the REST credentials
    #: unless an API key is set.
    twilio_auth_token: SecretStr | None = None
    twilio_auth_token_file: str | None = None
    #: While the auth token is rotated, webhooks signed with this one are accepted too.
    twilio_secondary_auth_token: SecretStr | None = None
    twilio_secondary_auth_token_file: str | None = None
    #: An API key (SK…) and its secret: Twilio's recommended REST credentials, used when set.
    twilio_api_key_sid: str | None = None
    twilio_api_key_secret: SecretStr | None = None
    twilio_api_key_secret_file: str | None = None
    twilio_base_url: str = "https://intelligence.twilio.com"
    #: Hosts media may be downloaded from (comma-separated; "*.example.com" matches subdomains).
    #: Default: the host of ARCHIVER_TWILIO_BASE_URL.
    twilio_media_hosts: str = ""
    #: Archive redacted sentences, operator results and media (Twilio's Redacted=true).
    twilio_redacted: bool = False
    #: How often to look at a transcript that is still queued or in progress.
    twilio_poll_seconds: float = Field(default=60, gt=0)
    #: A transcript not completed after this long is dead-lettered.
    twilio_max_wait_seconds: float = Field(default=24 * 3600, gt=0)

    # --- intake ----------------------------------------------------------------------------------------
    intake_username: str | None = None
    intake_password: SecretStr | None = None
    intake_password_file: str | None = None
    intake_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: At most this many events share one intake transaction (group commit).
    intake_max_batch: int = Field(default=500, ge=1, le=1000)
    #: How many batches are written at once. One writer makes the largest batches, the fewest
    #: statements and messages per event: the least CPU per webhook. More overlap a slow database's
    #: round trips (a distant one).
    intake_writers: int = Field(default=1, ge=1, le=8)
    #: A committed batch that schedules at least this many items hands their messages to a worker
    #: in one message, which sends them (publishing is most of a busy intake's CPU); a smaller one
    #: sends them itself, without the hop. Above ``intake_max_batch``: always send directly.
    intake_relay_min_messages: int = Field(default=8, ge=1)
    #: A connection must send a request's headers within this long, from its first byte (or from
    #: its opening): slow or silent clients do not hold connections.
    intake_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: A request's body must arrive within this long.
    intake_body_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    #: An idle keep-alive connection is closed after this long.
    intake_keep_alive_seconds: float = Field(default=5.0, gt=0, le=300)
    #: Connections and requests under way at once; past it, 503 (uvicorn's limit_concurrency).
    intake_max_connections: int = Field(default=1000, ge=10)
    #: Prometheus metrics are served on their own address, never on the webhook port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=0, le=65535)

    #: The URL at which providers reach the intake (callback URLs we give them; signature checks).
    public_base_url: str | None = None

    # --- pipeline behaviour ------------------------------------------------------------------------
    deletion_policy: DeletionPolicy = "delete"
    #: Ask Bandwidth to transcribe recordings that have no transcription (500 ms < duration < 4 h).
    request_transcriptions: bool = False
    #: How long to wait for a transcription's callback before reading the recording's metadata.
    transcription_wait_seconds: float = Field(default=3600, gt=0)
    #: A transcription still processing after this long dead-letters the item (an operator decides);
    #: the recording is never deleted while its transcription may still come.
    transcription_max_wait_seconds: float = Field(default=24 * 3600, gt=0)
    #: After recordComplete, how long to wait for recordingAvailable before reading the metadata.
    recording_available_wait_seconds: float = Field(default=900, gt=0)
    #: Bandwidth keeps recordings this long; items not archived within the margin are at risk.
    retention_days: float = Field(default=30, gt=0)
    retention_margin_days: float = Field(default=7, ge=0)
    #: Media of a known length up to this many bytes is spooled to a temporary file while hashed,
    #: checked, then stored with one PutObject carrying its SHA-256 (S3's limit for one PutObject is
    #: 5 GiB). Longer media, media of unknown length, or too little free disk: streamed in parts. 0: never
    #: spool (no local disk used).
    media_spool_max_bytes: int = Field(default=5 * 1024**3, ge=0, le=5 * 1024**3)
    #: Where media is spooled (default: the system's temporary directory). Files are unlinked as
    #: they are created: nothing is left behind, even by a killed worker.
    media_spool_dir: str | None = None
    #: S3 multipart part size and parallel part uploads for media (memory: (concurrency + 1) parts).
    s3_multipart_chunk_bytes: int = Field(default=5 * 1024 * 1024, ge=5 * 1024 * 1024)
    s3_max_concurrency: int = Field(default=4, ge=1, le=32)
    #: Provider purge window after an accepted DELETE; the purge is confirmed after it.
    purge_delay_seconds: float = Field(default=48 * 3600, ge=0)
    #: How long a task holds an item before another worker may take it over.
    lease_seconds: float = Field(default=300, gt=0)
    #: Attempts (5xx, connection errors) before an item is dead-lettered.
    max_attempts: int = Field(default=8, ge=1)
    retry_backoff_base_seconds: float = Field(default=2.0, gt=0)
    retry_backoff_max_seconds: float = Field(default=600.0, gt=0)
    #: The longest wait kept as a Celery countdown; longer waits become a due time swept by beat.
    max_countdown_seconds: float = Field(default=180.0, gt=0, le=600)
    #: Beat's sweep interval, and how long an enqueued message may be outstanding before the
    #: sweeper enqueues the item again.
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    requeue_after_seconds: float = Field(default=600.0, gt=0)
    sweep_batch_size: int = Field(default=200, ge=1)

    # --- HTTP to providers -----------------------------------------------------------------------
    http_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    http_read_timeout_seconds: float = Field(default=30.0, gt=0)
    #: In-place retries of a provider GET or DELETE after a 5xx or a connection error (with
    #: jittered backoff from ARCHIVER_HTTP_RETRY_BACKOFF_SECONDS), before the step's retry policy.
    http_retries: int = Field(default=2, ge=0, le=10)
    http_retry_backoff_seconds: float = Field(default=0.5, gt=0, le=10)
    #: Requests per second each provider account allows, shared by every worker on every host (a
    #: token bucket in Redis); 0 turns the shared budget off (429 and Retry-After still apply).
    bandwidth_requests_per_second: float = Field(default=0.0, ge=0)
    twilio_requests_per_second: float = Field(default=0.0, ge=0)
    #: Requests that may go at once after a quiet spell (default: one second's worth).
    rate_budget_burst: float | None = Field(default=None, gt=0)
    #: A worker waits at most this long for its slot; a later slot reschedules the step instead.
    rate_budget_max_wait_seconds: float = Field(default=5.0, ge=0)
    #: An account whose credentials the provider refuses is paused: its items wait (a due time, no
    #: attempt spent) while its credentials are checked again after this long, doubling up to the
    #: maximum, which is also how often the refusal is logged as an ERROR.
    account_pause_seconds: float = Field(default=30.0, gt=0)
    account_pause_max_seconds: float = Field(default=300.0, gt=0, le=600)
    #: The Redis holding the shared budgets and the workers' shared metric counters (default: the
    #: broker's URL, when it is Redis).
    redis_url: str | None = Field(default=None, repr=False)

    # --- workers -------------------------------------------------------------------------------------
    #: On SIGTERM (with REMAP_SIGTERM=SIGQUIT) a worker lets its running tasks finish for this long,
    #: then hands them back to the broker. Keep it below the orchestrator's grace period.
    worker_soft_shutdown_seconds: float = Field(default=25.0, ge=0)
    #: A pool process is replaced after this many tasks (bounds slow leaks over months).
    worker_max_tasks_per_child: int = Field(default=1000, ge=1)

    #: How long /metrics reuses the pipeline figures it read from the database (several scrapers,
    #: one query).
    metrics_cache_seconds: float = Field(default=10.0, ge=0)

    log_level: str = "INFO"
    #: "text" for people, "json" for log collectors (one object per line, with item and call ids).
    log_format: Literal["text", "json"] = "text"
    #: For tests and demos only: a file holding a clock offset in seconds that every process adds
    #: to the wall clock. Never set in production.
    clock_offset_file: str | None = None

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
        """A placeholder (``CHANGE-ME``) where a secret goes stops the start (see
        :mod:`archiver.placeholders`)."""
        secrets = [(env_name(n), self._plain(n)) for n in (*FILE_SECRETS, "bandwidth_password")]
        urls = [(f"{env_name(n)} (its password)", url_password(getattr(self, n))) for n in _SECRET_URLS]
        aws = [(name, os.environ.get(name)) for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
        named = placeholder_names([*secrets, *urls, *aws])
        if named:
            raise ValueError(
                f"{', '.join(named)}: a placeholder, not a secret (like deploy/archiver.env.example's "
                "CHANGE-ME); set the real value"
            )

    def _plain(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

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
        values: list[str] = []
        for secret in (
            self.bandwidth_password,
            self.bandwidth_client_secret,
            self.intake_password,
            self.twilio_auth_token,
            self.twilio_secondary_auth_token,
            self.twilio_api_key_secret,
        ):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        for url in (self.database_url, self.migrations_database_url, self.broker_url, self.redis_url):
            password = _url_password(url) if url else None
            if password:
                values.extend({password, unquote(password)})  # as written, and as a driver may show it
        for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # boto3's chain reads them itself
            value = os.environ.get(name)
            if value:
                values.append(value)
        return values

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "database_url", _mask_url(self.database_url)
        yield "broker_url", _mask_url(self.broker_url)


def _url_password(url: str) -> str | None:
    match = re.match(r"^[a-zA-Z0-9+.\-]+://[^:/@]*:([^@]*)@", url)
    return match.group(1) if match else None


def _mask_url(url: str) -> str:
    password = _url_password(url)
    return url.replace(f":{password}@", ":***@", 1) if password else url


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
