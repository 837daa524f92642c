"""What keeps a simulator that someone exposed from being an open door.

The simulator is a test peer with well-known default credentials. Bound beyond loopback with one of
them in use, anyone who can reach it could drive it: :func:`refuse_exposed_defaults` stops the start.
Its admin API delivers webhooks only to the targets it was started with (:func:`webhook_target_allowed`),
never to any URL a caller names (that would make it a port scanner), and caps what one request
may create (:func:`bounded_count`)."""

from __future__ import annotations

from collections.abc import Iterable

from archiver.core.exposure import is_loopback, origin

__all__ = [
    "MAX_CREATED_PER_REQUEST",
    "MAX_SENTENCES",
    "bounded_count",
    "refuse_exposed_defaults",
    "webhook_target_allowed",
]

#: The most items one admin request may create (the largest benchmark creates 5,000).
MAX_CREATED_PER_REQUEST = 100_000
#: The most sentences one simulated Twilio transcript may hold.
MAX_SENTENCES = 200_000


def refuse_exposed_defaults(host: str, defaults_in_use: Iterable[str]) -> None:
    """Raise :class:`SystemExit` naming the defaults when ``host`` is beyond loopback."""
    named = sorted(defaults_in_use)
    if named and not is_loopback(host):
        raise SystemExit(
            f"simulator: refusing to listen on {host} with default credentials ({', '.join(named)}): "
            "anyone who reaches it could drive it. Set them (their environment variables) or bind 127.0.0.1."
        )


def webhook_target_allowed(url: str, targets: Iterable[str | None]) -> bool:
    """``url`` has the origin of one of the configured ``targets``."""
    wanted = origin(url)
    return wanted is not None and any(t and origin(t) == wanted for t in targets)


def bounded_count(value: object, name: str = "count", maximum: int = MAX_CREATED_PER_REQUEST) -> int:
    """An integer in [0, maximum], or :class:`ValueError` naming the field (a 400)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be an integer")
    number = int(value)
    if not 0 <= number <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}")
    return number
