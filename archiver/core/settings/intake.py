"""The webhook intake: its credentials, limits and timeouts, and where the metrics are served."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from archiver.core.settings.values import FILE_SETTING_MEANING, shown

__all__ = ["IntakeSettings"]


class IntakeSettings(BaseModel):
    """The webhook intake: its credentials, limits and timeouts, and where the metrics are served."""

    intake_username: str | None = Field(
        json_schema_extra=shown("— (intake: required)"),
        default=None,
        description=(
            "Basic credentials the intake demands of Bandwidth callbacks (set them on "
            "`<StartTranscription>`, `<Record>`…)."
        ),
    )
    intake_password: SecretStr | None = Field(
        json_schema_extra=shown("— (intake: required)"),
        default=None,
        description=(
            "Basic credentials the intake demands of Bandwidth callbacks (set them on "
            "`<StartTranscription>`, `<Record>`…)."
        ),
    )
    intake_password_file: str | None = Field(default=None, description=FILE_SETTING_MEANING)
    intake_max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description=("Larger bodies get 413."),
    )
    intake_max_batch: int = Field(
        default=500,
        ge=1,
        le=1000,
        description=(
            "At most this many webhooks share one intake transaction. Concurrent requests are committed "
            "together (group commit), each answered once the commit holding its event is done."
        ),
    )
    intake_writers: int = Field(
        default=1,
        ge=1,
        le=8,
        description=(
            "How many intake transactions are written at once; the requests arriving meanwhile form the "
            "next batch. One writer makes the largest batches and costs the least CPU per webhook "
            "(measured in `bench/RESULTS.md`); more help only when each round trip to the database is "
            "long (a distant database)."
        ),
    )
    intake_relay_min_messages: int = Field(
        default=8,
        ge=1,
        description=(
            "A committed batch that schedules at least this many items hands their tasks to a worker in "
            "one message (`archiver.relay_step_messages`) instead of publishing each: less CPU per "
            "webhook for a busy intake, one hop more. Smaller batches (a quiet intake) publish directly. "
            "Set it above `ARCHIVER_INTAKE_MAX_BATCH` to always publish directly."
        ),
    )
    intake_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description=(
            "A connection must send a request's headers within this long of opening (or of the request's "
            "first byte); a silent or dripping client is disconnected."
        ),
    )
    intake_body_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        le=300,
        description=("A body not received within this long is refused (408)."),
    )
    intake_keep_alive_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description=("Idle keep-alive connections are closed after this long."),
    )
    intake_max_connections: int = Field(
        default=1000,
        ge=10,
        description=(
            "Connections and requests under way at once; past it the intake answers 503 (uvicorn's "
            "`limit_concurrency`)."
        ),
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description=(
            "Where the intake serves Prometheus's `/metrics`: never on the webhook port. `0`: no metrics "
            "server. In a pod, set the host to `0.0.0.0` and let a NetworkPolicy admit only Prometheus."
        ),
    )
    metrics_port: int = Field(
        default=9108,
        ge=0,
        le=65535,
        description=(
            "Where the intake serves Prometheus's `/metrics`: never on the webhook port. `0`: no metrics "
            "server. In a pod, set the host to `0.0.0.0` and let a NetworkPolicy admit only Prometheus."
        ),
    )
    public_base_url: str | None = Field(
        default=None,
        description=(
            "The URL at which providers reach the intake: callback URL of requested transcriptions, and "
            "the URL Twilio signatures are checked against (set it behind a proxy or load balancer)."
        ),
    )
