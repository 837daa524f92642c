"""Small helpers shared by the tests."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from archiver.core.config import Settings
from archiver.db.models import ArchivedObject, ArchiveItem, ItemHistory, TranscriptSegment, WebhookEvent
from archiver.db.session import Database
from archiver.local.devstack import LocalStack
from archiver.pipeline.context import PipelineContext
from tests.support.clocks import TestClock
from tests.support.stack import SPARE_REDIS_URL, wait_for
from workers.wiring import build_context

#: The broker of in-process contexts: not the session worker's, so nothing they send is worked on.
SPARE_BROKER = SPARE_REDIS_URL  # a broker no worker reads


def in_process_context(stack: LocalStack, db: Database, **overrides: Any) -> PipelineContext:
    """A pipeline context in the test process, configured as the stack's processes are, on ``db``,
    with a clock the test can move (``ctx.clock.offset``)."""
    env: dict[str, Any] = {
        k.removeprefix("ARCHIVER_").lower(): v for k, v in stack.env().items() if k.startswith("ARCHIVER_")
    }
    env.update({"database_url": db.url, "broker_url": SPARE_BROKER, **overrides})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, stack.env()[key])
    settings = Settings(**env)
    ctx = build_context(settings)
    ctx.clock = TestClock()
    return ctx


def media_bytes(rec: dict[str, Any]) -> bytes:
    """What the simulator serves for this recording (its media is deterministic from the seed)."""
    from archiver.simulator.media import iter_media

    return b"".join(iter_media(rec["durationSeconds"], rec["channels"], rec["fileFormat"], rec["seed"]))


def item_by_provider_id(db: Database, provider_id: str) -> ArchiveItem | None:
    with db.sessionmaker() as session:
        return session.scalars(
            select(ArchiveItem).where(ArchiveItem.provider_id == provider_id)
        ).one_or_none()


def wait_state(db: Database, provider_id: str, *states: str, timeout: float = 30.0) -> ArchiveItem:
    def reached() -> ArchiveItem | None:
        item = item_by_provider_id(db, provider_id)
        return item if item is not None and item.state in states else None

    try:
        result: ArchiveItem = wait_for(reached, timeout, f"{provider_id} in {states}")
    except AssertionError:
        item = item_by_provider_id(db, provider_id)
        raise AssertionError(
            f"{provider_id} never reached {states}; now: "
            f"{None if item is None else (item.state, item.last_error, item.due_at)}"
        ) from None
    return result


def count(db: Database, model: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def history(db: Database, item_id: int) -> list[ItemHistory]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                select(ItemHistory).where(ItemHistory.item_id == item_id).order_by(ItemHistory.id)
            )
        )


def segments(db: Database, item_id: int) -> list[TranscriptSegment]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                select(TranscriptSegment)
                .where(TranscriptSegment.item_id == item_id)
                .order_by(TranscriptSegment.position)
            )
        )


def objects(db: Database, item_id: int) -> dict[str, ArchivedObject]:
    """The item's archived objects by role."""
    with db.sessionmaker() as session:
        return {
            o.role: o
            for o in session.scalars(select(ArchivedObject).where(ArchivedObject.item_id == item_id))
        }


def events(db: Database) -> list[WebhookEvent]:
    with db.sessionmaker() as session:
        return list(session.scalars(select(WebhookEvent)))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
