"""Engines and transactions.

:class:`UnitOfWork` owns one transaction and the messages to send once it commits, so a task message
never names a row that is not yet visible (warehouse's "enqueue after commit").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

Out = TypeVar("Out")


def make_engine(url: str, *, pre_ping: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``. ``pre_ping`` (PostgreSQL) tests each pooled connection before use, at
    the price of a round trip per checkout; without it, a connection the server closed fails its
    first statement with ``connection_invalidated`` set, and the caller retries on a new one."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets the intake, workers and beat share the file; busy_timeout waits for locks.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=5, max_overflow=5, **kwargs)


def reconnecting(call: Callable[[], Out]) -> Out:
    """``call()``, once more if it failed on a pooled connection the database had closed (it
    restarted, or dropped idle connections): for an engine made without ``pre_ping``, whose second
    try takes a new connection. A transaction that failed so did not commit, or, if only its
    COMMIT's answer was lost, did: the caller's work must be idempotent (the intake's is: a second
    try finds its events duplicates, their items due, so the sweeper sends their messages)."""
    try:
        return call()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning(
            "the database connection was lost (%s); trying again on a new one", type(exc.orig).__name__
        )
        return call()


class UnitOfWork:
    """A session plus callbacks that run only after a successful commit."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # The row is committed with a due time: the sweeper enqueues it later. Nothing lost.
                log.exception("after-commit callback failed; the sweeper will pick the item up")


class Database:
    def __init__(self, url: str, *, pre_ping: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url, pre_ping=pre_ping)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """Commit on success, roll back on error; then run the after-commit callbacks."""
        session = self.sessionmaker()
        uow = UnitOfWork(session)
        try:
            yield uow
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        uow.run_after_commit()

    def dispose(self) -> None:
        self.engine.dispose()
