"""The processes: workers, metrics, logs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ProcessSettings"]


class ProcessSettings(BaseModel):
    """The processes: workers, metrics, logs."""

    worker_soft_shutdown_seconds: float = Field(
        default=25.0,
        ge=0,
        description=(
            "On SIGTERM (with `REMAP_SIGTERM=SIGQUIT`), how long running tasks may finish before being "
            "handed back. Keep it below the stop grace period."
        ),
    )
    worker_max_tasks_per_child: int = Field(
        default=1000,
        ge=1,
        description=("A pool process is replaced after this many tasks."),
    )
    metrics_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description=("How long `/metrics` reuses the pipeline figures it read from the database."),
    )
    log_level: str = Field(
        default="INFO",
        description="`DEBUG`, `INFO`, `WARNING` or `ERROR` (S3 and HTTP libraries: never below `INFO`).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`json`: one object per line with `time`, `level`, `logger`, `message` and the work's "
            "`item_id`, `provider`, `account_id`, `kind`, `provider_id`, `call_id`, `step`, `task_id`, "
            "`task_name`."
        ),
    )
    clock_offset_file: str | None = Field(
        default=None,
        description=(
            "**Tests and demos only**: a file holding seconds added to every process's clock. Never set "
            "in production."
        ),
    )
