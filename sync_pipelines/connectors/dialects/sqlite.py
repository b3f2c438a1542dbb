"""SQLite through the standard library: prepared statements in one transaction, a file lock as lease."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.config.models import decimal_parts
from sync_pipelines.connectors.dialects.arrow_values import python_columns
from sync_pipelines.connectors.dialects.base import LockSession, SqlBackend, lease_name, on_conflict_upsert

_TRANSIENT_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNIQUE_CODES = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})


_REAL_DIGITS = 15
"""Significant decimal digits a REAL keeps exactly (a double's ``DBL_DIG``)."""


class SqliteBackend(SqlBackend):
    """SQLite files (and ``:memory:`` databases, which have no lease: nobody else can reach them)."""

    name = "sqlite"
    backend_names = ("sqlite",)
    connect_args: ClassVar[dict[str, Any]] = {"timeout": 60}
    keys_per_query = 500
    stores_dates_as_text = True
    driver_modules = ("sqlite3",)

    def stores_exactly(self, declared: str, column_type: sa.types.TypeEngine[Any]) -> bool:
        # NUMERIC affinity turns decimal text into a REAL (or an INTEGER) where it can, keeping 15 significant
        # digits: a decimal of at most 15 digits reads back as the same number, a longer one may not.
        parts = decimal_parts(declared)
        if parts is not None and parts[0] > _REAL_DIGITS:
            return False
        return super().stores_exactly(declared, column_type)

    def upsert_statement(self, table: sa.Table, key: Sequence[str], non_key: Sequence[str]) -> Any:
        return on_conflict_upsert(sqlite.insert(table), key, non_key)

    def insert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        """One prepared ``INSERT`` run over plain tuples (dates, datetimes and decimals as SQLAlchemy stores them)."""
        if rows.num_rows:
            conn.exec_driver_sql(_insert_sql(conn, table, rows.column_names), _tuples(rows))

    def upsert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table, key: Sequence[str]) -> None:
        """One prepared ``INSERT ... ON CONFLICT (key) DO UPDATE`` (``DO NOTHING`` without a non-key column).

        Faster here than staging the rows in a TEMP table and upserting them with one ``INSERT ... SELECT``.
        """
        if not rows.num_rows:
            return
        quote = conn.dialect.identifier_preparer.quote
        non_key = [c for c in rows.column_names if c not in key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in non_key)
            if non_key
            else "DO NOTHING"
        )
        statement = f"{_insert_sql(conn, table, rows.column_names)} ON CONFLICT ({', '.join(map(quote, key))}) {action}"
        conn.exec_driver_sql(statement, _tuples(rows))

    def is_transient(self, error: BaseException) -> bool:
        # The primary result code is the low byte of the extended one (SQLITE_BUSY_SNAPSHOT is BUSY too).
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _TRANSIENT_CODES

    def is_unique_violation(self, error: BaseException) -> bool:
        return getattr(error, "sqlite_errorcode", None) in _UNIQUE_CODES

    concurrent_writers = False
    plain_cursor_streams = True  # sqlite3 computes each row as it is fetched

    def lock_session(self, conn: Connection, engine: Engine) -> LockSession | None:
        """Exclusive ``flock`` s on files beside the database, released by the OS when the holder dies; none for
        a ``:memory:`` database (nobody else can reach it)."""
        database = engine.url.database
        if not database or database == ":memory:":
            return None
        return _FileLocks(database)


class _FileLocks:
    """One lock file per name beside the database: ``<database>.<sync>.lock`` for a sync's lease."""

    def __init__(self, database: str):
        self.database = database
        self.open: dict[str, int] = {}

    def _path(self, name: str) -> Path:
        return Path(f"{self.database}.{name.removeprefix(lease_name(''))}.lock")

    def try_lock(self, name: str) -> bool:
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.open[name] = fd
        return True

    def unlock(self, name: str) -> None:
        fd = self.open.pop(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _insert_sql(conn: Connection, table: sa.Table, columns: Sequence[str]) -> str:
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    return f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES ({', '.join('?' * len(columns))})"


def _tuples(rows: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*python_columns(rows, text_dates=True), strict=True))
