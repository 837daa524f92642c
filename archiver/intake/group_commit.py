"""Group commit: the intake's requests share transactions.

Each request hands its event to :class:`GroupCommitRecorder` and waits for the commit that holds
it, so the event is still durable before its 2xx. Up to ``concurrency`` batches are written at a
time (``ARCHIVER_INTAKE_WRITERS``, one by default); the requests that arrive meanwhile form the next
ones. A quiet intake therefore commits each event alone, with no added delay, and a busy one commits
many per round trip instead of queueing them behind one transaction each. Requests are answered as
soon as their commit is done; the batch's follow-up (sending its messages) runs after that, off
their path, before the writer takes the next batch.

One writer costs the least CPU per event: while it writes, the next batch grows, and each batch
costs a fixed number of statements and at most one relay message. Two writers halve the batches
and, on a CPU-bound intake, each waits for the other's share of the interpreter lock
(``bench/intake_throughput.py``, same machine, same hour: 0.58 and 0.59 of the bare endpoint with
one, 0.45 with two).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool

from archiver.db.session import reconnecting

log = logging.getLogger(__name__)

Event = TypeVar("Event")
Result = TypeVar("Result")
Outcomes = Sequence["Result | BaseException"]
#: Records a batch in one transaction: each event's result, and what to do once they are answered.
BatchWriter = Callable[[Sequence[Event]], tuple[list[Result], Callable[[], None]]]


def _database_unavailable(exc: DBAPIError) -> bool:
    """A lost or refused connection: every event would fail alike. Not so a refused row or a lock
    conflict (SQLSTATE class 40: deadlock, serialization), which recording one by one gets past."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return isinstance(exc, OperationalError) and not sqlstate.startswith("40")


class GroupCommitRecorder(Generic[Event, Result]):
    """Batches events for ``record_batch``; falls back to ``record_one`` per event when a batch
    fails for a reason other than the database being unreachable, so that one event the database
    refuses fails alone.

    Both callables run in the thread pool. An event's exception (a :class:`DBAPIError` when the
    database is down) is raised to its own caller only.
    """

    def __init__(
        self,
        record_batch: BatchWriter[Event, Result],
        record_one: Callable[[Event], Result],
        max_batch: int,
        concurrency: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._record_batch = record_batch
        self._record_one = record_one
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._on_batch = on_batch
        self._pending: list[tuple[Event, asyncio.Future[Result]]] = []
        self._writing = 0  # writers running; counted down by the writer itself, see below
        self._writers: set[asyncio.Task[None]] = set()  # referenced, so not garbage-collected

    async def record(self, event: Event) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._writing < self._concurrency:
            self._writing += 1
            writer = asyncio.create_task(self._write_pending())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await future

    async def _write_pending(self) -> None:
        try:
            await self._write_while_pending()
        finally:
            # In the same step as the loop's last look at ``_pending``: a request arriving after it
            # starts a writer of its own. (The task's done callbacks run a step later; a count
            # kept by them would leave such a request waiting for nobody.)
            self._writing -= 1

    async def _write_while_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if self._on_batch is not None:
                self._on_batch(len(batch))
            futures = [future for _, future in batch]

            def answer(
                outcomes: Outcomes[Result], futures: list[asyncio.Future[Result]] = futures
            ) -> None:  # from the writer thread: settle them on the loop
                loop.call_soon_threadsafe(_settle, futures, outcomes)

            try:
                await run_in_threadpool(self._write, [event for event, _ in batch], answer)
            except BaseException as exc:  # never leave a request waiting
                _settle(futures, [exc] * len(futures))
                if not isinstance(exc, Exception):
                    raise

    def _write(self, events: list[Event], answer: Callable[[Outcomes[Result]], None]) -> None:
        try:
            results, then = reconnecting(partial(self._record_batch, events))
        except DBAPIError as exc:
            if len(events) == 1 or _database_unavailable(exc):
                answer([exc] * len(events))
                return
            log.warning("a batch of %d events failed (%s); recording them one by one", len(events), exc.orig)
            answer([self._record_alone(event) for event in events])
            return
        answer(results)
        then()

    def _record_alone(self, event: Event) -> Result | BaseException:
        try:
            return reconnecting(partial(self._record_one, event))
        except DBAPIError as exc:
            return exc


def _settle(futures: list[asyncio.Future[Result]], outcomes: Outcomes[Result]) -> None:
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():  # its request was cancelled, or it was answered already
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
