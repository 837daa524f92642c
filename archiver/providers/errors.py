"""What can go wrong when talking to a provider, classified by what the caller should do.

* :class:`RateLimited`: 429; wait ``retry_after`` seconds (``None``: the provider did not say).
* :class:`ProviderUnavailable`: 5xx, timeouts, connection errors; retry with backoff.
* :class:`ProviderRejected`: any other 4xx; retrying will not help.
* :class:`CredentialsRefused`: the provider refuses the account's credentials (the token endpoint
  refuses the client, or the API answers 401/403 to fresh credentials): a problem of the account,
  not of the item. The account is paused; its items wait and resume once the credentials work.
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
    #: Set once a loop has retried it in place: an outer loop passes it on as it is.
    retried_in_place = False


class ProviderRejected(ProviderError):
    retryable = False


class NotFound(ProviderRejected):
    """404: the artifact does not exist (or no longer does) at the provider."""


class CredentialsRefused(ProviderError):
    """The provider refuses the account's credentials; ``provider`` names whose."""

    retryable = False

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.provider = provider
