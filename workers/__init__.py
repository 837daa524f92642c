"""Celery workers: ``celery -A workers worker`` and ``celery -A workers beat``.

``workers.app`` is the Celery application, built on first use by :func:`get_app` from the
``ARCHIVER_*`` settings (a missing or invalid setting stops the start with a message naming the
variable). Importing this package builds nothing: the tasks (:mod:`workers.tasks`) are declared once
(:mod:`workers.table`) and bound to whichever app loads them.
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

from archiver.accounts import load_registry
from archiver.core.config import ConfigError, get_settings
from archiver.core.logging import install_redaction, quiet_libraries, use_json

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["app", "get_app"]


@lru_cache(maxsize=1)
def get_app() -> Celery:
    """The process's Celery application, with the tasks, built once."""
    from workers.celery_app import create_celery_app

    return create_celery_app(get_settings())


def __getattr__(name: str) -> Any:
    if name == "app":  # what `celery -A workers` looks up
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@after_setup_logger.connect
@after_setup_task_logger.connect
def _configure_logging(logger: logging.Logger, **_kwargs: Any) -> None:
    settings = get_settings()
    if settings.log_format == "json":
        use_json(logger)
    install_redaction(settings.secret_values(), logger)
    quiet_libraries()


@worker_init.connect
def _check_settings(**_kwargs: Any) -> None:
    """Refuse to start a worker that could not do its job (Celery only logs exceptions raised in
    signal handlers, so this exits explicitly)."""
    settings = get_settings()
    try:
        if settings.accounts_file is not None:
            # Validated whole at start (every account has its credentials and a bucket); reloaded later.
            for account in load_registry(settings).accounts():
                if account.storage.bucket is None:
                    raise ConfigError(
                        f"{settings.accounts_file}: {account.provider} account "
                        f"{account.account_id}: no bucket (storage.bucket or [defaults.storage])"
                    )
        else:
            settings.require("s3_bucket", "bandwidth_client_id", "bandwidth_client_secret")
            if settings.twilio_api_key_sid or settings.twilio_api_key_secret:
                settings.require("twilio_api_key_sid", "twilio_api_key_secret")
    except ConfigError as exc:
        print(f"archiver worker: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.bandwidth_username or settings.bandwidth_password:
        logging.getLogger("archiver").warning(
            "ARCHIVER_BANDWIDTH_USERNAME/_PASSWORD are ignored: Bandwidth decommissioned API users on "
            "2026-12-02; the OAuth client credentials (ARCHIVER_BANDWIDTH_CLIENT_ID/_SECRET) are used"
        )
