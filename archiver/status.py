"""``archiver status``: items per state and the dead letters with their reasons."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from archiver.db.models import ArchiveItem, ItemState
from archiver.db.session import Database


def collect_status(db: Database, dead_letter_limit: int = 100) -> dict[str, Any]:
    with db.sessionmaker() as session:
        counts = dict(
            session.execute(select(ArchiveItem.state, func.count()).group_by(ArchiveItem.state))
            .tuples()
            .all()
        )
        dead = session.scalars(
            select(ArchiveItem)
            .where(ArchiveItem.state == ItemState.DEAD)
            .order_by(ArchiveItem.updated_at.desc())
            .limit(dead_letter_limit)
        ).all()
        rejected = counts.get(ItemState.REJECTED.value, 0)
    return {
        "items_by_state": {state.value: int(counts.get(state.value, 0)) for state in ItemState},
        "total": int(sum(counts.values())),
        "rejected": int(rejected),
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


def format_status(status: dict[str, Any]) -> str:
    lines = ["Items by state:"]
    for state, count in status["items_by_state"].items():
        lines.append(f"  {state:<20} {count:>8}")
    lines.append(f"  {'total':<20} {status['total']:>8}")
    dead = status["dead_letters"]
    lines.append(f"Dead letters: {len(dead)}" + (" (most recent first)" if dead else ""))
    for entry in dead:
        lines.append(f"  #{entry['id']} {entry['ref']} (in {entry['failed_in_state']}): {entry['reason']}")
    return "\n".join(lines)
