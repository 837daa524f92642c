"""Claiming an item for one step.

A claim is a single conditional UPDATE: the item must be in the step's state, due, and not leased by
a live holder. Whoever wins the UPDATE owns the item until the lease expires; a duplicated or
redelivered message loses the race and does nothing. A worker killed mid-step leaves a lease that
simply expires, after which the item can be claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from archiver.db.models import ArchiveItem, ItemHistory

#: A message may arrive slightly before the due time it was scheduled for (clocks of different hosts).
DUE_TOLERANCE = timedelta(seconds=5)


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    MISSING = "missing"  # no such item
    WRONG_STATE = "wrong_state"  # the step is already done (or the item moved elsewhere)
    NOT_DUE = "not_due"  # the sweeper will enqueue it when due
    LEASED = "leased"  # another worker holds it now


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    item: ArchiveItem | None = None
    lease_remaining: float = 0.0


def claim(
    session: Session, item_id: int, state: str, owner: str, now: datetime, lease_seconds: float
) -> Claim:
    claimed = session.scalars(
        update(ArchiveItem)
        .where(
            ArchiveItem.id == item_id,
            ArchiveItem.state == state,
            or_(ArchiveItem.due_at.is_(None), ArchiveItem.due_at <= now + DUE_TOLERANCE),
            or_(ArchiveItem.lease_owner.is_(None), ArchiveItem.lease_expires_at < now),
        )
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
            resends=0,
        )
        .returning(ArchiveItem),  # the claimed row in the same round trip
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).one_or_none()
    if claimed is not None:
        return Claim(ClaimStatus.CLAIMED, claimed)
    item = session.get(ArchiveItem, item_id, populate_existing=True)  # why not: read it
    if item is None:
        return Claim(ClaimStatus.MISSING)
    if item.state != state:
        return Claim(ClaimStatus.WRONG_STATE, item)
    if item.lease_owner is not None and item.lease_expires_at is not None and item.lease_expires_at >= now:
        return Claim(ClaimStatus.LEASED, item, (item.lease_expires_at - now).total_seconds())
    return Claim(ClaimStatus.NOT_DUE, item)


def reload_owned(session: Session, item_id: int, state: str, owner: str) -> ArchiveItem | None:
    """The item, locked, if ``owner`` still holds it in ``state``; ``None`` if the lease was lost."""
    return session.scalars(
        select(ArchiveItem)
        .where(and_(ArchiveItem.id == item_id, ArchiveItem.state == state, ArchiveItem.lease_owner == owner))
        .with_for_update()
    ).one_or_none()


def release(item: ArchiveItem) -> None:
    item.lease_owner = None
    item.lease_expires_at = None


def transition(session: Session, item: ArchiveItem, to_state: str, now: datetime, detail: str | None) -> None:
    """Move ``item`` to ``to_state`` and write the history row (also for a same-state event)."""
    session.add(ItemHistory(item_id=item.id, at=now, from_state=item.state, to_state=to_state, detail=detail))
    item.state = to_state
    item.updated_at = now
