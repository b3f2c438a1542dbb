"""PostgreSQL through psycopg 3: COPY, array parameters, advisory locks, SQLSTATE-classified errors."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.connectors import pg_copy, pg_reads
from sync_pipelines.connectors.dialects.base import LockSession, SqlBackend, on_conflict_upsert

# SQLSTATE classes and codes after which the same statement may succeed on a new attempt.
_TRANSIENT_CLASSES = ("08", "53", "57P", "40")
"""Connection exceptions, insufficient resources, shutdowns (57P01-57P03), rollbacks (deadlock, serialization)."""
_TRANSIENT_CODES = frozenset({"55P03"})
"""lock_not_available."""
_UNIQUE_VIOLATION = "23505"


class PostgresBackend(SqlBackend):
    """PostgreSQL: the set-based path (COPY into temporary tables) and one array parameter per key list."""

    name = "postgresql"
    backend_names = ("postgresql",)
    default_dbapi = "psycopg"
    connect_args: ClassVar[dict[str, Any]] = {"connect_timeout": 10}
    keys_per_query = 20_000
    reads_ahead = True
    supports_copy = True
    driver_modules = ("psycopg", "psycopg2")
    max_identifier_length = 63

    def can_copy(self, conn: Connection) -> bool:
        """COPY is used through psycopg 3 only (psycopg2 would need another code path)."""
        return isinstance(conn.connection.driver_connection, psycopg.Connection)

    def key_in(self, column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """``column = ANY(:values)``: one array parameter instead of one parameter per value."""
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))

    def upsert_statement(self, table: sa.Table, key: Sequence[str], non_key: Sequence[str]) -> Any:
        return on_conflict_upsert(postgresql.insert(table), key, non_key)

    def insert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        """``COPY ... FROM STDIN (FORMAT csv)`` written by Arrow (psycopg 3; SQLAlchemy's executemany otherwise)."""
        if self.can_copy(conn):
            pg_copy.insert_arrow(conn, table, rows)
        else:
            super().insert_arrow(conn, table, rows)

    def upsert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table, key: Sequence[str]) -> None:
        """``COPY`` into a ``pg_temp`` table, then one ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``."""
        if self.can_copy(conn):
            pg_copy.upsert_arrow(conn, table, rows, key)
        else:
            super().upsert_arrow(conn, table, rows, key)

    def delete_arrow(self, conn: Connection, table: sa.Table, keys: pa.Table) -> int:
        """``COPY`` the keys into a ``pg_temp`` table, then one ``DELETE ... USING`` it."""
        if self.can_copy(conn):
            return pg_copy.delete_arrow(conn, table, keys)
        return super().delete_arrow(conn, table, keys)

    def read_arrow(
        self, conn: Connection, table: sa.Table, columns: Sequence[str], keys: pa.Table, schema: pa.Schema
    ) -> pa.Table:
        """``COPY (SELECT ... ) TO STDOUT (FORMAT csv)`` of a key range or the staged keys, parsed by Arrow."""
        if self.can_copy(conn):
            return pg_reads.read_arrow(conn, table, columns, keys, schema)
        return super().read_arrow(conn, table, columns, keys, schema)

    def read_arrow_sides(
        self, conn: Connection, sides: Sequence[tuple[sa.Table, Sequence[str], pa.Schema]], keys: pa.Table
    ) -> list[pa.Table]:
        """Every side joined on the key in one ``COPY``: one message per key from the server, not one per table."""
        if self.can_copy(conn):
            return pg_reads.read_arrow_sides(conn, sides, keys)
        return super().read_arrow_sides(conn, sides, keys)

    def scan_arrow(self, conn: Connection, table: sa.Table, columns: Sequence[str], schema: pa.Schema) -> pa.Table:
        """``COPY (SELECT columns FROM table) TO STDOUT (FORMAT csv)``, parsed by Arrow."""
        if self.can_copy(conn):
            return pg_reads.scan_arrow(conn, table, columns, schema)
        return super().scan_arrow(conn, table, columns, schema)

    def ids_inserted(self, conn: Connection, column: sa.Column[Any]) -> None:
        # A serial column's sequence does not see explicit values: set it past the largest one.
        table = column.table
        assert isinstance(table, sa.Table)
        name = conn.dialect.identifier_preparer.format_table(table)
        quoted = conn.dialect.identifier_preparer.quote(column.name)
        conn.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence(:t, :c), coalesce(max({quoted}), 0) + 1, false) FROM {name}"
            ),
            {"t": name, "c": column.name},
        )

    def is_transient(self, error: BaseException) -> bool:
        state = getattr(error, "sqlstate", None)
        if state:
            return state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_CODES
        # No SQLSTATE: the client could not reach the server, or lost it.
        return isinstance(error, psycopg.OperationalError)

    def is_unique_violation(self, error: BaseException) -> bool:
        return getattr(error, "sqlstate", None) == _UNIQUE_VIOLATION

    def lock_session(self, conn: Connection, engine: Engine) -> LockSession:
        """Session advisory locks, released by the server when the holder's connection dies."""
        return _AdvisoryLocks(conn)


class _AdvisoryLocks:
    """``pg_try_advisory_lock`` on a 64-bit hash of each lock's name."""

    def __init__(self, conn: Connection):
        self.conn = conn

    @staticmethod
    def _id(name: str) -> int:
        return int.from_bytes(hashlib.blake2b(name.encode()).digest()[:8], "big", signed=True)

    def try_lock(self, name: str) -> bool:
        got = bool(self.conn.execute(sa.select(sa.func.pg_try_advisory_lock(self._id(name)))).scalar())
        self.conn.commit()
        return got

    def unlock(self, name: str) -> None:
        self.conn.execute(sa.select(sa.func.pg_advisory_unlock(self._id(name))))
        self.conn.commit()
