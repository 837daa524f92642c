"""Retention risk: Bandwidth deletes recordings 30 days after they end. A recording not archived
within ``ARCHIVER_RETENTION_MARGIN_DAYS`` of that limit is at risk of being lost."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from archiver.core.config import Settings
from archiver.db.models import ArchiveItem, ArtifactKind, ItemState

#: States in which something of the recording is not yet archived.
UNSAFE_STATES = (ItemState.PENDING, ItemState.AWAITING_TRANSCRIPTION, ItemState.DEAD)


def at_risk(session: Session, settings: Settings, now: datetime, limit: int = 50) -> dict[str, Any]:
    cutoff = now - timedelta(days=settings.retention_days - settings.retention_margin_days)
    provider_time = func.coalesce(ArchiveItem.provider_completed_at, ArchiveItem.provider_started_at)
    condition = (
        (ArchiveItem.kind == ArtifactKind.RECORDING)
        & ArchiveItem.state.in_([s.value for s in UNSAFE_STATES])
        & or_(provider_time <= cutoff, provider_time.is_(None) & (ArchiveItem.created_at <= cutoff))
    )
    total = int(session.scalar(select(func.count()).select_from(ArchiveItem).where(condition)) or 0)
    items = session.scalars(select(ArchiveItem).where(condition).order_by(provider_time).limit(limit)).all()
    entries = []
    for item in items:
        ended = item.provider_completed_at or item.provider_started_at or item.created_at
        expires = ended + timedelta(days=settings.retention_days)
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
