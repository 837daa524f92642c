"""``insert_many``: the rows inserted are the rows given, on PostgreSQL and SQLite, whether a
column's values differ between rows or are all the same (sent once on PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, event, select

from archiver.db.migrate import upgrade
from archiver.db.models import ArchiveItem, ItemHistory, WebhookEvent
from archiver.db.session import Database
from archiver.db.upsert import insert_many
from tests.support.stack import new_postgres_database

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
HISTORY: Table = ItemHistory.__table__  # type: ignore[assignment]


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        with new_postgres_database("archiver_upsert") as url:
            upgrade(url)
            database = Database(url)
            yield database
            database.dispose()
    else:
        url = f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
        upgrade(url)
        database = Database(url)
        yield database
        database.dispose()


def event_row(n: int, **overrides: Any) -> dict[str, Any]:
    row = {
        "provider": "bandwidth",
        "event_type": "realTimeTranscriptionAvailable",
        "dedupe_key": f"k-{n}",
        "account_id": None,
        "received_at": NOW,
        "payload": "{}",
        "item_id": None,
    }
    return row | overrides


def stored_events(database: Database) -> dict[str, tuple[Any, ...]]:
    with database.transaction() as uow:
        return {
            e.dedupe_key: (e.provider, e.event_type, e.account_id, e.received_at, e.payload, e.item_id)
            for e in uow.session.scalars(select(WebhookEvent))
        }


def test_rows_with_shared_and_differing_values_are_stored_as_given(database):
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = [
        event_row(1),
        event_row(2, event_type="recordingAvailable", account_id="9900000"),
        event_row(3, received_at=NOW + timedelta(seconds=1), payload='{"a": 1}'),
    ]
    with database.transaction() as uow:
        inserted = insert_many(uow.session, EVENTS, rows, ["dedupe_key"], ["id", "dedupe_key"])
    assert sorted(key for _id, key in inserted) == ["k-1", "k-2", "k-3"]
    assert stored_events(database) == {
        row["dedupe_key"]: (
            row["provider"],
            row["event_type"],
            row["account_id"],
            row["received_at"],
            row["payload"],
            row["item_id"],
        )
        for row in rows
    }
    if database.engine.dialect.name == "postgresql":
        insert = next(s for s in statements if s.startswith("INSERT INTO webhook_events"))
        # provider and item_id (the same in every row) travel once, the others as arrays
        assert insert.count("[]") == 5, insert

    # Again, with two rows already there: only the new one is inserted.
    again = [event_row(2, payload="changed"), event_row(4), event_row(1)]
    with database.transaction() as uow:
        inserted = insert_many(uow.session, EVENTS, again, ["dedupe_key"], ["id", "dedupe_key"])
    assert [key for _id, key in inserted] == ["k-4"]
    assert stored_events(database)["k-2"][4] == "{}"  # not overwritten
    assert len(stored_events(database)) == 4


def test_identical_rows_are_all_inserted(database):
    """Every column the same in every row: still one row each."""
    with database.transaction() as uow:
        item = ArchiveItem(
            provider="bandwidth",
            account_id="9900000",
            kind="realtime_transcription",
            provider_id="t-1",
            state="pending",
            created_at=NOW,
            updated_at=NOW,
        )
        uow.session.add(item)
        uow.session.flush()
        row = {"item_id": item.id, "at": NOW, "from_state": None, "to_state": "pending", "detail": None}
        insert_many(uow.session, HISTORY, [dict(row) for _ in range(3)])
        insert_many(uow.session, HISTORY, [dict(row, detail="one")])
    with database.transaction() as uow:
        history = uow.session.scalars(select(ItemHistory).order_by(ItemHistory.id)).all()
        assert [(h.item_id, h.at, h.from_state, h.to_state, h.detail) for h in history] == [
            (item.id, NOW, None, "pending", None)
        ] * 3 + [(item.id, NOW, None, "pending", "one")]
