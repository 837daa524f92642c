"""Celery workers: ``celery -A workers worker`` and ``celery -A workers beat``.

``app`` is the Celery application, configured from ``ARCHIVER_*`` settings when this package is
imported; a missing or invalid setting stops the start with a message naming the variable.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

from archiver.config import ConfigError, get_settings
from archiver.logging import install_redaction, quiet_libraries, use_json
from workers.celery_app import create_celery_app

settings = get_settings()
app = create_celery_app(settings)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _configure_logging(logger: logging.Logger, **_kwargs: Any) -> None:
    if settings.log_format == "json":
        use_json(logger)
    install_redaction(settings.secret_values(), logger)
    quiet_libraries()


@worker_init.connect
def _check_settings(**_kwargs: Any) -> None:
    """Refuse to start a worker that could not do its job (Celery only logs exceptions raised in
    signal handlers, so this exits explicitly)."""
    try:
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


__all__ = ["app"]
