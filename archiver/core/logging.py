"""Logging set-up that never lets a configured secret reach a log line; text for people, or one
JSON object per line (``ARCHIVER_LOG_FORMAT=json``) carrying the item, provider and call ids of the
work under way, for log collectors."""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: Fields describing the work under way (item id, provider, kind, provider id, call id, …).
_context: ContextVar[dict[str, Any]] = ContextVar("archiver_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every record logged inside carries ``fields`` (in JSON logs; ``None`` values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the work's ids, the task, and the
    (already redacted) exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            **_context.get(),
        }
        for name in ("task_id", "task_name"):  # set by Celery's task logger
            value = getattr(record, name, None)
            if value and value != "???":
                entry[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def use_json(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) the JSON formatter."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())


_REDACTED = "***"

#: Secrets learnt while running (secrets read again from their files), and the latest access
#: tokens: every redacting filter scrubs them too. Tokens are bounded (one an hour for years must
#: not grow the list); a secret is kept as long as the process lives.
_learnt_secrets: set[str] = set()
_learnt_tokens: deque[str] = deque(maxlen=16)


def remember_secret(value: str) -> None:
    """Have every :class:`SecretRedactingFilter` scrub ``value`` from now on."""
    if len(value) >= 3:
        _learnt_secrets.add(value)


def remember_token(value: str) -> None:
    """The same for a short-lived access token (only the latest few are kept)."""
    if len(value) >= 3 and value not in _learnt_tokens:
        _learnt_tokens.append(value)


class SecretRedactingFilter(logging.Filter):
    """Replaces every known secret value in a record's final message (and its exception text):
    those it was given and those learnt since (:func:`remember_secret`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in (*self._secrets, *_learnt_secrets, *_learnt_tokens):
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets and not _learnt_secrets and not _learnt_tokens:
            return True
        message = record.getMessage()
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_redaction(secrets: Iterable[str], logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to every handler of ``logger`` (default: the root logger); call it
    after the handlers are configured."""
    redactor = SecretRedactingFilter(secrets)
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretRedactingFilter) for f in handler.filters):
            handler.addFilter(redactor)


#: Libraries whose DEBUG lines carry request headers and signatures (botocore logs the signed
#: request, urllib3 and httpcore the raw exchange): never below INFO, whatever the root level.
CHATTY_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "httpcore", "kombu", "amqp")

_URL_QUERY = re.compile(r"(?P<url>\bhttps?://[^\s'\"?#]+)\?[^\s'\"#]*")


def mask_url_queries(text: str) -> str:
    """Drop the query of every URL in ``text``: a presigned URL's query is a credential."""
    return _URL_QUERY.sub(r"\g<url>?…", text)


def quiet_libraries() -> None:
    """Cap the libraries that would log secrets at DEBUG (see :data:`CHATTY_LIBRARIES`)."""
    for name in CHATTY_LIBRARIES:
        library = logging.getLogger(name)
        library.setLevel(max(library.getEffectiveLevel(), logging.INFO))
    logging.getLogger("httpx").setLevel(logging.WARNING)


def configure_logging(level: str, secrets: Iterable[str], log_format: str = "text") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_libraries()
    if log_format == "json":
        use_json()
    install_redaction(secrets)
