"""MariaDB and MySQL through PyMySQL: ``ON DUPLICATE KEY UPDATE``, ``GET_LOCK``, error numbers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pymysql
import sqlalchemy as sa
from pymysql.constants import CLIENT
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Engine

from sync_pipelines.connectors.dialects.arrow_values import delimited_lines, only_keys, parse_text_csv, python_columns
from sync_pipelines.connectors.dialects.base import LockSession, SqlBackend
from sync_pipelines.connectors.dialects.driver_rows import NOT_STREAMED, fetched

_STAGE = "_sync_arrow_stage"
"""A TEMPORARY table of the connection, beside the target table (it hides a permanent table of that name)."""

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
_PLAIN_TEXT_TYPES = (sa.Integer, sa.Numeric, sa.Date, sa.DateTime, sa.Boolean)
"""Column types whose text (as the server writes it, the same as ``CAST(... AS CHAR)``) is never empty and never
holds a comma, quote or newline."""
_LINES = 50_000
"""Lines of a read taken from the driver's cursor at a time."""
_CONCAT_LIMIT = "@@max_allowed_packet - 1024"
"""``group_concat_max_len`` of a read: its lines in one value, the value and the row's other bytes in one packet."""
_UNIQUE_ERRNOS = frozenset({1062, 1586})
"""ER_DUP_ENTRY and ER_DUP_ENTRY_WITH_KEY_NAME."""


class MySqlBackend(SqlBackend):
    """MariaDB and MySQL."""

    name = "mariadb"
    backend_names = ("mariadb", "mysql")
    default_dbapi = "pymysql"
    connect_args: ClassVar[dict[str, Any]] = {"connect_timeout": 10}
    keys_per_query = 500
    reads_ahead = True
    driver_modules = ("pymysql", "MySQLdb", "mariadb")
    max_identifier_length = 64
    # SQLAlchemy reads such a name back from MariaDB/MySQL with the backtick doubled.
    forbidden_identifier_chars: ClassVar[dict[str, str]] = {"`": "a backtick"}
    # REPEATABLE READ would lock the gaps around keys a batch looks up but the target lacks: two runs
    # inserting new keys would then deadlock each other on every batch.
    row_lock_isolation = "READ COMMITTED"

    def microseconds(self, column_type: sa.types.TypeEngine[Any]) -> bool:
        """``DATETIME`` keeps whole seconds unless declared ``DATETIME(6)``."""
        return getattr(column_type, "fsp", None) == 6

    def stores_exactly(self, declared: str, column_type: sa.types.TypeEngine[Any]) -> bool:
        # BOOLEAN is TINYINT(1) here: it reads back as 0/1, which the classifier takes as the same booleans.
        if declared == "boolean":
            return isinstance(column_type, sa.Boolean | sa.SmallInteger) or type(column_type).__name__ == "TINYINT"
        return super().stores_exactly(declared, column_type)

    def dbapi_connect_args(self, url: URL, *, bulk_load: bool = False) -> dict[str, Any]:
        """Announces ``LOAD DATA LOCAL INFILE`` (a target's engine) and adds the password as UTF-8 bytes for PyMySQL.

        With ``LOCAL INFILE`` the server names the file the client sends, so a source's engine never
        announces it, and a target's connection sends a file only while :func:`_load_data` runs its own
        statement (:meth:`configure_engine`).

        PyMySQL encodes a ``str`` password as Latin-1: a password beyond Latin-1 raises
        ``UnicodeEncodeError`` before connecting, and one with Latin-1 letters (``ü``) sends other bytes
        than the UTF-8 that MariaDB hashed it from when it was set over a UTF-8 connection, so the
        login is refused. Given bytes, PyMySQL sends them as they are; UTF-8 is what the ``mariadb``
        and ``mysql`` command-line clients send too.
        """
        args = dict(self.connect_args)
        if bulk_load and url.get_driver_name() == "pymysql":
            args["local_infile"] = True  # LOAD DATA LOCAL INFILE, the bulk path of insert_arrow/upsert_arrow
        if url.get_driver_name() == "pymysql" and url.password is not None and not url.password.isascii():
            args["password"] = url.password.encode("utf-8")
        return args

    def upsert_statement(self, table: sa.Table, key: Sequence[str], non_key: Sequence[str]) -> Any:
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in (list(non_key) or list(key)[:1])})

    def configure_engine(self, engine: Engine, *, bulk_load: bool = False) -> None:
        """A target's PyMySQL connections announce ``LOCAL INFILE`` but refuse the server's file requests,
        except while :func:`_load_data` sends its own file: a request for any other file (a hostile or
        confused server's) is refused by PyMySQL before a byte is read."""
        if bulk_load and engine.url.get_driver_name() == "pymysql":
            sa.event.listen(engine, "connect", _refuse_file_requests)

    def can_load_local(self, conn: Connection) -> bool:
        """Whether this connection announced ``LOCAL INFILE`` to the server (a target's PyMySQL connection)."""
        raw = conn.connection.driver_connection
        return isinstance(raw, pymysql.connections.Connection) and bool(raw.client_flag & CLIENT.LOCAL_FILES)

    def insert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        """``LOAD DATA LOCAL INFILE`` from a temporary file written by Arrow; without ``local_infile``,
        PyMySQL's multi-row ``INSERT ... VALUES``."""
        if not rows.num_rows:
            return
        if self.can_load_local(conn):
            _load_data(conn, table, rows)
        else:
            conn.exec_driver_sql(_insert_sql(conn, table, rows.column_names), _tuples(rows))

    def upsert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table, key: Sequence[str]) -> None:
        """``LOAD DATA`` into a TEMPORARY table, then one ``INSERT ... SELECT ... ON DUPLICATE KEY UPDATE``;
        without ``local_infile``, PyMySQL's multi-row ``INSERT ... VALUES ... ON DUPLICATE KEY UPDATE``."""
        if not rows.num_rows:
            return
        preparer = conn.dialect.identifier_preparer
        columns = rows.column_names
        names = ", ".join(map(preparer.quote, columns))
        updated = [c for c in columns if c not in key] or list(key)[:1]
        update = "ON DUPLICATE KEY UPDATE " + ", ".join(
            f"{preparer.quote(c)} = VALUES({preparer.quote(c)})" for c in updated
        )
        if not self.can_load_local(conn):
            conn.exec_driver_sql(f"{_insert_sql(conn, table, columns)} {update}", _tuples(rows))
            return
        stage = preparer.format_table(sa.Table(_STAGE, sa.MetaData(schema=table.schema)))
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {stage} AS SELECT {names} FROM {preparer.format_table(table)} LIMIT 0"
        )
        try:
            _load_data(conn, sa.Table(_STAGE, sa.MetaData(schema=table.schema)), rows)
            conn.exec_driver_sql(
                f"INSERT INTO {preparer.format_table(table)} ({names}) SELECT {names} FROM {stage} {update}"
            )
        finally:
            conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {stage}")

    def read_arrow(
        self, conn: Connection, table: sa.Table, columns: Sequence[str], keys: pa.Table, schema: pa.Schema
    ) -> pa.Table:
        """The rows of ``keys`` (see ``SqlBackend.read_arrow``), rendered by the server as CSV lines, all the
        lines of a query as one ``GROUP_CONCAT`` value.

        PyMySQL decodes every value of a result in Python, and every row of it: one text value per query
        (a line per row, built from quoted fields, an unquoted empty field for NULL) costs a fraction of
        that, and Arrow parses the lines. A number, date or time goes as the server writes it, uncast
        (a cast costs the server a third of a line's time); binary values travel as hex. The value is cut at
        ``group_concat_max_len``, set to just under ``max_allowed_packet``: a query whose lines reach it reads
        them again one row each.
        """
        if not keys.num_rows:
            return pa.table({c: pa.array([], schema.field(c).type) for c in columns})
        alias = table.alias("t")
        fields = []
        for name in columns:
            # Quoted once here; the statement's own % escaping follows (the preparer's would be a second one).
            column = conn.dialect.identifier_preparer.quote(name).replace("%%", "%")
            if isinstance(table.c[name].type, _PLAIN_TEXT_TYPES):
                # A number, date or time is never empty and holds no comma, quote or newline: unquoted, an empty
                # field is NULL (half the server's work of building a line, for such columns).
                fields.append(f"IFNULL(t.{column}, '')")
                continue
            text = f"HEX(t.{column})" if pa.types.is_binary(schema.field(name).type) else f"CAST(t.{column} AS CHAR)"
            fields.append(f"IF(t.{column} IS NULL, '', CONCAT('\"', REPLACE({text}, '\"', '\"\"'), '\"'))")
        line: sa.ColumnElement[str] = sa.literal_column(f"CONCAT_WS(',', {', '.join(fields)})")
        # A newline of its own between the quotes: a backslash escape means nothing under NO_BACKSLASH_ESCAPES.
        lines: sa.ColumnElement[str] = sa.literal_column(f"GROUP_CONCAT({line} SEPARATOR '\n')")
        limit: sa.ColumnElement[int] = sa.literal_column("@@group_concat_max_len")
        conditions, span = self.read_conditions(alias, columns, keys)
        conn.exec_driver_sql(f"SET SESSION group_concat_max_len = {_CONCAT_LIMIT}")
        parts: list[str] = []
        for condition in conditions:
            most, text = conn.execute(
                sa.select(limit, lines).select_from(alias).where(condition), execution_options=NOT_STREAMED
            ).one()
            if text is None:
                continue  # no row
            if len(text.encode()) < most - 4:
                parts.append(text)
                continue
            # Cut at the limit (where a character would have crossed it, up to 3 bytes short of it): this query's
            # lines again, one row each.
            for part in fetched(conn, sa.select(line).select_from(alias).where(condition), _LINES, _first_values):
                parts += part
        floats = {c for c in columns if isinstance(table.c[c].type, sa.Float)}
        canonical = [c for c in columns if _writes_canonical(table.c[c].type, schema.field(c).type)]
        read = parse_text_csv("\n".join(parts).encode(), columns, schema, float_columns=floats, canonical=canonical)
        return only_keys(read, keys, span) if span is not None else read

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

    def lock_session(self, conn: Connection, engine: Engine) -> LockSession:
        """``GET_LOCK`` named locks, released by the server when the holder's connection dies."""
        return _NamedLocks(conn)


class _NamedLocks:
    """``GET_LOCK(name, 0)``; a name past MariaDB's 64 characters is shortened with a hash of it."""

    def __init__(self, conn: Connection):
        self.conn = conn

    @staticmethod
    def _name(name: str) -> str:
        return name if len(name) <= 64 else name[:40] + hashlib.blake2b(name.encode(), digest_size=12).hexdigest()

    def try_lock(self, name: str) -> bool:
        return self.conn.execute(sa.select(sa.func.get_lock(self._name(name), 0))).scalar() == 1

    def unlock(self, name: str) -> None:
        self.conn.execute(sa.select(sa.func.release_lock(self._name(name))))


def _writes_canonical(stored: sa.types.TypeEngine[Any], wanted: pa.DataType) -> bool:
    """Whether the server writes a value of a column of type ``stored`` as the canonical text of a ``wanted``
    value: an integer column for an integer, a (fixed-point) decimal column for a decimal, a date column for
    a date, a datetime or timestamp column for a timestamp."""
    if isinstance(stored, sa.Float):
        return False
    return (
        (isinstance(stored, sa.Integer) and pa.types.is_integer(wanted))
        or (isinstance(stored, sa.Numeric) and pa.types.is_decimal(wanted))
        or (isinstance(stored, sa.DateTime) and pa.types.is_timestamp(wanted))
        or (isinstance(stored, sa.Date) and pa.types.is_date32(wanted))
    )


def _first_values(rows: Sequence[Any]) -> list[Any]:
    return [row[0] for row in rows]


def _insert_sql(conn: Connection, table: sa.Table, columns: Sequence[str]) -> str:
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    # SQLAlchemy's preparer doubles a % in a name already, for the driver's "format" paramstyle.
    return f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"


def _tuples(rows: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*python_columns(rows), strict=True))


def _refuse_file_requests(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection._local_infile = False  # PyMySQL reads it when the server asks for a file


def _load_data(conn: Connection, table: sa.Table, rows: pa.Table) -> None:
    """Append ``rows`` to ``table`` with ``LOAD DATA LOCAL INFILE``; any warning fails the statement.

    With ``LOCAL`` the server cannot stop the client's transfer, so it turns errors (a duplicate key,
    a value that does not fit its column) into warnings and skips or truncates the row: they are
    raised here as the driver error of the first warning, which the caller's transaction rolls back.
    """
    preparer = conn.dialect.identifier_preparer
    # Binary values travel as their own bytes, so the file is read as binary; text then goes through a user
    # variable CONVERTed from UTF-8 (the file's encoding) into its column's character set.
    binary = any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in rows.schema)
    texts = [
        i
        for i, f in enumerate(rows.schema)
        if binary and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    names = ", ".join(f"@t{i}" if i in texts else preparer.quote(c) for i, c in enumerate(rows.column_names))
    converted = ", ".join(f"{preparer.quote(rows.column_names[i])} = CONVERT(@t{i} USING utf8mb4)" for i in texts)
    # The default FIELDS and LINES options: tab-separated, backslash escapes, \N for NULL, newline-ended.
    # PyMySQL formats the path in with %: the preparer has doubled any % in a name.
    charset = "binary" if binary else "utf8mb4"
    statement = f"LOAD DATA LOCAL INFILE %s INTO TABLE {preparer.format_table(table)} CHARACTER SET {charset} ({names})"
    if converted:
        statement += f" SET {converted}"
    lines = delimited_lines(rows)
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    # The file is the array's value bytes between its first and last offsets (no Python object per row).
    _, offset_buffer, data = lines.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    start, end = int(offsets[0]), int(offsets[-1])
    raw = conn.connection.driver_connection
    assert isinstance(raw, pymysql.connections.Connection)
    fd, path = tempfile.mkstemp(prefix="sync_load_", suffix=".tsv")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(memoryview(data)[start:end] if data is not None else b"")
        with _driver_errors(statement), raw.cursor() as cur:
            raw._local_infile = True  # this statement's file only (see MySqlBackend.configure_engine)
            try:
                cur.execute(statement, (path,))
            finally:
                raw._local_infile = False
            loaded, warnings = cur.rowcount, cur.warning_count
            if warnings or loaded != rows.num_rows:
                # Notes (a decimal rounded to the column's scale) are what a plain INSERT accepts too.
                cur.execute("SHOW WARNINGS")
                serious = [w for w in cur.fetchall() if str(w[0]).lower() != "note"]
                if serious or loaded != rows.num_rows:
                    first = serious[0] if serious else None
                    code, message = (int(first[1]), str(first[2])) if first else (1062, "rows were skipped")
                    error_class = pymysql.err.IntegrityError if code in _UNIQUE_ERRNOS else pymysql.err.DataError
                    raise error_class(code, f"LOAD DATA into {table.fullname}: {message} ({warnings} warning(s))")
    finally:
        os.unlink(path)


@contextlib.contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    try:
        yield
    except pymysql.err.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, pymysql.err.Error) from None
