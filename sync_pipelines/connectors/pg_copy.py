"""Bulk writes to PostgreSQL with ``COPY``, inside the caller's SQLAlchemy transaction.

Row-by-row ``INSERT`` (even pipelined by ``executemany``) costs a round of parsing, binding and
planning per row; ``COPY ... FROM STDIN`` streams the rows in one statement. The helpers here write
through the psycopg connection under the SQLAlchemy connection, so the rows commit or roll back
with everything else the batch writes (target rows, outcomes, baselines and watermark together).
Driver errors are re-raised as SQLAlchemy errors, so :func:`~sync_pipelines.connectors.sql.translate_errors`
classifies them like any other.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

_STAGE_NUMBERS = itertools.count()


def supports_copy(conn: Connection) -> bool:
    """Whether ``conn`` is a PostgreSQL connection driven by psycopg 3 (the only one COPY is used on)."""
    return conn.dialect.name == "postgresql" and isinstance(conn.connection.driver_connection, psycopg.Connection)


def any_of(column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """``column = ANY(:values)``: one array parameter instead of one parameter per value (PostgreSQL)."""
    return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


def _identifier(table: sa.Table) -> sql.Composable:
    if table.schema:
        return sql.Identifier(table.schema, table.name)
    return sql.Identifier(table.name)


def _naive_timestamp(table: sa.Table, column: str) -> bool:
    column_type = table.c[column].type
    return isinstance(column_type, sa.DateTime) and not column_type.timezone


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from None


def _copy(raw: psycopg.Connection[Any], target: sql.Composable, columns: Sequence[str], rows: Iterable[Any]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    with raw.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def copy_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` (dicts with the same keys) to ``table`` with one ``COPY``."""
    if not rows:
        return
    columns = list(rows[0])
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with _driver_errors(f"COPY {table.fullname}"):
        _copy(raw, _identifier(table), columns, ([row[c] for c in columns] for row in rows))


def copy_upsert(conn: Connection, table: sa.Table, key: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update ``rows`` in ``table``: ``COPY`` into a temporary table, then one set-based upsert.

    Rows sharing a key keep the last one, as a row-by-row upsert would leave it.
    """
    if not rows:
        return
    columns = list(rows[0])
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        latest[tuple(row[k] for k in key)] = row
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    stage = sql.Identifier(f"_sync_stage_{next(_STAGE_NUMBERS)}")
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    # Naive timestamp columns are staged as timestamptz, so that an aware value is converted to the
    # session's time zone on the way in, as a bound parameter would be.
    staged = sql.SQL(", ").join(
        sql.SQL("{0}::timestamptz AS {0}" if _naive_timestamp(table, c) else "{0}").format(sql.Identifier(c))
        for c in columns
    )
    non_key = [c for c in columns if c not in key]
    action: sql.Composable
    if non_key:
        sets = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key)
        action = sql.SQL("DO UPDATE SET {}").format(sets)
    else:
        action = sql.SQL("DO NOTHING")
    with _driver_errors(f"upsert into {table.fullname} through COPY"), raw.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                stage, staged, _identifier(table)
            )
        )
        _copy(raw, stage, columns, ([row[c] for c in columns] for row in latest.values()))
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                _identifier(table), cols, cols, stage, sql.SQL(", ").join(map(sql.Identifier, key)), action
            )
        )
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))


__all__ = ["any_of", "copy_rows", "copy_upsert", "supports_copy"]
