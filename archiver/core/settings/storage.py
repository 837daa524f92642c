"""Where state, queues and the archive live: the database, the broker, S3."""

from __future__ import annotations

from pydantic import BaseModel, Field

from archiver.core.settings.values import shown

__all__ = ["StorageSettings"]


class StorageSettings(BaseModel):
    """Where state, queues and the archive live: the database, the broker, S3."""

    database_url: str = Field(
        default="sqlite:///archiver.db",
        repr=False,
        description=(
            "`postgresql://…` (production) or `sqlite:///path` (embedded). `postgresql://` uses psycopg 3."
        ),
    )
    migrations_database_url: str | None = Field(
        json_schema_extra=shown("`ARCHIVER_DATABASE_URL`"),
        default=None,
        repr=False,
        description=(
            "The connection `archiver db upgrade` uses. On PostgreSQL give migrations a role of their own"
            " that owns the schema (DDL), and the runtime a role that can only read and write rows: "
            "`deploy/postgres-roles.sql` creates both. Set it only where migrations run (the migrations "
            "job, `archiver-migrate.service`)."
        ),
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        repr=False,
        description=("Celery broker (Redis)."),
    )
    s3_bucket: str | None = Field(
        json_schema_extra=shown("— (workers: required)"),
        default=None,
        description=(
            "Bucket of the archive. Credentials come from boto3's usual chain (`AWS_*`, profile, instance"
            " role)."
        ),
    )
    s3_prefix: str = Field(
        default="",
        description=("Key prefix, e.g. `archive/v1`."),
    )
    s3_region: str = Field(default="us-east-1", description="The bucket's region.")
    s3_endpoint_url: str | None = Field(
        json_schema_extra=shown("AWS"),
        default=None,
        description=("For S3-compatible stores."),
    )
