"""Where secrets come from and how they are kept out of sight: files named by ``ARCHIVER_<NAME>_FILE``
(the Docker and Kubernetes secrets convention), and URLs whose password is masked when shown."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from pydantic import SecretStr

from archiver.core.exposure import placeholder_names, url_password

__all__ = [
    "FILE_SECRETS",
    "SECRET_URLS",
    "mask_url_password",
    "placeholders_in",
    "raw_url_password",
    "read_secret_file",
    "secret_values",
]

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
SECRET_URLS = ("database_url", "migrations_database_url", "broker_url", "redis_url")


def read_secret_file(path: str) -> str:
    """A secret file's value: its text without the trailing newline that editors and ``echo`` add."""
    return Path(path).read_text("utf-8").rstrip("\r\n")


def raw_url_password(url: str) -> str | None:
    """The password of ``scheme://user:password@host`` as written (percent-encoded, if it is)."""
    match = re.match(r"^[a-zA-Z0-9+.\-]+://[^:/@]*:([^@]*)@", url)
    return match.group(1) if match else None


def mask_url_password(url: str) -> str:
    """``url`` with its password shown as ``***``."""
    password = raw_url_password(url)
    return url.replace(f":{password}@", ":***@", 1) if password else url


#: Every setting that holds a secret, and the secrets boto3 reads from the environment itself.
SECRET_FIELDS = (*FILE_SECRETS, "bandwidth_password")
AWS_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def _plain(value: object) -> str | None:
    return (
        value.get_secret_value()
        if isinstance(value, SecretStr)
        else value
        if isinstance(value, str)
        else None
    )


def secret_values(settings: object) -> list[str]:
    """Every secret ``settings`` holds, URL passwords and the AWS keys included, for log redaction."""
    values = [v for name in SECRET_FIELDS if (v := _plain(getattr(settings, name)))]
    for name in SECRET_URLS:
        password = raw_url_password(url) if (url := getattr(settings, name)) else None
        if password:
            values.extend({password, unquote(password)})  # as written, and as a driver may show it
    return values + [v for name in AWS_SECRETS if (v := os.environ.get(name))]


def placeholders_in(settings: object, env_name: Callable[[str], str]) -> list[str]:
    """The variables of ``settings`` whose secret is a placeholder (``CHANGE-ME``)."""
    return placeholder_names(
        [
            *((env_name(n), _plain(getattr(settings, n))) for n in SECRET_FIELDS),
            *((f"{env_name(n)} (its password)", url_password(getattr(settings, n))) for n in SECRET_URLS),
            *((name, os.environ.get(name)) for name in AWS_SECRETS),
        ]
    )
