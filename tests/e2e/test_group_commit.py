"""Group commit: a batch of events recorded in one transaction ends exactly as recording them one
by one would, on PostgreSQL and SQLite; a refused event fails alone; a database that is down fails
the batch at once. Messages are read back from a real Redis queue."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from celery.utils.saferepr import saferepr
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from archiver.core.config import Settings
from archiver.db.migrate import upgrade
from archiver.db.models import ArchiveItem, ItemHistory, ItemState, WebhookEvent
from archiver.db.session import Database
from archiver.intake.app import event_batch_writer
from archiver.intake.bandwidth import parse_bandwidth_event
from archiver.intake.group_commit import GroupCommitRecorder
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import (
    QUEUE_LIVE,
    QUEUE_MAINTENANCE,
    RELAY_TASK_NAME,
    Step,
    StepMessage,
    relay_messages,
)
from archiver.pipeline.events import AcceptedEvent, Recorded, record_event, record_events
from tests.support.clocks import TestClock
from tests.support.helpers import count, wait_state
from tests.support.stack import PG_ADMIN_DSN, SECRETS, SPARE_REDIS_URL, new_postgres_database, wait_for
from workers.wiring import build_context

BROKER = SPARE_REDIS_URL
ACCOUNT = "9900000"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def realtime(n: int, event_type: str = "realTimeTranscriptionAvailable") -> bytes:
    body = {
        "eventType": event_type,
        "eventTime": "2026-11-21T11:59:00.000Z",
        "accountId": ACCOUNT,
        "callId": f"c-batch-{n}",
        "realTimeTranscription": {"id": f"t-batch-{n}", "status": "available"},
    }
    if event_type == "realTimeTranscriptionRejected":
        body["cause"] = "unsupported-language"
    return json.dumps(body).encode()


def recording(n: int, event_type: str) -> bytes:
    return json.dumps(
        {
            "eventType": event_type,
            "eventTime": "2026-11-21T11:56:00.000Z",
            "accountId": ACCOUNT,
            "callId": f"c-rec-{n}",
            "recordingId": f"r-batch-{n}",
            "status": "complete",
            "startTime": "2026-11-21T11:50:00.000Z",
            "endTime": "2026-11-21T11:55:00.000Z",
        }
    ).encode()


def answered(n: int) -> bytes:
    return json.dumps(
        {
            "eventType": "answer",
            "eventTime": "2026-11-21T11:58:00.000Z",
            "accountId": ACCOUNT,
            "callId": f"c-{n}",
        }
    ).encode()


#: Recorded before the batch: an item the batch's events find existing.
BEFORE = [recording(1, "recordComplete")]
#: One batch covering every path: new, a duplicate within the batch, a rejection, an item created
#: and then woken within the batch, an item that existed before, an event without an item.
BATCH = [
    realtime(1),
    realtime(1),
    realtime(2, "realTimeTranscriptionRejected"),
    recording(2, "recordComplete"),
    recording(2, "recordingAvailable"),
    recording(1, "recordingAvailable"),
    answered(1),
    realtime(3),
    recording(1, "recordComplete"),  # the same event as BEFORE's: a duplicate
]


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def make_database(tmp_path: Path) -> Iterator[Callable[[str], Database]]:
    """Migrated, empty databases of either kind, dropped afterwards."""
    made: list[Database] = []
    with ExitStack() as dropped:

        def make(kind: str) -> Database:
            if kind == "postgresql":
                url = dropped.enter_context(new_postgres_database("archiver_batch"))
            else:
                url = f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
            upgrade(url)
            made.append(Database(url))
            return made[-1]

        yield make
        for database in made:  # before their databases are dropped
            database.dispose()


def context(database: Database) -> PipelineContext:
    ctx = build_context(Settings(database_url=database.url, broker_url=BROKER))
    ctx.db.dispose()
    ctx.db = database  # the test's own, which it disposes of before its database is dropped
    ctx.clock = TestClock(NOW)
    return ctx


def decoded(raw: bytes | None) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """A Celery message read from Redis: its headers, positional and keyword arguments."""
    assert raw is not None
    message = json.loads(raw)
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"], args, kwargs


def task_of(raw: bytes | None) -> tuple[str, list[Any], str]:
    """A Celery message's task name, positional arguments, and the arguments as Flower shows them."""
    headers, args, _kwargs = decoded(raw)
    return headers["task"], args, headers["argsrepr"]


def sent_refs(broker: redis.Redis) -> list[str]:
    """The ``ref`` of every message in the live queue, in the order sent, emptying it."""
    refs = []
    while (raw := broker.rpop(QUEUE_LIVE)) is not None:
        refs.append(decoded(raw)[2]["ref"])
    return refs


def snapshot(database: Database, outcomes: Sequence[tuple[Recorded, int | None]]) -> dict[str, Any]:
    """What the database holds, with row ids replaced by the artifacts they name."""
    with database.transaction() as uow:
        items = {item.id: item for item in uow.session.scalars(select(ArchiveItem))}
        history = uow.session.scalars(select(ItemHistory).order_by(ItemHistory.id)).all()
        events = uow.session.scalars(select(WebhookEvent)).all()
        return {
            "outcomes": [(recorded, items[i].ref if i else None) for recorded, i in outcomes],
            "items": {
                item.ref: (
                    item.state,
                    item.due_at,
                    item.enqueued_at,
                    item.partial,
                    item.outcome,
                    item.resends,
                )
                for item in items.values()
            },
            "history": sorted(
                (items[h.item_id].ref, h.from_state, h.to_state, h.detail, h.at) for h in history
            ),
            "events": sorted(
                (e.dedupe_key, e.event_type, items[e.item_id].ref if e.item_id else None) for e in events
            ),
        }


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_batch_ends_as_recording_its_events_one_by_one_would(kind, make_database, broker):
    events = [parse_bandwidth_event(raw) for raw in BATCH]

    one_by_one = context(make_database(kind))
    for raw in BEFORE:
        record_event(one_by_one, parse_bandwidth_event(raw))
    sent_refs(broker)
    expected = snapshot(one_by_one.db, [record_event(one_by_one, event) for event in events])
    expected_refs = sent_refs(broker)

    batched = context(make_database(kind))
    for raw in BEFORE:
        record_event(batched, parse_bandwidth_event(raw))
    sent_refs(broker)
    batch = record_events(batched, events)
    batch.send(batched)
    actual = snapshot(batched.db, batch.results)

    assert actual == expected
    assert sorted(sent_refs(broker)) == sorted(expected_refs)
    # And what that is, spelled out:
    assert [recorded for recorded, _ in actual["outcomes"]] == [
        "new", "duplicate", "new", "new", "new", "new", "new", "new", "duplicate"
    ]  # fmt: skip
    assert actual["outcomes"][3][1] == actual["outcomes"][4][1] == "bandwidth/recording/r-batch-2"
    assert actual["outcomes"][6][1] is None  # "answer": kept, no item
    states = {ref: state[0] for ref, state in actual["items"].items()}
    assert states == {
        "bandwidth/realtime_transcription/t-batch-1": "pending",
        "bandwidth/realtime_transcription/t-batch-2": "rejected",
        "bandwidth/realtime_transcription/t-batch-3": "pending",
        "bandwidth/recording/r-batch-1": "pending",
        "bandwidth/recording/r-batch-2": "pending",
    }
    assert all(actual["items"][ref][1] == NOW for ref, state in states.items() if state == "pending")
    assert sorted(expected_refs) == sorted(
        [
            "bandwidth/realtime_transcription/t-batch-1",
            "bandwidth/realtime_transcription/t-batch-3",
            "bandwidth/recording/r-batch-1",
            "bandwidth/recording/r-batch-2",
        ]
    )


def test_concurrent_requests_share_one_commit(make_database, broker):
    ctx = context(make_database("postgresql"))
    batches: list[int] = []
    recorder: GroupCommitRecorder[AcceptedEvent, tuple[Recorded, int | None]] = GroupCommitRecorder(
        event_batch_writer(ctx), lambda event: record_event(ctx, event), 500, on_batch=batches.append
    )

    async def send_all() -> list[tuple[Recorded, int | None]]:
        return await asyncio.gather(
            *(recorder.record(parse_bandwidth_event(realtime(n))) for n in range(300))
        )

    outcomes = asyncio.run(send_all())
    assert batches == [300]  # all were waiting before the first batch was taken
    assert {recorded for recorded, _ in outcomes} == {Recorded.NEW}
    assert len({item_id for _, item_id in outcomes}) == 300
    assert count(ctx.db, WebhookEvent) == count(ctx.db, ArchiveItem) == 300
    # Sent after the answers, as one message that a worker relays (ARCHIVER_INTAKE_RELAY_MIN_MESSAGES).
    wait_for(lambda: broker.llen(QUEUE_MAINTENANCE) == 1, 10, "the batch's relay message")
    assert broker.llen(QUEUE_LIVE) == 0
    name, (handed_over,), shown = task_of(broker.rpop(QUEUE_MAINTENANCE))
    assert name == RELAY_TASK_NAME and len(handed_over) == 300
    assert re.fullmatch(r"\[300 step messages: bandwidth/realtime_transcription/t-batch-\d+ … \S+\]", shown)
    # What the relay task does with it: the 300 step messages, each for one of the items.
    assert relay_messages(ctx.dispatcher, handed_over) == 300
    with ctx.db.transaction() as uow:
        refs = {item.ref for item in uow.session.scalars(select(ArchiveItem))}
    assert sorted(sent_refs(broker)) == sorted(refs)


def test_a_small_batch_sends_its_messages_itself(make_database, broker):
    ctx = context(make_database("postgresql"))
    least = ctx.settings.intake_relay_min_messages
    small = [parse_bandwidth_event(realtime(n)) for n in range(least - 1)]
    assert record_events(ctx, small).send(ctx) == "direct"
    # Flower shows the arguments as Celery's saferepr would have printed them.
    headers, args, kwargs = decoded(broker.lindex(QUEUE_LIVE, 0))
    assert headers["argsrepr"] == saferepr(args)
    assert headers["kwargsrepr"] == saferepr(kwargs)
    assert len(sent_refs(broker)) == least - 1 and broker.llen(QUEUE_MAINTENANCE) == 0
    large = [parse_bandwidth_event(realtime(n)) for n in range(100, 100 + least)]
    assert record_events(ctx, large).send(ctx) == "relayed"
    assert broker.llen(QUEUE_LIVE) == 0 and broker.llen(QUEUE_MAINTENANCE) == 1


@pytest.mark.parametrize(
    "entry",
    [
        ["archive", 0, "x", None],  # not an item id
        ["archive", True, "x", None],
        ["archive", "7", "x", None],
        ["delete_everything", 7, "x", None],  # not a step
        ["archive", 7, "x" * 1000, None],  # a ref no item has
        ["archive", 7, "x", "someone.elses.queue"],
        ["archive", 7, "x"],
        "archive",
    ],
)
def test_a_relay_message_is_checked_before_anything_is_sent(entry, broker):
    ctx = context(Database("sqlite://"))
    good = StepMessage(Step.ARCHIVE, 7, "bandwidth/realtime_transcription/t-1").to_args()
    assert StepMessage.from_args(good) == StepMessage(Step.ARCHIVE, 7, "bandwidth/realtime_transcription/t-1")
    with pytest.raises(ValueError):
        relay_messages(ctx.dispatcher, [good, entry])
    assert broker.llen(QUEUE_LIVE) == 0


def test_an_event_the_database_refuses_fails_alone(make_database, broker):
    ctx = context(make_database("postgresql"))
    good = [parse_bandwidth_event(realtime(n)) for n in range(5)]
    refused = AcceptedEvent("bandwidth", "answer", "answer-with-nul", ACCOUNT, "a NUL \x00 in text", None)
    singles: list[AcceptedEvent] = []

    def one(event: AcceptedEvent) -> tuple[Recorded, int | None]:
        singles.append(event)
        return record_event(ctx, event)

    recorder: GroupCommitRecorder[AcceptedEvent, tuple[Recorded, int | None]] = GroupCommitRecorder(
        event_batch_writer(ctx), one, 500
    )

    async def send_all() -> list[Any]:
        return await asyncio.gather(
            *(recorder.record(e) for e in [*good[:2], refused, *good[2:]]), return_exceptions=True
        )

    outcomes = asyncio.run(send_all())
    assert isinstance(outcomes[2], DBAPIError)
    assert [o[0] for i, o in enumerate(outcomes) if i != 2] == [Recorded.NEW] * 5
    assert len(singles) == 6  # the batch failed, then each was recorded alone
    assert count(ctx.db, WebhookEvent) == count(ctx.db, ArchiveItem) == 5
    wait_for(lambda: broker.llen(QUEUE_LIVE) == 5, 10, "5 messages sent")


def test_a_database_that_is_down_fails_the_batch_without_retrying_each_event():
    port = 1  # nothing listens there: the connection is refused
    database = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?connect_timeout=2")
    ctx = context(database)
    singles: list[AcceptedEvent] = []
    recorder: GroupCommitRecorder[AcceptedEvent, tuple[Recorded, int | None]] = GroupCommitRecorder(
        event_batch_writer(ctx),
        singles.append,  # type: ignore[arg-type]
        500,
    )

    async def send_all() -> list[Any]:
        events = [parse_bandwidth_event(realtime(n)) for n in range(20)]
        return await asyncio.gather(*(recorder.record(e) for e in events), return_exceptions=True)

    outcomes = asyncio.run(send_all())
    assert all(isinstance(o, DBAPIError) for o in outcomes)
    assert singles == []
    database.dispose()


def test_a_batch_whose_pooled_connection_was_closed_is_recorded_on_a_new_one(make_database, broker):
    """The intake's engine does not ping connections before use (a round trip per batch): after
    the server closed them (a restart), the batch is retried once on a new connection, not
    refused with a 503."""
    url = make_database("postgresql").url
    ctx = context(Database(url, pre_ping=False))
    recorder: GroupCommitRecorder[AcceptedEvent, tuple[Recorded, int | None]] = GroupCommitRecorder(
        event_batch_writer(ctx), lambda event: record_event(ctx, event), 500
    )

    def record(numbers: range) -> list[Any]:
        async def send_all() -> list[Any]:
            events = [parse_bandwidth_event(realtime(n)) for n in numbers]
            return await asyncio.gather(*(recorder.record(e) for e in events), return_exceptions=True)

        return asyncio.run(send_all())

    def close_server_side() -> int:
        """Terminate the test database's connections, as a restart would; how many there were."""
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (ctx.db.engine.url.database,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    assert [o[0] for o in record(range(10))] == [Recorded.NEW] * 10  # a pooled connection now
    assert close_server_side() == 1
    with pytest.raises(DBAPIError) as lost:  # what the first try meets
        record_events(ctx, [parse_bandwidth_event(realtime(99))])
    assert lost.value.connection_invalidated

    record(range(10, 11))  # the pool holds a connection again
    assert close_server_side() == 1
    outcomes = record(range(20, 30))
    assert [o[0] for o in outcomes if not isinstance(o, BaseException)] == [Recorded.NEW] * 10, outcomes
    assert count(ctx.db, WebhookEvent) == count(ctx.db, ArchiveItem) == 21
    ctx.db.dispose()


def test_the_intake_commits_concurrent_webhooks_together(e2e, db):
    """And a worker relays the messages of the large batches: every item is archived and deleted."""
    stack, simulator, _clock = e2e
    created = simulator.create_realtime(200)

    def webhook(n: int) -> bytes:
        body = {
            "eventType": "realTimeTranscriptionAvailable",
            "eventTime": "2026-11-21T11:59:00.000Z",
            "accountId": created[n]["accountId"],
            "callId": created[n]["callId"],
            "realTimeTranscription": {"id": created[n]["transcriptionId"], "status": "available"},
        }
        return json.dumps(body).encode()

    async def post_all() -> list[int]:
        limits = httpx.Limits(max_connections=50)
        auth = ("intake-user", SECRETS["intake_password"])
        async with httpx.AsyncClient(
            base_url=stack.intake_url, auth=auth, limits=limits, timeout=30
        ) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/webhooks/bandwidth",
                        content=webhook(n),
                        headers={"Content-Type": "application/json"},
                    )
                    for n in range(200)
                )
            )
        return [r.status_code for r in responses]

    def intake_metrics() -> dict[str, float]:
        """The intake's batch and message counters (the stack's intake serves every test)."""
        text = httpx.get(stack.metrics_url).text
        return {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith(("archiver_intake_batch_events_", "archiver_intake_messages_total"))
        }

    before = intake_metrics()
    assert asyncio.run(post_all()) == [204] * 200
    assert count(db, WebhookEvent) == 200
    after = intake_metrics()
    values = {name: value - before.get(name, 0.0) for name, value in after.items()}
    assert values["archiver_intake_batch_events_sum"] == 200
    # Fewer commits than webhooks: some waited for the commit in flight and shared the next one.
    assert values["archiver_intake_batch_events_count"] < 200
    relayed = values.get('archiver_intake_messages_total{path="relayed"}', 0)
    direct = values.get('archiver_intake_messages_total{path="direct"}', 0)
    assert relayed > 0 and relayed + direct == 200, values
    for transcription in created:
        wait_state(db, transcription["transcriptionId"], ItemState.DELETION_REQUESTED, timeout=60)


def test_requests_arriving_as_a_writer_finishes_are_never_left_waiting():
    """Liveness: clients that each send one request at a time always get their answers.

    The intake benchmark once stalled: a writer that had just found nothing pending still counted
    as running until its task's done callback ran a loop step later, and a request reaching the
    recorder in between waited for a writer that never came. That ordering (an HTTP handler step
    queued between the two) is not reproducible from plain asyncio clients, so this test guards
    the general property; the benchmark's open loop is the reproduction."""
    recorder: GroupCommitRecorder[int, int] = GroupCommitRecorder(
        lambda events: (list(events), lambda: None), lambda event: event, 500, concurrency=2
    )

    async def client(start: int) -> list[int]:
        return [await recorder.record(n) for n in range(start, start + 2000)]

    async def clients(how_many: int) -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(client(k * 10_000) for k in range(how_many))), 30)

    for how_many in (1, 2, 6):  # one client alone has nobody to rescue it by arriving later
        results = asyncio.run(clients(how_many))
        assert results == [list(range(k * 10_000, k * 10_000 + 2000)) for k in range(how_many)]
