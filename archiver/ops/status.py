"""``archiver status``: items per state, paused accounts, and the dead letters with their reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select

from archiver.accounts import load_registry
from archiver.core.clock import clock_from_settings
from archiver.core.config import Settings
from archiver.core.terminal import printable
from archiver.db.models import ACTIVE_STATES, ArchiveItem, ItemState, ProviderAccount
from archiver.db.session import Database
from archiver.pipeline.accounts import describe_pause, paused_accounts
from archiver.pipeline.retention import at_risk, retention_by_account


def dead_letters_query(limit: int) -> Select[ArchiveItem]:
    """Dead-lettered items, the most recent first (``archiver status``, ``archiver items dead``)."""
    return (
        select(ArchiveItem)
        .where(ArchiveItem.state == ItemState.DEAD)
        .order_by(ArchiveItem.updated_at.desc(), ArchiveItem.id.desc())
        .limit(limit)
    )


def collect_status(
    db: Database,
    dead_letter_limit: int = 100,
    settings: Settings | None = None,
    now: datetime | None = None,
    retention: dict[str, float] | None = None,
) -> dict[str, Any]:
    """``retention``: the accounts whose retention differs (:func:`retention_by_account`)."""
    with db.sessionmaker() as session:
        risk = (
            at_risk(session, settings, now or datetime.now(UTC), retention=retention)
            if settings is not None
            else None
        )
        counts = dict(
            session.execute(select(ArchiveItem.state, func.count()).group_by(ArchiveItem.state))
            .tuples()
            .all()
        )
        dead = session.scalars(dead_letters_query(dead_letter_limit)).all()
        rejected = counts.get(ItemState.REJECTED.value, 0)
        paused = [_paused(session, account) for account in paused_accounts(session)]
        per_account: dict[str, dict[str, int]] = {}
        for provider, account_id, state, n in session.execute(
            select(ArchiveItem.provider, ArchiveItem.account_id, ArchiveItem.state, func.count()).group_by(
                ArchiveItem.provider, ArchiveItem.account_id, ArchiveItem.state
            )
        ).tuples():
            per_account.setdefault(f"{provider}/{account_id}", {})[state] = int(n)
    status: dict[str, Any] = {
        "items_by_state": {state.value: int(counts.get(state.value, 0)) for state in ItemState},
        "total": int(sum(counts.values())),
        "rejected": int(rejected),
        "paused_accounts": paused,
        "items_by_account": dict(sorted(per_account.items())),
        "dead_letters": [
            {
                "id": item.id,
                "ref": item.ref,
                "call_id": item.call_id,
                "failed_in_state": item.failed_state,
                "attempts": item.attempts,
                "reason": item.last_error,
                "at": item.updated_at.isoformat(),
            }
            for item in dead
        ],
    }
    if risk is not None:
        status["retention_at_risk"] = risk
    return status


def status_of(settings: Settings) -> dict[str, Any]:
    """``archiver status`` of the deployment these settings describe (its registry's retentions)."""
    db = Database(settings.database_url)
    try:
        return collect_status(
            db,
            settings=settings,
            now=clock_from_settings(settings.clock_offset_file).now(),
            retention=retention_by_account(load_registry(settings)),
        )
    finally:
        db.dispose()


def _paused(session: Any, account: ProviderAccount) -> dict[str, Any]:
    waiting = session.scalar(  # every active item of a paused account waits for it
        select(func.count()).where(
            ArchiveItem.provider == account.provider,
            ArchiveItem.account_id == account.account_id,
            ArchiveItem.state.in_([s.value for s in ACTIVE_STATES]),
        )
    )
    return {
        "provider": account.provider,
        "account_id": account.account_id,
        "reason": account.pause_reason,
        "since": account.paused_since.isoformat() if account.paused_since else None,
        "message": account.message,
        "refusals": account.refusals,
        "next_check": account.check_at.isoformat() if account.check_at else None,
        "items_waiting": int(waiting or 0),
    }


def pause_headline(entry: dict[str, Any]) -> str:
    """ "Bandwidth credentials refused since T" (the reason in words, as operators read it)."""
    return f"{describe_pause(entry['provider'], entry['reason'])} since {entry['since']}"


def format_status(status: dict[str, Any]) -> str:
    lines = ["Items by state:"]
    for state, count in status["items_by_state"].items():
        lines.append(f"  {state:<20} {count:>8}")
    lines.append(f"  {'total':<20} {status['total']:>8}")
    by_account = status.get("items_by_account", {})
    if len(by_account) > 1:
        lines.append("Items by account:")
        for account, states in by_account.items():
            shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            lines.append(f"  {printable(account):<45} {shown}")
    for entry in status.get("paused_accounts", []):
        lines.append(
            f"PAUSED: {pause_headline(entry)} (account {printable(entry['account_id'])}): "
            f"{printable(entry['message'])}\n"
            f"  {entry['items_waiting']} item(s) waiting; nothing is dead-lettered or deleted meanwhile; "
            f"checked again at {entry['next_check']}"
        )
    dead = status["dead_letters"]
    lines.append(f"Dead letters: {len(dead)}" + (" (most recent first)" if dead else ""))
    for entry in dead:
        lines.append(
            f"  #{entry['id']} {printable(entry['ref'])} (in {entry['failed_in_state']}): "
            f"{printable(entry['reason'])}"
        )
    risk = status.get("retention_at_risk")
    if risk is not None:
        lines.append(
            f"Recordings at retention risk (not archived, near Bandwidth's deletion): {risk['count']}"
        )
        for entry in risk["items"]:
            lines.append(
                f"  #{entry['id']} {printable(entry['ref'])} ({entry['state']}): provider deletes it at "
                f"{entry['provider_deletes_at']} ({entry['hours_left']} h left)"
            )
    return "\n".join(lines)
