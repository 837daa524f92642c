"""Declarative retry policy: each failure kind maps to a decision.

* a 429 waits what ``Retry-After`` says (or backs off when it says nothing) and does not count as
  an attempt: the provider asked us to wait, the item is not at fault;
* transient failures (5xx, connection errors, storage errors, failed verification) back off with
  full jitter and count as attempts; after ``max_attempts`` the item is dead-lettered;
* permanent failures (other 4xx, invalid ids or bodies, an integrity alarm: S3 already holds
  another object at our key) are dead-lettered at once;
* "not ready yet" (a recording still processing) waits without counting as an attempt;
* the provider refusing the account's credentials, the account's bucket refusing us (access denied,
  no such bucket, a role or key refused) and an account no longer in the registry pause the
  account: the item is not at fault, so it spends no attempt and is never dead-lettered; it waits
  for the account (a due time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from archiver.core.ids import InvalidId
from archiver.pipeline.tenants import AccountUnknown
from archiver.providers.errors import CredentialsRefused, ProviderError, RateLimited
from archiver.storage.media_checks import MediaInvalid
from archiver.storage.objects import IntegrityAlarm, VerificationFailed, storage_refused


class NotReady(Exception):
    """The provider is not ready (a recording still processing, a transcription not yet done):
    look again after ``delay`` seconds. Not a failure: no attempt is counted."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class PermanentStepError(Exception):
    """A failure retrying cannot fix (an unexpected body, a broken invariant)."""


@dataclass(frozen=True)
class Retry:
    delay: float
    counts_as_attempt: bool
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class PauseAccount:
    """The account cannot be served (its credentials or its bucket refused, or it left the
    registry): pause the account; the item waits for it."""

    provider: str
    reason: str
    #: ``credentials``, ``storage`` or ``removed`` (:class:`archiver.db.models.PauseReason`).
    cause: str = "credentials"


Decision = Retry | DeadLetter | PauseAccount


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base: float
    backoff_max: float

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th failure (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def decide(self, error: BaseException, attempts_so_far: int) -> Decision:
        reason = f"{type(error).__name__}: {error}"[:2000]
        if isinstance(error, CredentialsRefused):
            return PauseAccount(error.provider, reason)
        if isinstance(error, AccountUnknown):
            return PauseAccount(error.provider, reason, "removed")
        refused = storage_refused(error)
        if refused is not None:
            return PauseAccount("storage", refused, "storage")
        if isinstance(error, NotReady):
            return Retry(delay=error.delay, counts_as_attempt=False, reason=reason)
        if isinstance(error, RateLimited):
            delay = error.retry_after if error.retry_after is not None else self.backoff(attempts_so_far + 1)
            return Retry(delay=delay, counts_as_attempt=False, reason=reason)
        if isinstance(error, ProviderError) and not error.retryable:
            return DeadLetter(reason)
        if isinstance(error, InvalidId | PermanentStepError | IntegrityAlarm):
            return DeadLetter(reason)
        retryable = isinstance(
            error, ProviderError | VerificationFailed | MediaInvalid | BotoCoreError | ClientError
        )
        attempt = attempts_so_far + 1
        if attempt >= self.max_attempts:
            return DeadLetter(f"gave up after {attempt} attempts; last error: {reason}")
        if not retryable:
            # An unexpected error is most likely a bug: retried, but counted, so it ends as a dead letter.
            reason = f"unexpected {reason}"
        return Retry(delay=self.backoff(attempt), counts_as_attempt=True, reason=reason)
