"""INSERT … ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike, one row or many."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Table
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
        return insert_many_then(session, table, rows, conflict, returning, {}, {})
    statement = sqlite.insert(table)
    if conflict:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    if not returning:
        session.connection().execute(statement, rows)
        return []
    # SQLAlchemy sends an executemany with RETURNING as multi-row INSERTs ("insertmanyvalues").
    returned = statement.returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in session.connection().execute(returned, rows).all()]


def insert_many_then(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str] | None,
    returning: Sequence[str],
    then: dict[str, str],
    params: dict[str, Any],
) -> list[tuple[Any, ...]]:
    """PostgreSQL only: :func:`insert_many`, plus statements that act on the rows it inserted, in
    the same statement and so the same round trip. Each of ``then`` (name: SQL) is a data-modifying
    ``WITH`` query that reads the inserted rows, all their columns, as ``inserted``; ``params``
    are its parameters (``%(name)s`` or ``%(name)b``; the names ``p0``, ``p1``… are taken).
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    conflicting = tuple(conflict or ())
    values = [[row[name] for row in rows] for name in columns]
    # A value every row shares (a batch's timestamps, counters, account…) travels once.
    shared = tuple(_all_equal(column) for column in values)
    if all(shared):
        shared = (False, *shared[1:])  # one array gives the row count
    arrays = {
        f"p{i}": bound_value(table.c[name], column[0]) if one else _bound(table.c[name], column)
        for i, (name, column, one) in enumerate(zip(columns, values, shared, strict=True))
    }
    if not then:
        sql = _unnest_insert_sql(table, columns, shared, conflicting, tuple(returning))
    else:
        followups = "".join(f", {name} AS ({body})" for name, body in then.items())
        insert = _unnest_insert_sql(table, columns, shared, conflicting, ("*",))
        # Names from our own metadata and SQL of our own; values travel as parameters.
        sql = f"WITH inserted AS ({insert}){followups} SELECT {', '.join(returning) or 'NULL'} FROM inserted"  # noqa: S608
        arrays.update(params)
    result = session.connection().exec_driver_sql(sql, arrays)
    return [tuple(row) for row in result.all()] if returning else []


def unnest_sql(columns: Mapping[str, ColumnElement[Any]], prefix: str) -> str:
    """``unnest(…) AS prefix(name, …)``: one typed binary array parameter per column (``prefix0``,
    ``prefix1``…), each of its column's type; :func:`unnest_params` gives their values."""
    types = [column.type.compile(dialect=_POSTGRES) for column in columns.values()]
    arrays = ", ".join(f"%({prefix}{i})b::{type_}[]" for i, type_ in enumerate(types))
    return f"unnest({arrays}) AS {prefix}({', '.join(columns)})"


def unnest_params(
    columns: Mapping[str, ColumnElement[Any]], prefix: str, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The parameters of :func:`unnest_sql` for the same columns: the rows' values by name."""
    return {
        f"{prefix}{i}": _bound(column, [row[name] for row in rows])
        for i, (name, column) in enumerate(columns.items())
    }


def bound_value(column: ColumnElement[Any], value: Any) -> Any:
    """One value as the driver takes it for ``column``."""
    return _bound(column, [value])[0]


def _bound(column: ColumnElement[Any], values: list[Any]) -> list[Any]:
    """One column's values as the driver takes them (the column type's bind processing applied)."""
    process = column.type.bind_processor(_POSTGRES)
    return [process(value) for value in values] if process else values


def _all_equal(values: list[Any]) -> bool:
    first = values[0]
    return all(value == first and type(value) is type(first) for value in values)


@lru_cache(maxsize=256)
def _unnest_insert_sql(
    table: Table,
    columns: tuple[str, ...],
    shared: tuple[bool, ...],
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> str:
    """``INSERT … SELECT`` from one array per column, except that a ``shared`` column's parameter is
    the one value all rows have: psycopg dumps arrays element by element in Python, and that was
    half the intake's cost of recording a batch."""
    types = [table.c[name].type.compile(dialect=_POSTGRES) for name in columns]
    selected = [
        f"%(p{i})b::{types[i]}" if one else f"u.{name}"
        for i, (name, one) in enumerate(zip(columns, shared, strict=True))
    ]
    arrays = ", ".join(f"%(p{i})b::{types[i]}[]" for i, one in enumerate(shared) if not one)
    names = ", ".join(name for name, one in zip(columns, shared, strict=True) if not one)
    # Names come from our own table metadata, values travel as parameters.
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)})"  # noqa: S608
        f" SELECT {', '.join(selected)} FROM unnest({arrays}) AS u({names})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql
