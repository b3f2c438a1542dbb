"""MariaDB and MySQL through PyMySQL: ``ON DUPLICATE KEY UPDATE``, ``GET_LOCK``, error numbers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Engine

from sync_pipelines.connectors.dialects.base import SqlBackend, lease_name, wait_or_fail

_TRANSIENT_ERRNOS = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1053,  # ER_SERVER_SHUTDOWN
        1205,  # ER_LOCK_WAIT_TIMEOUT
        1213,  # ER_LOCK_DEADLOCK
        1927,  # ER_CONNECTION_KILLED (MariaDB)
        2003,  # CR_CONN_HOST_ERROR: can't connect
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST
        2055,  # CR_SERVER_LOST_EXTENDED
    }
)
_UNIQUE_ERRNOS = frozenset({1062, 1586})
"""ER_DUP_ENTRY and ER_DUP_ENTRY_WITH_KEY_NAME."""


class MySqlBackend(SqlBackend):
    """MariaDB and MySQL."""

    name = "mariadb"
    backend_names = ("mariadb", "mysql")
    default_dbapi = "pymysql"
    connect_args: ClassVar[dict[str, Any]] = {"connect_timeout": 10}
    keys_per_query = 500
    driver_modules = ("pymysql", "MySQLdb", "mariadb")
    max_identifier_length = 64
    # SQLAlchemy reads such a name back from MariaDB/MySQL with the backtick doubled.
    forbidden_identifier_chars: ClassVar[dict[str, str]] = {"`": "a backtick"}

    def dbapi_connect_args(self, url: URL) -> dict[str, Any]:
        """Adds the password as UTF-8 bytes for PyMySQL.

        PyMySQL encodes a ``str`` password as Latin-1: a password beyond Latin-1 raises
        ``UnicodeEncodeError`` before connecting, and one with Latin-1 letters (``ü``) sends other bytes
        than the UTF-8 that MariaDB hashed it from when it was set over a UTF-8 connection, so the
        login is refused. Given bytes, PyMySQL sends them as they are; UTF-8 is what the ``mariadb``
        and ``mysql`` command-line clients send too.
        """
        args = dict(self.connect_args)
        if url.get_driver_name() == "pymysql" and url.password is not None and not url.password.isascii():
            args["password"] = url.password.encode("utf-8")
        return args

    def upsert_statement(self, table: sa.Table, key: Sequence[str], non_key: Sequence[str]) -> Any:
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in (list(non_key) or list(key)[:1])})

    def rename_table(self, conn: Connection, table: sa.Table, new_name: str) -> None:
        # An unqualified new name would move the table into the connection's default database.
        preparer = conn.dialect.identifier_preparer
        renamed = sa.Table(new_name, sa.MetaData(schema=table.schema))
        conn.execute(sa.text(f"RENAME TABLE {preparer.format_table(table)} TO {preparer.format_table(renamed)}"))

    def is_transient(self, error: BaseException) -> bool:
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        return code in _TRANSIENT_ERRNOS

    def is_unique_violation(self, error: BaseException) -> bool:
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        return code in _UNIQUE_ERRNOS

    @contextlib.contextmanager
    def lease(self, engine: Engine, sync: str, deadline: float) -> Iterator[None]:
        """``GET_LOCK``, released by the server when the holder's connection dies."""
        name = lease_name(sync)[:64]
        with engine.connect() as conn:
            while conn.execute(sa.select(sa.func.get_lock(name, 1))).scalar() != 1:
                wait_or_fail(sync, deadline)
            try:
                yield
            finally:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.execute(sa.select(sa.func.release_lock(name)))
