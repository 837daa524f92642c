"""What can go wrong when talking to a provider, classified by what the caller should do.

* :class:`RateLimited`: 429; wait ``retry_after`` seconds (``None``: the provider did not say).
* :class:`ProviderUnavailable`: 5xx, timeouts, connection errors; retry with backoff.
* :class:`ProviderRejected`: any other 4xx; retrying will not help.
"""

from __future__ import annotations


class ProviderError(Exception):
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(ProviderError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    retryable = True


class ProviderRejected(ProviderError):
    retryable = False


class NotFound(ProviderRejected):
    """404: the artifact does not exist (or no longer does) at the provider."""
