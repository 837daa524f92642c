"""INSERT … ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike, one row or many."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]


def insert_ignore(session: Session, table: Table, values: dict[str, Any], conflict: list[str]) -> int | None:
    """Insert a row unless one with the same ``conflict`` columns exists; return its new id or ``None``."""
    inserted = insert_many(session, table, [values], conflict, ["id"])
    return int(inserted[0][0]) if inserted else None


def insert_many(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert the rows in one statement, skipping those whose ``conflict`` columns exist already
    (if given); return the ``returning`` columns of each row inserted, in no particular order.
    Every row has the same keys.

    On PostgreSQL the rows travel as one binary array per column (``INSERT … SELECT * FROM
    unnest(…)``): one short statement whatever the row count, which psycopg parses once and caches.
    A multi-row ``VALUES`` statement is new text for every row count, and building and parsing it
    cost the intake more than inserting the rows.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        columns = tuple(rows[0])
        sql = _unnest_insert_sql(table, columns, tuple(conflict or ()), tuple(returning))
        arrays = {f"p{i}": _bound(table, name, rows) for i, name in enumerate(columns)}
        result = session.connection().exec_driver_sql(sql, arrays)
        return [tuple(row) for row in result.all()] if returning else []
    statement = sqlite.insert(table)
    if conflict:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    if not returning:
        session.connection().execute(statement, rows)
        return []
    # SQLAlchemy sends an executemany with RETURNING as multi-row INSERTs ("insertmanyvalues").
    returned = statement.returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in session.connection().execute(returned, rows).all()]


def _bound(table: Table, name: str, rows: list[dict[str, Any]]) -> list[Any]:
    """One column's values as the driver takes them (the column type's bind processing applied)."""
    values = [row[name] for row in rows]
    process = table.c[name].type.bind_processor(_POSTGRES)
    return [process(value) for value in values] if process else values


@lru_cache(maxsize=64)
def _unnest_insert_sql(
    table: Table, columns: tuple[str, ...], conflict: tuple[str, ...], returning: tuple[str, ...]
) -> str:
    arrays = ", ".join(
        f"%(p{i})b::{table.c[name].type.compile(dialect=_POSTGRES)}[]" for i, name in enumerate(columns)
    )
    # Names come from our own table metadata, values travel as parameters.
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql
