"""A database whose every transaction is rolled back when the test ends (PyPI's warehouse tests do
the same): for integration tests whose data no other process must see. One migrated database
serves them all; each test runs in an outer transaction on one connection, and what the code
commits are savepoints inside it."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import sessionmaker

from archiver.db.session import Database

__all__ = ["RolledBackDatabase"]


class RolledBackDatabase(Database):
    """The code's :class:`Database`, its sessions bound to ``connection`` (a transaction the test
    rolls back): ``commit`` releases a savepoint, nothing reaches the database for good."""

    def __init__(self, url: str, connection: Connection) -> None:
        self.url = url
        self.engine = connection.engine
        self.sessionmaker = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    def dispose(self) -> None:
        """The connection belongs to the fixture."""
