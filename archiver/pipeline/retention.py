"""Retention risk: Bandwidth deletes recordings 30 days after they end (an account's own
``retention_days`` in the registry, if it has one). A recording not archived within
``ARCHIVER_RETENTION_MARGIN_DAYS`` of that limit is at risk of being lost."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from archiver.accounts import Registry
from archiver.core.config import Settings
from archiver.db.models import ArchiveItem, ArtifactKind, ItemState

#: States in which something of the recording is not yet archived.
UNSAFE_STATES = (ItemState.PENDING, ItemState.AWAITING_TRANSCRIPTION, ItemState.DEAD)


def retention_by_account(registry: Registry) -> dict[str, float]:
    """The Bandwidth accounts whose retention is not ``ARCHIVER_RETENTION_DAYS`` (``retention_days``
    in the registry), by account id."""
    return {
        a.account_id: a.retention_days for a in registry.bandwidth.values() if a.retention_days is not None
    }


def at_risk(
    session: Session,
    settings: Settings,
    now: datetime,
    limit: int = 50,
    retention: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Recordings at risk; ``retention``: the accounts whose retention differs (days, by id)."""
    retention = retention or {}
    provider_time = func.coalesce(ArchiveItem.provider_completed_at, ArchiveItem.provider_started_at)

    def older_than(days: float) -> ColumnElement[bool]:
        cutoff = now - timedelta(days=days - settings.retention_margin_days)
        return or_(provider_time <= cutoff, provider_time.is_(None) & (ArchiveItem.created_at <= cutoff))

    by_days: dict[float, list[str]] = {}
    for account, days in retention.items():
        by_days.setdefault(days, []).append(account)
    old = older_than(settings.retention_days)
    if by_days:
        special = [a for accounts in by_days.values() for a in accounts]
        old = or_(
            ArchiveItem.account_id.not_in(special) & old,
            *(ArchiveItem.account_id.in_(accounts) & older_than(days) for days, accounts in by_days.items()),
        )
    condition = (
        (ArchiveItem.kind == ArtifactKind.RECORDING)
        & ArchiveItem.state.in_([s.value for s in UNSAFE_STATES])
        & old
    )
    total = int(session.scalar(select(func.count()).select_from(ArchiveItem).where(condition)) or 0)
    items = session.scalars(select(ArchiveItem).where(condition).order_by(provider_time).limit(limit)).all()
    entries = []
    for item in items:
        ended = item.provider_completed_at or item.provider_started_at or item.created_at
        expires = ended + timedelta(days=retention.get(item.account_id, settings.retention_days))
        entries.append(
            {
                "id": item.id,
                "ref": item.ref,
                "state": item.state,
                "ended_at": ended.isoformat(),
                "provider_deletes_at": expires.isoformat(),
                "hours_left": round((expires - now).total_seconds() / 3600, 1),
            }
        )
    return {"count": total, "items": entries}
