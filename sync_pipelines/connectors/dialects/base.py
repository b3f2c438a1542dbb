"""What every SQL backend declares: the capabilities callers ask about, and the behaviour they delegate.

Callers never test a dialect's name. They ask the backend of a connection or an engine ("can you
COPY?", "how many keys fit in one query?", "is this driver error worth a retry?") and use what it
answers, the way SQLAlchemy's dialects declare ``supports_*`` flags and dlt's destinations declare
their capabilities. One subclass per database lives beside this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from sync_pipelines.config.models import decimal_parts
from sync_pipelines.connectors.dialects.arrow_values import dense_range, exact_array, only_keys, python_columns
from sync_pipelines.connectors.dialects.driver_rows import fetched, transposed
from sync_pipelines.errors import ConcurrentRunError

LEASE_POLL_S = 0.25
_SCAN_ROWS = 50_000
"""Rows fetched at a time by :meth:`SqlBackend.read_arrow` and :meth:`SqlBackend.scan_arrow`."""


class SqlBackend:
    """The defaults of a SQL database reached through SQLAlchemy; subclasses override what differs."""

    name: ClassVar[str] = "default"
    """SQLAlchemy backend names served (``engine.url.get_backend_name()``), the first being the main one."""
    backend_names: ClassVar[tuple[str, ...]] = ()
    default_dbapi: ClassVar[str | None] = None
    """DBAPI driver used when a URL names the database alone (``postgresql://`` means ``postgresql+psycopg://``)."""
    stores_dates_as_text: ClassVar[bool] = False
    """Whether dates, timestamps and decimals come back as the text they were stored as (SQLite)."""
    connect_args: ClassVar[dict[str, Any]] = {}
    """Arguments passed to every new DBAPI connection (time-outs)."""
    keys_per_query: ClassVar[int] = 500
    """How many key values one ``WHERE key IN (...)`` query may carry."""
    supports_copy: ClassVar[bool] = False
    """Whether rows can be streamed in with a bulk protocol (``COPY``) inside a transaction."""
    plain_cursor_streams: ClassVar[bool] = False
    """Whether the driver's plain cursor steps through a result as rows are fetched (no server-side cursor
    needed), so a large read may fetch from it directly."""
    reads_ahead: ClassVar[bool] = False
    """Whether a full sync reads a batch's target rows and baselines on a second connection while the batch
    before it is written: worth it where the server does the read's work (the client classifies meanwhile),
    not for a database inside the process, whose reads would take the client's own time."""
    driver_modules: ClassVar[tuple[str, ...]] = ()
    """Top-level modules of the DBAPI drivers whose exceptions :meth:`is_transient` understands."""
    max_identifier_length: ClassVar[int | None] = None
    forbidden_identifier_chars: ClassVar[dict[str, str]] = {}
    """Characters a table or column name may not hold on this database (beyond what quoting handles), by name."""

    def dbapi_connect_args(self, url: URL, *, bulk_load: bool = False) -> dict[str, Any]:
        """Arguments for every new DBAPI connection to ``url``: :attr:`connect_args` and what the driver needs.

        ``bulk_load`` is true for the engines of targets, whose plans are written through the bulk path;
        a capability that lets the server ask the client for something (MariaDB's ``LOCAL INFILE``) is
        asked for there only, never on a source's engine.
        """
        return dict(self.connect_args)

    def configure_engine(self, engine: Engine, *, bulk_load: bool = False) -> None:
        """Set up a new engine (connection events); nothing by default."""

    # -- capabilities that depend on the live connection

    def can_copy(self, conn: Connection) -> bool:
        """Whether :attr:`supports_copy` holds for this connection's driver."""
        return False

    def key_in(self, column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """``column IN (values)``, in the cheapest form this database offers."""
        return column.in_(list(values))

    # -- writing

    def upsert_statement(self, table: sa.Table, key: Sequence[str], non_key: Sequence[str]) -> Any:
        """An ``INSERT`` that updates ``non_key`` columns of rows whose ``key`` already exists."""
        raise NotImplementedError(f"no upsert for the {self.name} backend")

    def rename_table(self, conn: Connection, table: sa.Table, new_name: str) -> None:
        """Rename ``table`` to ``new_name`` in its own schema (the new name is given unqualified)."""
        preparer = conn.dialect.identifier_preparer
        conn.execute(sa.text(f"ALTER TABLE {preparer.format_table(table)} RENAME TO {preparer.quote(new_name)}"))

    def ids_inserted(self, conn: Connection, column: sa.Column[Any]) -> None:
        """Rows were inserted with explicit values in autoincrement ``column``: move its counter past them.

        Nothing to do where the counter follows the largest value by itself (SQLite, InnoDB).
        """

    # -- what a column stores

    def stores_exactly(self, declared: str, column_type: sa.types.TypeEngine[Any]) -> bool:
        """Whether a column of ``column_type`` stores every value of declared type ``declared`` as sent, so that
        a row just written reads back equal (else the load reads written rows back for their baselines)."""
        if declared == "integer":
            return isinstance(column_type, sa.Integer)
        if declared == "string":
            # Plain text only: an enum, char(n) padding or a non-deterministic collation changes what is stored.
            return isinstance(column_type, sa.String) and not isinstance(column_type, sa.Enum | sa.CHAR | sa.NCHAR)
        if declared == "boolean":
            return isinstance(column_type, sa.Boolean)
        if declared == "float":
            return isinstance(column_type, sa.Double)
        if declared == "date":
            return isinstance(column_type, sa.Date) and not isinstance(column_type, sa.DateTime)
        if declared == "datetime":
            return isinstance(column_type, sa.DateTime) and not column_type.timezone and self.microseconds(column_type)
        parts = decimal_parts(declared)
        if parts is not None:
            return (
                isinstance(column_type, sa.Numeric)
                and not isinstance(column_type, sa.Float)
                and column_type.scale == parts[1]
            )
        return False

    def microseconds(self, column_type: sa.types.TypeEngine[Any]) -> bool:
        """Whether a timestamp column keeps microseconds."""
        return getattr(column_type, "precision", None) in (None, 6)

    # -- bulk reads and writes of Arrow batches (in the caller's transaction)

    def insert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        """Append every row of ``rows`` (its columns a subset of ``table``'s) to ``table``; no conflict handling."""
        if rows.num_rows:
            conn.execute(sa.insert(table), param_dicts(rows))

    def upsert_arrow(self, conn: Connection, table: sa.Table, rows: pa.Table, key: Sequence[str]) -> None:
        """Insert the rows whose ``key`` is new and update the other columns of ``rows`` where it exists.

        Without a non-key column, rows whose key exists are left alone. Keys are unique within ``rows``.
        """
        if not rows.num_rows:
            return
        non_key = [c for c in rows.column_names if c not in key]
        conn.execute(self.upsert_statement(table, key, non_key), param_dicts(rows))

    def delete_arrow(self, conn: Connection, table: sa.Table, keys: pa.Table) -> int:
        """Delete the rows whose key (the columns of ``keys``) is in ``keys``; returns how many were deleted."""
        deleted = 0
        for condition in self.key_conditions(table, keys):
            deleted += conn.execute(sa.delete(table).where(condition)).rowcount
        return deleted

    def read_arrow(
        self, conn: Connection, table: sa.Table, columns: Sequence[str], keys: pa.Table, schema: pa.Schema
    ) -> pa.Table:
        """The ``columns`` of the rows whose key (the columns of ``keys``) is in ``keys``, in any order.

        Each column comes back of its type in ``schema`` when every stored value converts to it exactly
        (a timestamp with time zone as naive UTC, 0/1 as booleans, a decimal rescaled without loss), and
        as ``pa.string()`` holding each value's text otherwise, for the caller to normalise.
        """
        # Driver values as they are: SQLAlchemy's result processors would round decimals or reject odd texts.
        selected = [sa.type_coerce(table.c[c], sa.types.NullType()).label(c) for c in columns]
        found: list[list[Any]] = [[] for _ in columns]
        conditions, span = self.read_conditions(table, columns, keys)
        for condition in conditions:
            for batch in fetched(conn, sa.select(*selected).where(condition), _SCAN_ROWS, transposed):
                for values, column in zip(found, batch, strict=True):
                    values.extend(column)
        read = arrow_table(table, columns, found, schema)
        return only_keys(read, keys, span) if span is not None else read

    def read_arrow_sides(
        self, conn: Connection, sides: Sequence[tuple[sa.Table, Sequence[str], pa.Schema]], keys: pa.Table
    ) -> list[pa.Table]:
        """:meth:`read_arrow` of each table of ``sides`` (tables keyed by the same columns, those of ``keys``):
        ``(table, columns, schema)`` each. A backend that can join them reads all in one statement."""
        return [self.read_arrow(conn, table, columns, keys, schema) for table, columns, schema in sides]

    def read_conditions(
        self, table: sa.FromClause, columns: Sequence[str], keys: pa.Table
    ) -> tuple[Iterable[sa.ColumnElement[bool]], tuple[int, int] | None]:
        """The conditions a bulk read of ``keys`` runs, and the key range when one range condition serves
        (a full read's batch: the rows of the range that were not asked for are left out after the read)."""
        span = dense_range(keys) if keys.column_names[0] in columns else None
        if span is not None:
            return [table.c[keys.column_names[0]].between(*span)], span
        return self.key_conditions(table, keys), None

    def scan_arrow(self, conn: Connection, table: sa.Table, columns: Sequence[str], schema: pa.Schema) -> pa.Table:
        """The ``columns`` of every row of ``table``, in any order, typed as :meth:`read_arrow` types them.

        One ``SELECT`` streamed in large partitions (from the driver's own cursor where it streams them): meant
        for narrow reads (a table's keys).
        """
        selected = [sa.type_coerce(table.c[c], sa.types.NullType()).label(c) for c in columns]
        found: list[list[Any]] = [[] for _ in columns]
        batches = fetched(conn, sa.select(*selected), _SCAN_ROWS, transposed, from_cursor=self.plain_cursor_streams)
        for batch in batches:
            for values, column in zip(found, batch, strict=True):
                values.extend(column)
        return arrow_table(table, columns, found, schema)

    def key_conditions(self, table: sa.FromClause, keys: pa.Table) -> Iterator[sa.ColumnElement[bool]]:
        """``key IN (...)`` conditions covering ``keys``, at most :attr:`keys_per_query` values each."""
        names = keys.column_names
        values = python_columns(keys)
        if len(names) == 1:
            column = table.c[names[0]]
            for start in range(0, keys.num_rows, self.keys_per_query):
                yield self.key_in(column, values[0][start : start + self.keys_per_query])
            return
        tuples = list(zip(*values, strict=True))
        step = max(1, self.keys_per_query // len(names))
        key = sa.tuple_(*(table.c[n] for n in names))
        for start in range(0, len(tuples), step):
            yield key.in_(tuples[start : start + step])

    # -- identifiers

    def identifier_problem(self, name: str) -> str | None:
        """Why ``name`` cannot name a table or column on this database, or None when it can."""
        bad = [label for char, label in self.forbidden_identifier_chars.items() if char in name]
        if bad:
            return f"contains {' and '.join(bad)}, which {self.name} cannot read back from its catalog"
        if self.max_identifier_length is not None and len(name.encode()) > self.max_identifier_length:
            return f"is longer than {self.name}'s limit of {self.max_identifier_length} bytes"
        return None

    # -- errors

    def is_transient(self, error: BaseException) -> bool:
        """Whether a DBAPI error (the driver's own exception) is worth retrying: lost connection, lock, deadlock."""
        return False

    def is_unique_violation(self, error: BaseException) -> bool:
        """Whether a DBAPI error is a unique or primary-key violation (a row another writer inserted first),
        as opposed to the other integrity errors (a check, a foreign key, a trigger refusing the row)."""
        return False

    # -- lease

    concurrent_writers: ClassVar[bool] = True
    """Whether several runs may write the target at once (a shared lease); False: one writer at a time."""
    row_lock_isolation: ClassVar[str | None] = None
    """The isolation level of a transaction that locks rows by key (``SELECT ... FOR UPDATE``) before reading
    them, when the connection's default would also lock the gaps between keys; None: the default."""

    def lock_session(self, conn: Connection, engine: Engine) -> LockSession | None:
        """The named locks of this database on ``conn``, held until released or the session ends; None: none."""
        return None

    @contextlib.contextmanager
    def lease(
        self,
        engine: Engine,
        sync: str,
        deadline: float,
        *,
        slots: int = 0,
        on_wait: Callable[[str], None] | None = None,
        behind_shared: float | None = None,
    ) -> Iterator[None]:
        """Hold the per-sync lease until the block ends; wait until ``deadline`` (monotonic) for it, or until
        ``behind_shared`` when an exclusive holder waits only for shared holders to leave.

        ``slots=0`` takes it exclusively (no other run of the sync writes meanwhile). ``slots=n`` shares it
        with the sync's other shared holders, at most ``n`` at once, and with no exclusive holder; a database
        without :attr:`concurrent_writers` takes it exclusively instead. ``on_wait`` is told once, in a
        sentence, why the run waits.

        Raises:
            ConcurrentRunError: another run still holds it at ``deadline``.
        """
        with engine.connect() as conn:
            session = self.lock_session(conn, engine)
            if session is None:
                yield
                return
            shared = min(slots, MAX_SLOTS) if self.concurrent_writers else 0
            alone = (
                f"{self.name} allows one writer at a time, so the sync's partition runs load one after the other"
                if slots and not shared
                else None
            )
            with held_lease(
                session,
                sync,
                deadline,
                shared,
                on_wait,
                slotted=self.concurrent_writers,
                alone=alone,
                behind_shared=behind_shared,
            ):
                yield


MAX_SLOTS = 16
"""Shared slots of a sync's lease (``partitions.max_parallel`` is at most this)."""


class LockSession(Protocol):
    """Named, session-scoped locks of one database connection (released by the server if the session dies)."""

    def try_lock(self, name: str) -> bool:
        """Take lock ``name`` if free, without waiting."""
        ...

    def unlock(self, name: str) -> None:
        """Release lock ``name``."""
        ...


def slot_name(sync: str, slot: int) -> str:
    """The lock of one shared slot of a sync's lease."""
    return f"{lease_name(sync)}#{slot}"


@contextlib.contextmanager
def held_lease(
    session: LockSession,
    sync: str,
    deadline: float,
    slots: int,
    on_wait: Callable[[str], None] | None,
    *,
    slotted: bool = True,
    alone: str | None = None,
    behind_shared: float | None = None,
) -> Iterator[None]:
    """A readers-writer lease over named locks: a gate and :data:`MAX_SLOTS` slots.

    A shared holder passes the gate, takes a free slot among the first ``slots`` and leaves the gate. An
    exclusive holder (``slots=0``) keeps the gate, which stops new shared holders, and takes every slot as
    the shared holders leave (none when not ``slotted``: the database has one writer at a time). The gate
    is the lease's name of earlier releases, so an older process holding it still excludes this one.
    ``alone`` says why a run that asked to share the lease waits for it instead. An exclusive holder
    that has the gate waits for the shared holders until ``behind_shared`` (default ``deadline``): no new
    one starts meanwhile, so the wait ends when the partition runs loading finish.
    """
    gate = lease_name(sync)
    held: list[str] = []
    told = on_wait is None

    def wait(why: str, until: float = deadline) -> None:
        nonlocal told
        if not told and on_wait is not None:
            on_wait(f"sync {sync}: waiting for the lease: {why}")
            told = True
        wait_or_fail(sync, until)

    try:
        while True:
            if not session.try_lock(gate):
                wait(alone or "another run of the sync holds it alone (a plain run loads alone)")
                continue
            if slots:
                slot = next((n for n in range(slots) if session.try_lock(slot_name(sync, n))), None)
                session.unlock(gate)
                if slot is None:
                    wait(f"{slots} partition run(s) of the sync are loading, the most allowed at once")
                    continue
                held.append(slot_name(sync, slot))
                break
            held.append(gate)
            for n in range(MAX_SLOTS if slotted else 0):
                while not session.try_lock(slot_name(sync, n)):
                    wait(
                        "partition runs of the sync are loading; a plain run loads alone, after them",
                        max(deadline, behind_shared or deadline),
                    )
                held.append(slot_name(sync, n))
            break
        yield
    finally:
        for name in reversed(held):
            with contextlib.suppress(Exception):
                session.unlock(name)


def on_conflict_upsert(insert: Any, key: Sequence[str], non_key: Sequence[str]) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` (or ``DO NOTHING``) for dialects that share that syntax."""
    if non_key:
        return insert.on_conflict_do_update(index_elements=list(key), set_={c: insert.excluded[c] for c in non_key})
    return insert.on_conflict_do_nothing(index_elements=list(key))


def param_dicts(rows: pa.Table) -> list[dict[str, Any]]:
    """``rows`` as SQLAlchemy executemany parameters (converted column by column)."""
    names = rows.column_names
    return [dict(zip(names, values, strict=True)) for values in zip(*python_columns(rows), strict=True)]


def arrow_table(table: sa.Table, columns: Sequence[str], values: Sequence[list[Any]], schema: pa.Schema) -> pa.Table:
    """Driver values read from ``table``, one list per column, as Arrow columns of the types in ``schema``
    where they convert exactly (see :meth:`SqlBackend.read_arrow`)."""
    arrays = [
        exact_array(column, schema.field(name).type, float_column=isinstance(table.c[name].type, sa.Float))
        for name, column in zip(columns, values, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=list(columns))


def lease_name(sync: str) -> str:
    """The server-side name of a sync's lease."""
    return f"sync_pipelines:{sync}"


def wait_or_fail(sync: str, deadline: float) -> None:
    """Sleep one poll interval, or raise when the lease could not be had by ``deadline``."""
    if time.monotonic() > deadline:
        raise ConcurrentRunError(f"sync {sync}: another run is loading it; wait for it to finish")
    time.sleep(LEASE_POLL_S)
