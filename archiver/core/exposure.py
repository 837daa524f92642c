"""What keeps a process from starting as an open door: placeholder secrets and exposed binds.

The deploy examples ship placeholders where secrets go (``CHANGE-ME``). A process that starts with
one would run with a password anyone can read in this repository, so every process refuses to start
instead, naming the variable (:func:`placeholder_names`). Tools that are safe only on loopback
(Flower without credentials, the simulator with its defaults) ask :func:`is_loopback`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["is_loopback", "is_placeholder", "origin", "placeholder_names", "url_password"]

_PLACEHOLDER = re.compile(
    r"change[-_ ]?me|replace[-_ ]?me|fill[-_ ]?me|put[-_ ]?.*[-_ ]here|your[-_ ].*(secret|password|token)"
    r"|^<.*>$|^\$\{.*\}$|^x{3,}$|^(secret|password|passwd|token|changeit|example|todo|tbd|none|null)$",
    re.IGNORECASE,
)


def is_placeholder(value: str) -> bool:
    """``value`` reads as a stand-in for a secret (``CHANGE-ME``, ``<secret>``, ``xxxx``, ``password``)."""
    return bool(_PLACEHOLDER.search(value.strip()))


def url_password(url: str | None) -> str | None:
    """The password of a ``scheme://user:password@host`` URL, decoded; None without one."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def placeholder_names(values: Iterable[tuple[str, str | None]]) -> list[str]:
    """The names, of (name, value) pairs, whose value is a placeholder."""
    return [name for name, value in values if value and is_placeholder(value)]


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``."""
    bare = host.strip("[]").lower()
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the port made explicit; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)
