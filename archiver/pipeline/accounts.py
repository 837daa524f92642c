"""Provider accounts paused while they cannot be served (invariant 6).

A problem of an account is not a problem of its items. An account is paused (``pause_reason``) when

* ``credentials``: the provider refuses its credentials (the token endpoint refuses the client; the
  API answers 401/403 to a new token); checked again with a new token and a cheap request;
* ``storage``: its bucket refuses us (access denied, no such bucket, its role or KMS key refused);
  checked again by writing a probe object under its prefix;
* ``removed``: it left the accounts registry; checked again by looking at the registry, so its
  items resume if it comes back.

For each:

* the step that met the refusal pauses the account (:func:`pause_account`), in the transaction that
  records the item's failure; the item spends no attempt, is never dead-lettered, and waits;
* while the account is paused the sweeper sends none of its items (:func:`not_paused`); an item
  whose message was already on its way is put back to wait without a request to the provider
  (:class:`PausedAccounts`, each process's view, at most a few seconds old);
* the sweeper checks the credentials again when the account's ``check_at`` is due
  (:func:`check_paused_accounts`): a new token and the cheapest authenticated request, the secret
  file read again if refused. Refused: the next check waits twice as long, up to
  ``ARCHIVER_ACCOUNT_PAUSE_MAX_SECONDS``. Accepted: the account is active again, and its waiting
  items, all due, are swept at once. Nothing is lost, nothing was deleted meanwhile. A refusal
  soon after (the check passed, but the provider still refuses another kind of request) continues
  the same pause: its back-off and its logging go on, so the account does not flap.

An ERROR is logged when the pause begins, then at most once per maximum interval, by whichever
process sees the refusal; ``archiver status`` and the metrics show the pause and the provider's words.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from archiver.core.config import Settings
from archiver.db.models import AccountState, ArchiveItem, PauseReason, Provider, ProviderAccount
from archiver.db.upsert import insert_ignore
from archiver.pipeline.tenants import AccountUnknown
from archiver.providers.errors import CredentialsRefused
from archiver.storage.objects import storage_refused

if TYPE_CHECKING:  # the context holds a PausedAccounts: imported by it, not importing it
    from archiver.pipeline.context import PipelineContext

__all__ = [
    "PausedAccounts",
    "check_account",
    "check_paused_accounts",
    "describe_pause",
    "not_paused",
    "pause_account",
    "paused_accounts",
]

log = logging.getLogger(__name__)

PROVIDER_NAMES = {Provider.BANDWIDTH.value: "Bandwidth", Provider.TWILIO.value: "Twilio"}


def _locked(session: Session, provider: str, account_id: str, now: datetime) -> ProviderAccount:
    """The account's row, created if new, locked until the transaction ends."""
    insert_ignore(
        session,
        ProviderAccount.__table__,  # type: ignore[arg-type]
        {
            "provider": provider,
            "account_id": account_id,
            "state": AccountState.ACTIVE.value,
            "refusals": 0,
            "checks": 0,
            "updated_at": now,
        },
        ["provider", "account_id"],
    )
    return session.scalars(
        select(ProviderAccount)
        .where(ProviderAccount.provider == provider, ProviderAccount.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


#: What the pause is about, as its log line and ``archiver status`` say it.
CAUSES = {
    PauseReason.CREDENTIALS.value: "credentials refused",
    PauseReason.STORAGE.value: "bucket refused",
    PauseReason.REMOVED.value: "not in the accounts registry",
}


def describe_pause(provider: str, reason: str | None) -> str:
    """ "Bandwidth credentials refused", "Twilio bucket refused", …"""
    return f"{PROVIDER_NAMES.get(provider, provider)} {CAUSES.get(reason or '', reason or 'paused')}"


def _log_once_per_interval(row: ProviderAccount, settings: Settings, now: datetime) -> None:
    interval = timedelta(seconds=settings.account_pause_max_seconds)
    if row.logged_at is not None and now - row.logged_at < interval:
        return
    row.logged_at = now
    assert row.paused_since is not None and row.check_at is not None
    log.error(
        "%s since %s for account %s: %s. Its items wait (no attempt spent, nothing "
        "dead-lettered, nothing deleted); checked again at %s",
        describe_pause(row.provider, row.pause_reason),
        row.paused_since.isoformat(timespec="seconds"),
        row.account_id,
        row.message,
        row.check_at.isoformat(timespec="seconds"),
    )


def pause_account(
    session: Session,
    settings: Settings,
    provider: str,
    account_id: str,
    message: str,
    now: datetime,
    cause: str = PauseReason.CREDENTIALS,
) -> ProviderAccount:
    """Pause the account (or keep it paused) for ``cause``; in the caller's transaction."""
    row = _locked(session, provider, account_id, now)
    if row.state == AccountState.PAUSED and row.pause_reason != cause:
        row.pause_reason = cause  # the latest problem is the one to check next
    if row.state != AccountState.PAUSED:
        relapse = (
            row.resumed_at is not None
            and row.paused_since is not None
            and now - row.resumed_at < 2 * timedelta(seconds=settings.account_pause_max_seconds)
        )
        row.state, row.pause_reason = AccountState.PAUSED, cause
        if relapse:  # the check passed, yet the provider still refuses some request: no fresh start
            row.check_at = now + _next_check(settings, row.checks)
        else:
            row.paused_since, row.refusals, row.checks, row.logged_at = now, 0, 0, None
            row.check_at = now + timedelta(seconds=settings.account_pause_seconds)
    row.refusals += 1
    row.message = message[:2000]
    row.updated_at = now
    _log_once_per_interval(row, settings, now)
    return row


def not_paused() -> ColumnElement[bool]:
    """A filter on archive items: the item's account is not paused."""
    return ~exists().where(
        ProviderAccount.provider == ArchiveItem.provider,
        ProviderAccount.account_id == ArchiveItem.account_id,
        ProviderAccount.state == AccountState.PAUSED,
    )


def paused_accounts(session: Session) -> list[ProviderAccount]:
    return list(
        session.scalars(
            select(ProviderAccount)
            .where(ProviderAccount.state == AccountState.PAUSED)
            .order_by(ProviderAccount.provider, ProviderAccount.account_id)
        )
    )


def _next_check(settings: Settings, checks: int) -> timedelta:
    return timedelta(
        seconds=min(settings.account_pause_max_seconds, settings.account_pause_seconds * 2**checks)
    )


class StillRefused(Exception):
    """A paused account's check found the problem still there."""


def check_account(ctx: PipelineContext, provider: str, account_id: str, cause: str | None) -> None:
    """Raise unless the account's ``cause`` of pause is gone (any other exception: no answer)."""
    if not ctx.tenants.knows(provider, account_id):
        raise AccountUnknown(provider, account_id)
    if cause == PauseReason.STORAGE:
        try:
            ctx.store_for(provider, account_id).check_writable()
        except Exception as exc:
            refused = storage_refused(exc)
            if refused is not None:
                raise StillRefused(refused) from None
            raise
    elif cause != PauseReason.REMOVED:
        if provider == Provider.BANDWIDTH:
            ctx.bandwidth_for(account_id).check_credentials(account_id)
        else:
            ctx.twilio_for(account_id).check_credentials()


class PausedAccounts:
    """A process's view of the paused accounts, read at most every ``ttl`` seconds: a step whose
    item's account is paused does no provider I/O (its message was sent before the pause)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self._ttl = ttl
        self._read_at = -ttl
        self._paused: set[tuple[str, str]] = set()

    def __contains__(self, account: tuple[str, str]) -> bool:
        return account in self._paused

    def refresh(self, session: Session) -> None:
        if time.monotonic() - self._read_at >= self._ttl:
            self._paused = {(a.provider, a.account_id) for a in paused_accounts(session)}
            self._read_at = time.monotonic()

    def add(self, provider: str, account_id: str) -> None:
        self._paused.add((provider, account_id))


def check_paused_accounts(ctx: PipelineContext) -> int:
    """Check the credentials of every paused account whose check is due; the count resumed.

    Each due account is claimed first (its next check moved on, ``SKIP LOCKED``), so overlapping
    sweeps never check one account twice; the check itself runs outside any transaction."""
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        due = uow.session.scalars(
            select(ProviderAccount)
            .where(ProviderAccount.state == AccountState.PAUSED, ProviderAccount.check_at <= now)
            .with_for_update(skip_locked=True)
        ).all()
        for row in due:
            row.checks += 1
            row.check_at = now + _next_check(ctx.settings, row.checks)
        claimed = [(row.provider, row.account_id, row.pause_reason) for row in due]
    resumed = 0
    for provider, account_id, cause in claimed:
        try:
            check_account(ctx, provider, account_id, cause)
        except (CredentialsRefused, StillRefused, AccountUnknown) as refused:
            now, still = ctx.clock.now(), _cause_of(refused, cause)
            with ctx.db.transaction() as uow:
                pause_account(uow.session, ctx.settings, provider, account_id, str(refused), now, still)
            continue
        except Exception as exc:  # unreachable, busy, 5xx: no answer about the credentials
            log.warning("credentials of %s account %s not checked (next time): %s", provider, account_id, exc)
            continue
        resumed += _resume(ctx, provider, account_id)
    return resumed


def _cause_of(refused: Exception, cause: str | None) -> str:
    if isinstance(refused, AccountUnknown):
        return PauseReason.REMOVED
    if isinstance(refused, CredentialsRefused):
        return PauseReason.CREDENTIALS
    return cause or PauseReason.STORAGE


def _resume(ctx: PipelineContext, provider: str, account_id: str) -> int:
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        row = _locked(uow.session, provider, account_id, now)
        if row.state != AccountState.PAUSED:
            return 0
        since, cause = row.paused_since, row.pause_reason
        row.state, row.pause_reason, row.check_at = AccountState.ACTIVE, None, None
        row.updated_at = row.resumed_at = now
    log.warning(
        "%s no more, for account %s (since %s): its items resume",
        describe_pause(provider, cause),
        account_id,
        since.isoformat(timespec="seconds") if since else "?",
    )
    return 1
