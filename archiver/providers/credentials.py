"""API credentials that can change under a running worker, and the HTTP Basic auth built on them.

A secret given as a file (``ARCHIVER_<NAME>_FILE``, the Docker and Kubernetes secrets convention) is
read again when the provider refuses it: an operator who rotates a secret writes the new value into
the file, and the next refusal picks it up without a restart.

Invariant: a credential is attached only to requests for its provider's configured base URL (the
clients build every URL from it and follow no redirect; the auth checks it once more).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Generator

import httpx

from archiver.core.logging import remember_secret
from archiver.core.secrets import read_secret_file
from archiver.providers.errors import ProviderRejected

__all__ = ["REFUSED_STATUSES", "RereadableBasicAuth", "SecretSource", "require_base_url"]

log = logging.getLogger(__name__)

#: What an API answers to credentials it does not accept (or no longer accepts).
REFUSED_STATUSES = frozenset({401, 403})


class SecretSource:
    """A secret's current value: given once, or read from ``path`` and read again on demand."""

    def __init__(self, value: str, path: str | None = None, name: str = "secret") -> None:
        self._value = value
        self.path = path
        self.name = name
        self._lock = threading.Lock()
        remember_secret(value)

    def get(self) -> str:
        return self._value

    def reload(self) -> bool:
        """Read the file again; ``True`` if it now holds another (non-empty) value."""
        if self.path is None:
            return False
        try:
            value = read_secret_file(self.path)
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("%s: cannot read %s again: %s", self.name, self.path, exc)
            return False
        with self._lock:
            if not value or value == self._value:
                return False
            remember_secret(value)
            self._value = value
        log.info("%s: a new value was read from %s", self.name, self.path)
        return True


def below(url: httpx.URL, base: httpx.URL) -> bool:
    """Whether ``url`` is below ``base``: the same scheme, host and port (as httpx normalises them:
    the host lower-cased, a default port dropped) and a path under the base's."""
    prefix = base.path.rstrip("/") + "/"
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port) and url.path.startswith(
        prefix
    )


def require_base_url(request: httpx.Request, base_url: str, what: str) -> None:
    """Refuse to send ``what`` anywhere but below ``base_url``."""
    if not below(request.url, httpx.URL(base_url)):
        raise ProviderRejected(f"refusing to send the {what} to {request.url.host}: not {base_url}")


def basic_header(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


class RereadableBasicAuth(httpx.Auth):
    """HTTP Basic with a secret that may be rotated in its file: a 401/403 re-reads the file and,
    if the secret changed, sends the request once more with the new one."""

    def __init__(self, user: str, secret: SecretSource, base_url: str, what: str) -> None:
        self._user = user
        self._secret = secret
        self._base_url = base_url
        self._what = what

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        require_base_url(request, self._base_url, self._what)
        sent = self._secret.get()
        request.headers["Authorization"] = basic_header(self._user, sent)
        response = yield request
        if response.status_code in REFUSED_STATUSES:
            self._secret.reload()
            if self._secret.get() != sent:  # rotated in its file (read by this thread or another)
                request.headers["Authorization"] = basic_header(self._user, self._secret.get())
                yield request
