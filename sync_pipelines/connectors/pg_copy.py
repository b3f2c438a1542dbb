"""Bulk writes to PostgreSQL with ``COPY``, inside the caller's SQLAlchemy transaction.

Row-by-row ``INSERT`` (even pipelined by ``executemany``) costs a round of parsing, binding and
planning per row; ``COPY ... FROM STDIN`` streams the rows in one statement. The helpers here write
through the psycopg connection under the SQLAlchemy connection, so the rows commit or roll back
with everything else the batch writes (target rows, outcomes, baselines and watermark together).
Driver errors are re-raised as SQLAlchemy errors, so :func:`~sync_pipelines.connectors.sql.translate_errors`
classifies them like any other.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.connectors.dialects.arrow_values import hex_text
from sync_pipelines.connectors.pg_binary import binary_copy_data

# Always qualified with pg_temp, so that no statement here can reach a permanent table of the same name.
_ARROW_STAGE = sql.Identifier("pg_temp", "_sync_arrow_stage")
ARROW_KEYS = sql.Identifier("pg_temp", "_sync_arrow_keys")
_CSV_WRITE = pa_csv.WriteOptions(include_header=False)


def identifier(table: sa.Table) -> sql.Composable:
    if table.schema:
        return sql.Identifier(table.schema, table.name)
    return sql.Identifier(table.name)


@contextmanager
def driver_errors(statement: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from None


def raw_connection(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _names(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _csv_of(table: sa.Table, rows: pa.Table) -> memoryview:
    """``rows`` as PostgreSQL CSV (no header, NULL unquoted and empty, empty texts quoted).

    Naive timestamps going to a ``timestamptz`` column are marked UTC (a ``Z`` suffix), so that the
    session's time zone does not shift them.
    """
    for i, name in enumerate(rows.column_names):
        kind = rows.schema.field(i).type
        column_type = table.c[name].type
        if pa.types.is_timestamp(kind) and isinstance(column_type, sa.DateTime) and column_type.timezone:
            rows = rows.set_column(i, name, rows.column(i).cast(pa.timestamp(kind.unit, tz=kind.tz or "UTC")))
        elif pa.types.is_binary(kind):
            rows = rows.set_column(i, name, hex_text(rows.column(i), b"\\x"))  # bytea's hex input form
    buffer = io.BytesIO()
    pa_csv.write_csv(rows, buffer, _CSV_WRITE)
    return buffer.getbuffer()


def _copy_csv(cur: psycopg.Cursor[Any], target: sql.Composable, columns: Sequence[str], data: memoryview) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, _names(columns))
    with cur.copy(statement) as copy:
        copy.write(data)


def _copy_in(cur: psycopg.Cursor[Any], target: sql.Composable, table: sa.Table, rows: pa.Table) -> None:
    """``rows`` into ``target`` (columns typed as in ``table``): binary ``COPY`` where every column is an integer,
    a text or ``bytea`` (the baselines: no hex text to render and parse), else CSV written by Arrow."""
    binary = binary_copy_data(table, rows)
    if binary is None:
        _copy_csv(cur, target, rows.column_names, _csv_of(table, rows))
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(target, _names(rows.column_names))
    with cur.copy(statement) as copy:
        copy.write(binary)


def stage_rows(cur: psycopg.Cursor[Any], stage: sql.Identifier, table: sa.Table, rows: pa.Table) -> None:
    """A temporary ``stage`` with the columns of ``rows`` typed as in ``table``, holding ``rows``."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
    cur.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            stage, _names(rows.column_names), identifier(table)
        )
    )
    _copy_in(cur, stage, table, rows)


def insert_arrow(conn: Connection, table: sa.Table, rows: pa.Table) -> None:
    """Append ``rows`` to ``table`` with one ``COPY ... FROM STDIN``, binary or CSV (see :func:`_copy_in`)."""
    if not rows.num_rows:
        return
    with driver_errors(f"COPY {table.fullname}"), raw_connection(conn).cursor() as cur:
        _copy_in(cur, identifier(table), table, rows)


def upsert_arrow(conn: Connection, table: sa.Table, rows: pa.Table, key: Sequence[str]) -> None:
    """``COPY`` ``rows`` into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``.

    Rows equal to the stored ones are left untouched (no new row version). Keys are unique within ``rows``.
    """
    if not rows.num_rows:
        return
    columns = rows.column_names
    non_key = [c for c in columns if c not in key]
    action: sql.Composable = sql.SQL("DO NOTHING")
    if non_key:
        action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key),
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in non_key),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in non_key),
        )
    with driver_errors(f"upsert into {table.fullname} through COPY"), raw_connection(conn).cursor() as cur:
        stage_rows(cur, _ARROW_STAGE, table, rows)
        cur.execute(
            sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                identifier(table), _names(columns), _names(columns), _ARROW_STAGE, _names(key), action
            )
        )
        cur.execute(sql.SQL("DROP TABLE {}").format(_ARROW_STAGE))


def _key_match(key: Sequence[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("t.{0} = k.{0}").format(sql.Identifier(c)) for c in key)


def delete_arrow(conn: Connection, table: sa.Table, keys: pa.Table) -> int:
    """Delete the rows whose key is in ``keys``: ``COPY`` the keys into a temporary table, ``DELETE ... USING`` it."""
    if not keys.num_rows:
        return 0
    with driver_errors(f"delete from {table.fullname} through COPY"), raw_connection(conn).cursor() as cur:
        stage_rows(cur, ARROW_KEYS, table, keys)
        cur.execute(
            sql.SQL("DELETE FROM {} t USING {} k WHERE {}").format(
                identifier(table), ARROW_KEYS, _key_match(keys.column_names)
            )
        )
        deleted = cur.rowcount
        cur.execute(sql.SQL("DROP TABLE {}").format(ARROW_KEYS))
    return deleted


__all__ = ["binary_copy_data", "delete_arrow", "insert_arrow", "upsert_arrow"]
