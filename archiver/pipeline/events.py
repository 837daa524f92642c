"""Recording an accepted webhook: the event row and the item it announces, in one transaction.

A duplicate event (same dedupe key) changes nothing. A new item is enqueued only after the commit;
if the broker is down then, the item is still due in the database and the sweeper enqueues it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, update

from archiver.db.models import (
    ArchiveItem,
    ItemHistory,
    ItemState,
    WebhookEvent,
)
from archiver.db.session import UnitOfWork
from archiver.db.upsert import (
    bound_value,
    insert_ignore,
    insert_many,
    insert_many_then,
    unnest_params,
    unnest_sql,
)
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import Step, StepMessage
from archiver.pipeline.items import ITEM_KEY, Action, AnnouncedItem, get_or_create_item, new_item_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptedEvent:
    provider: str
    event_type: str
    dedupe_key: str
    account_id: str | None
    payload: str
    item: AnnouncedItem | None


class Recorded(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"


def record_event(ctx: PipelineContext, event: AcceptedEvent) -> tuple[Recorded, int | None]:
    """Store ``event`` durably; return whether it was new and the id of its item (if any).

    The intake records events in batches (:func:`record_events`); this one-at-a-time form is the
    fallback when a batch fails, and what the CLI and the Twilio request path use.
    """
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        session = uow.session
        event_id = insert_ignore(
            session,
            WebhookEvent.__table__,  # type: ignore[arg-type]
            {
                "provider": event.provider,
                "event_type": event.event_type,
                "dedupe_key": event.dedupe_key,
                "account_id": event.account_id,
                "received_at": now,
                "payload": event.payload,
            },
            ["dedupe_key"],
        )
        if event_id is None:
            return Recorded.DUPLICATE, None
        if event.item is None:
            return Recorded.NEW, None
        item, _new = get_or_create_item(uow, ctx, event.item, now)
        row = session.get(WebhookEvent, event_id)
        assert row is not None
        row.item_id = item.id
        return Recorded.NEW, item.id


@dataclass
class RecordedBatch:
    """What :func:`record_events` committed: each event's outcome, in batch order, and the messages
    of the items it scheduled, which the caller sends (:meth:`send`) once it has answered."""

    results: list[tuple[Recorded, int | None]]
    messages: list[StepMessage]

    def send(self, ctx: PipelineContext) -> str:
        """Send the messages, or relay them through a worker if there are at least
        ``ARCHIVER_INTAKE_RELAY_MIN_MESSAGES``; how: ``"direct"``, ``"relayed"`` or ``"failed"``.

        If the broker refuses, the items are due in the database and the sweeper sends them after
        ``ARCHIVER_REQUEUE_AFTER_SECONDS``: nothing is lost."""
        relayed = len(self.messages) >= ctx.settings.intake_relay_min_messages
        try:
            if relayed:
                ctx.dispatcher.relay(self.messages)
            else:
                ctx.dispatcher.enqueue_many(self.messages)
        except Exception:
            log.exception("sending %d messages failed; the sweeper will send them", len(self.messages))
            return "failed"
        return "relayed" if relayed else "direct"


def record_events(ctx: PipelineContext, events: Sequence[AcceptedEvent]) -> RecordedBatch:
    """Store a batch of events in one transaction, with a few statements for the whole batch: a
    busy intake commits many webhooks for the price of one (group commit).

    The outcome is that of :func:`record_event` applied in batch order: of two events with one
    dedupe key the first is new, the second a duplicate; an event about an item that exists
    (before the batch, or from an earlier event of it) goes through :func:`get_or_create_item`.
    Rows are written in key order, so that concurrent batches lock in the same order. The messages
    of items that existed are sent on commit, as :func:`record_event` sends them; those of the
    items the batch created are left to :meth:`RecordedBatch.send`.
    """
    now = ctx.clock.now()
    results: list[tuple[Recorded, int | None]] = [(Recorded.DUPLICATE, None)] * len(events)
    with ctx.db.transaction() as uow:
        session = uow.session
        events_table: Table = WebhookEvent.__table__  # type: ignore[assignment]
        first_with_key: dict[str, int] = {}
        for index, event in enumerate(events):
            first_with_key.setdefault(event.dedupe_key, index)
        event_rows = [
            {
                "provider": events[index].provider,
                "event_type": events[index].event_type,
                "dedupe_key": key,
                "account_id": events[index].account_id,
                "received_at": now,
                "payload": events[index].payload,
                "item_id": None,
            }
            for key, index in sorted(first_with_key.items())
        ]
        stored = insert_many(session, events_table, event_rows, ["dedupe_key"], ["id", "dedupe_key"])
        event_ids = {first_with_key[key]: int(event_id) for event_id, key in stored}
        new_indices = sorted(event_ids)

        first_for_item: dict[tuple[str, ...], int] = {}
        known: list[int] = []  # events whose item exists before them
        for index in new_indices:
            announced = events[index].item
            if announced is None:
                continue
            key = tuple(getattr(announced, name) for name in ITEM_KEY)  # as _create_items keys them
            if key in first_for_item:
                known.append(index)
            else:
                first_for_item[key] = index
        item_ids, messages = _create_items(
            uow, ctx, [(events[i], event_ids[i]) for i in first_for_item.values()], now
        )
        for key, index in first_for_item.items():
            if key in item_ids:
                results[index] = (Recorded.NEW, item_ids[key])  # its event is linked already
            else:
                known.append(index)
        for index in sorted(known):
            announced = events[index].item
            assert announced is not None
            item, _new = get_or_create_item(uow, ctx, announced, now)
            results[index] = (Recorded.NEW, item.id)
        for index in new_indices:
            if events[index].item is None:
                results[index] = (Recorded.NEW, None)
        _link_events(uow, [(event_ids[index], results[index][1]) for index in sorted(known)])
    return RecordedBatch(results, messages)


def _link_events(uow: UnitOfWork, links: list[tuple[int, int | None]]) -> None:
    """Set each event's item: (event id, item id) pairs."""
    if not links:
        return
    events_table: Table = WebhookEvent.__table__  # type: ignore[assignment]
    link = (
        update(events_table)
        .where(events_table.c.id == bindparam("event_id"))
        .values(item_id=bindparam("linked_item"))
    )
    rows = [{"event_id": event_id, "linked_item": item_id} for event_id, item_id in links]
    uow.session.connection().execute(link, rows)  # an executemany: one pipelined round trip


def _create_items(
    uow: UnitOfWork, ctx: PipelineContext, events: list[tuple[AcceptedEvent, int]], now: datetime
) -> tuple[dict[tuple[str, ...], int], list[StepMessage]]:
    """Insert the items announced by ``events`` (event, its row's id; one per artifact) that do not
    exist yet, scheduled as :func:`get_or_create_item` would, with their first history rows, and
    link each of those events to the item it created. Returns the new items' ids by artifact key
    and the messages to send once committed.

    On PostgreSQL that is one statement (the history and the links read the inserted rows): a busy
    intake's batch costs a round trip and a statement less per step."""
    rows = []
    links = []
    for event, event_id in events:
        assert event.item is not None
        row = new_item_row(ctx, event.item, now, None)
        if row["state"] == ItemState.PENDING and event.item.action is not Action.ARCHIVE_LATER:
            row.update(due_at=now, enqueued_at=now)  # as schedule_now
        rows.append(row)
        links.append({"event_id": event_id, **{name: row[name] for name in ITEM_KEY}})
    rows.sort(key=_key)
    postgres = uow.session.get_bind().dialect.name == "postgresql"
    if postgres:
        then = _history_and_links_sql()
        params = {
            "history_at": bound_value(ItemHistory.__table__.c.at, now),  # type: ignore[attr-defined]
            **unnest_params(_announced_columns(), "announced", links),
        }
        created = insert_many_then(
            uow.session, _items_table(), rows, ITEM_KEY, ("id", *ITEM_KEY), then, params
        )
    else:
        created = insert_many(uow.session, _items_table(), rows, ITEM_KEY, ("id", *ITEM_KEY))
    item_ids = {tuple(columns): int(item_id) for item_id, *columns in created}
    if not postgres:
        history = [_first_history(item_ids[_key(row)], row, now) for row in rows if _key(row) in item_ids]
        insert_many(uow.session, ItemHistory.__table__, history)  # type: ignore[arg-type]
        _link_events(
            uow, [(link["event_id"], item_ids[_key(link)]) for link in links if _key(link) in item_ids]
        )
    messages = [
        StepMessage(
            Step.ARCHIVE,
            item_ids[_key(row)],
            ArchiveItem.ref_of(row["provider"], row["kind"], row["provider_id"]),
        )
        for row in rows
        if row["enqueued_at"] is not None and _key(row) in item_ids
    ]
    return item_ids, messages


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(row[name] for name in ITEM_KEY)


def _items_table() -> Table:
    return ArchiveItem.__table__  # type: ignore[return-value]


def _first_history(item_id: int, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The history row of an item just created from ``row``."""
    state, detail = row["state"], row["outcome"]
    return {"item_id": item_id, "at": now, "from_state": None, "to_state": state, "detail": detail}


def _announced_columns() -> dict[str, Any]:
    """The columns of the (event id, artifact key) pairs the links are made from, for their types."""
    events: Table = WebhookEvent.__table__  # type: ignore[assignment]
    return {"event_id": events.c.id, **{name: _items_table().c[name] for name in ITEM_KEY}}


@lru_cache(maxsize=1)
def _history_and_links_sql() -> dict[str, str]:
    """For :func:`insert_many_then` after the items' insert: the first history row of each item
    inserted (as :func:`_first_history`), and each event linked to the item it created. Built once:
    it is the same for every batch."""
    history: Table = ItemHistory.__table__  # type: ignore[assignment]
    events: Table = WebhookEvent.__table__  # type: ignore[assignment]
    announced = unnest_sql(_announced_columns(), "announced")
    return {
        "history": (
            f"INSERT INTO {history.name} (item_id, at, from_state, to_state, detail)"  # noqa: S608
            " SELECT id, %(history_at)s, NULL, state, outcome FROM inserted"
        ),
        # The events' items, by the artifact key (NOT NULL columns) they announced.
        "linked": (
            f"UPDATE {events.name} SET item_id = inserted.id"  # noqa: S608
            f" FROM inserted JOIN {announced} USING ({', '.join(ITEM_KEY)})"
            f" WHERE {events.name}.id = announced.event_id"
        ),
    }  # names from our own metadata; values travel as parameters
