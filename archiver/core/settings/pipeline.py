"""The pipeline: what is deleted, how long to wait for what, retries, leases and sweeps."""

from __future__ import annotations

from pydantic import BaseModel, Field

from archiver.core.settings.values import DeletionPolicy, shown

__all__ = ["PipelineSettings"]


class PipelineSettings(BaseModel):
    """The pipeline: what is deleted, how long to wait for what, retries, leases and sweeps."""

    deletion_policy: DeletionPolicy = Field(
        default="delete",
        description=(
            "`delete` (the whole artifact: a recording's metadata, media and transcription), "
            "`delete_media` (a recording's media only; real-time transcriptions are kept), or "
            "`archive_only`."
        ),
    )
    request_transcriptions: bool = Field(
        default=False,
        description=(
            "Ask Bandwidth to transcribe recordings without a transcription (needs "
            "`ARCHIVER_PUBLIC_BASE_URL`)."
        ),
    )
    transcription_wait_seconds: float = Field(
        default=3600,
        gt=0,
        description=("How long to wait for `transcriptionAvailable` before reading the metadata."),
    )
    transcription_max_wait_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description=(
            "A transcription still processing after this long dead-letters the item (never deleted)."
        ),
    )
    recording_available_wait_seconds: float = Field(
        default=900,
        gt=0,
        description=(
            "After `recordComplete`, when to read the metadata if `recordingAvailable` does not come."
        ),
    )
    retention_days: float = Field(
        default=30,
        gt=0,
        description=(
            "Bandwidth's retention; recordings not archived within the margin are reported and logged."
        ),
    )
    retention_margin_days: float = Field(
        default=7,
        ge=0,
        description=(
            "Bandwidth's retention; recordings not archived within the margin are reported and logged."
        ),
    )
    media_spool_max_bytes: int = Field(
        default=5 * 1024**3,
        ge=0,
        le=5 * 1024**3,
        description=(
            "Media up to this length is spooled to disk and stored with its SHA-256 in one `PutObject`; "
            "longer media goes in parts. `0`: never spool (no local disk used). Spooling lets S3 verify "
            "the SHA-256 itself and retries a failed PUT without fetching again; in parts, the download "
            "and the upload overlap and no disk is used. A worker needs up to this much free disk per "
            "concurrent task (`--concurrency`); with less free space (keeping 512 MiB spare) it uploads "
            "in parts instead."
        ),
    )
    media_spool_dir: str | None = Field(
        json_schema_extra=shown("the system's temporary directory"),
        default=None,
        description=("Where media is spooled. Spool files are unlinked as they are created."),
    )
    s3_multipart_chunk_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description=(
            "Media in parts: part size and parallel part uploads; memory about (concurrency + 1) parts."
        ),
    )
    s3_max_concurrency: int = Field(
        default=4,
        ge=1,
        le=32,
        description=(
            "Media in parts: part size and parallel part uploads; memory about (concurrency + 1) parts."
        ),
    )
    purge_delay_seconds: float = Field(
        default=48 * 3600,
        ge=0,
        description=("When to confirm the provider's purge after a DELETE."),
    )
    lease_seconds: float = Field(
        default=300,
        gt=0,
        description=(
            "How long a step holds an item; task time limits are 80 %/90 % of it. The archive step "
            "fetches and stores a whole recording within that limit: raise it if you archive media of "
            "several GiB (spooled media is downloaded, then uploaded; in parts, the two overlap)."
        ),
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        description=("Failed attempts (5xx, network, storage) before dead-lettering."),
    )
    retry_backoff_base_seconds: float = Field(
        default=2.0,
        gt=0,
        description=("Exponential backoff with jitter."),
    )
    retry_backoff_max_seconds: float = Field(
        default=600.0,
        gt=0,
        description=("Exponential backoff with jitter."),
    )
    max_countdown_seconds: float = Field(
        default=180.0,
        gt=0,
        le=600,
        description=("Longest wait kept as a Celery countdown; longer waits are due times."),
    )
    sweep_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description=("Beat's sweep interval."),
    )
    requeue_after_seconds: float = Field(
        default=600.0,
        gt=0,
        description=("How old a due item's last message must be before the sweeper sends another."),
    )
    sweep_batch_size: int = Field(
        default=200,
        ge=1,
        description=("Rows per sweep batch."),
    )
