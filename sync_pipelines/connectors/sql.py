"""SQL source and target through SQLAlchemy Core: streaming reads, dialect upserts, bookkeeping tables.

Every identifier goes through SQLAlchemy's quoting and every value is a bound parameter; no SQL
is built by formatting config or data values into strings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine

from sync_pipelines.config.models import FilterCondition, SqlSource, SqlTarget, SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.config.urls import build_url, display_url
from sync_pipelines.connectors import bookkeeping, pg_copy, record_sets
from sync_pipelines.connectors.column_types import LONG_BINARY, LONG_TEXT, timestamp_type
from sync_pipelines.connectors.dialects import backend, backend_of_error, sync_lease
from sync_pipelines.connectors.values import decode, encode
from sync_pipelines.errors import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)


class _SharedEngines:
    """Engines kept for reuse while at least one :func:`shared_engines` block is open (any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.engines: dict[str, Engine] = {}


_SHARED = _SharedEngines()


@contextlib.contextmanager
def shared_engines() -> Iterator[None]:
    """Within the block, :func:`create_sql_engine` gives one engine (one pool) per database URL.

    A step opens the target for its ledger row, its writes and its metadata: with this, it connects
    once instead of building an engine and a connection for each. The engines are disposed when the
    outermost block ends; :func:`release_engine` leaves them alone until then.
    """
    with _SHARED.lock:
        _SHARED.depth += 1
    try:
        yield
    finally:
        with _SHARED.lock:
            _SHARED.depth -= 1
            done = list(_SHARED.engines.values()) if _SHARED.depth == 0 else []
            if done:
                _SHARED.engines.clear()
        for engine in done:
            engine.dispose()


def release_engine(engine: Engine) -> None:
    """Dispose ``engine`` unless a :func:`shared_engines` block keeps it for the rest of the step."""
    with _SHARED.lock:
        if any(e is engine for e in _SHARED.engines.values()):
            return
    engine.dispose()


def create_sql_engine(template: str, *, where: str) -> tuple[Engine, str]:
    """Resolve secrets in ``template`` and create an engine; returns it with the display URL.

    The URL is assembled from its components (:func:`build_url`), so no value of a ``${VAR}`` can
    change its structure. Inside :func:`shared_engines`, the engine of a URL is created once and then
    reused.
    """
    shown = display_url(template)
    try:
        url: URL = build_url(template, where=where)
    except ValueError as exc:
        raise PermanentConnectorError(f"invalid SQLAlchemy URL: {exc}", endpoint=shown) from None
    db = backend(url)
    if db.default_dbapi is not None and "+" not in url.drivername:
        url = url.set(drivername=f"{url.drivername}+{db.default_dbapi}")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    connect_args = db.dbapi_connect_args(url)
    if connect_args:
        kwargs["connect_args"] = connect_args
    cache_key = url.render_as_string(hide_password=False)
    with _SHARED.lock:
        if _SHARED.depth and cache_key in _SHARED.engines:
            return _SHARED.engines[cache_key], shown
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise PermanentConnectorError(redact(f"cannot create engine: {exc}"), endpoint=shown) from None
    with _SHARED.lock:
        if _SHARED.depth:
            engine = _SHARED.engines.setdefault(cache_key, engine)
    return engine, shown


def classify(error: BaseException, endpoint: str, action: str) -> ConnectorError:
    """Turn a driver error into a transient or permanent :class:`ConnectorError` without secrets."""
    original = getattr(error, "orig", None) or error
    text = redact(" ".join(str(original).split()))[:500]
    message = f"{action} failed: {text}"
    # Told by the driver's exception class and error code (never by message text, which changes with
    # driver releases and server locales), or by SQLAlchemy's own pool time-out and disconnect detection.
    transient = (
        isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError)
        or (isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated)
        or backend_of_error(original).is_transient(original)
    )
    cls = TransientConnectorError if transient else PermanentConnectorError
    return cls(message, endpoint=endpoint)


@contextlib.contextmanager
def translate_errors(endpoint: str, action: str) -> Iterator[None]:
    """Re-raise SQLAlchemy and driver errors as connector errors naming the endpoint."""
    try:
        yield
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise classify(exc, endpoint, action) from None


# --------------------------------------------------------------------------- types


def arrow_type_of(column_type: sa.types.TypeEngine[Any], *, sqlite: bool) -> pa.DataType:
    """The Arrow type a source column is staged and (without a declared type) written as."""
    if isinstance(column_type, sa.Boolean):
        return pa.bool_()
    if isinstance(column_type, sa.Integer):
        return pa.int64()
    if isinstance(column_type, sa.Float):
        return pa.float64()
    if isinstance(column_type, sa.Numeric):
        precision, scale = column_type.precision, column_type.scale
        if precision and 0 < precision <= 38:
            return pa.decimal128(precision, scale or 0)
        return pa.decimal128(38, 9)
    if isinstance(column_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if column_type.timezone else None)
    if isinstance(column_type, sa.Date):
        return pa.date32()
    if isinstance(column_type, sa.LargeBinary):
        return pa.binary()
    return pa.string()


def sql_type_of(arrow: pa.DataType, *, key: bool) -> sa.types.TypeEngine[Any]:
    """The column type used when a target table is created from the staged schema."""
    if pa.types.is_boolean(arrow):
        return sa.Boolean()
    if pa.types.is_integer(arrow):
        return sa.BigInteger()
    if pa.types.is_floating(arrow):
        return sa.Double()
    if pa.types.is_decimal(arrow):
        return sa.Numeric(arrow.precision, arrow.scale)
    if pa.types.is_timestamp(arrow):
        tz = arrow.tz is not None
        return timestamp_type(timezone=tz)
    if pa.types.is_date(arrow):
        return sa.Date()
    if pa.types.is_binary(arrow):
        return LONG_BINARY
    return sa.String(255) if key else LONG_TEXT


# --------------------------------------------------------------------------- source


def _condition(column: sa.ColumnElement[Any], cond: FilterCondition) -> sa.ColumnElement[bool]:
    ops = {
        "eq": lambda: column == cond.value,
        "ne": lambda: column != cond.value,
        "lt": lambda: column < cond.value,
        "le": lambda: column <= cond.value,
        "gt": lambda: column > cond.value,
        "ge": lambda: column >= cond.value,
        "in": lambda: column.in_(cond.value),
        "not_in": lambda: column.not_in(cond.value),
        "is_null": lambda: column.is_(None),
        "not_null": lambda: column.is_not(None),
    }
    return ops[cond.op]()


@dataclass
class SourceBatch:
    """Rows of one source batch as an Arrow table, and the ``(cursor, key)`` position of its last row."""

    table: pa.Table
    last_position: dict[str, Any] | None


@dataclass(frozen=True)
class KeyRange:
    """Rows whose (single) key column is in ``[lower, upper)``; None leaves that side open.

    ``nulls`` adds the rows whose key is NULL (they belong to exactly one range, so that transform
    still reports them as failed records).
    """

    lower: Any = None
    upper: Any = None
    nulls: bool = False


def key_ranges(boundaries: Sequence[Any]) -> list[KeyRange]:
    """Ranges ``(-inf, b0), [b0, b1), ..., [bn, +inf)`` of sorted distinct ``boundaries``; NULL keys in the first."""
    edges: list[Any] = [None, *boundaries, None]
    return [KeyRange(edges[i], edges[i + 1], nulls=i == 0) for i in range(len(edges) - 1)]


class SqlSourceReader:
    """Streams a SQL table or query in batches, in ``(cursor, key)`` or key order."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.source, SqlSource)
        self.config = config
        self.source: SqlSource = config.source
        self.engine, self.endpoint = create_sql_engine(self.source.url, where=f"{config.name}: source.url")
        self.is_sqlite = backend(self.engine).stores_dates_as_text
        self._reflected: sa.Table | None = None

    def _selectable(self, conn: Connection) -> sa.FromClause:
        if self.source.table is not None:
            # Reflected once per reader (one run): its schema, count and read use the same definition. Only the
            # columns are read (a read needs no constraints or indexes), a fraction of a full reflection's queries.
            if self._reflected is not None:
                return self._reflected
            try:
                self._reflected = reflect_columns(conn, self.source.table, self.source.db_schema)
                return self._reflected
            except sa_exc.NoSuchTableError:
                where = f"{self.source.db_schema}.{self.source.table}" if self.source.db_schema else self.source.table
                raise PermanentConnectorError(
                    f"source table {where!r} does not exist", endpoint=self.endpoint
                ) from None
        assert self.source.query is not None
        probe = conn.execution_options(stream_results=True).execute(sa.text(self.source.query))
        names = list(probe.keys())
        probe.close()
        return sa.text(self.source.query).columns(*[sa.column(n) for n in names]).subquery("src")

    def needed_columns(self, available: Sequence[str]) -> list[str]:
        """Source columns this sync reads; raises naming any that the source does not have."""
        if not self.config.mapping:
            names = list(available)
        else:
            names = []
            for target in self.config.mapping:
                col = self.config.source_column(target)
                if col is not None and col not in names:
                    names.append(col)
        extra = [*self.config.source_key, *([self.config.cursor] if self.config.cursor else [])]
        extra += [c.column for c in self.config.filter]
        missing = sorted({c for c in [*names, *extra] if c not in available})
        if missing:
            raise PermanentConnectorError(
                f"source has no column(s) {', '.join(missing)} (sync {self.config.name}); "
                f"available: {', '.join(available)}",
                endpoint=self.endpoint,
            )
        for col in extra:
            if col not in names and col in [*self.config.source_key, self.config.cursor]:
                names.append(col)
        return names

    def _column(self, selectable: sa.FromClause, name: str) -> sa.ColumnElement[Any]:
        column = selectable.c[name]
        # SQLite keeps dates as text: read them raw so one malformed value fails one record, not the batch.
        if (
            self.is_sqlite
            and isinstance(column.type, sa.Date | sa.DateTime | sa.Numeric)
            and not isinstance(column.type, sa.Float)
        ):
            return sa.type_coerce(column, sa.String()).label(name)
        return column

    def arrow_schema(self) -> dict[str, pa.DataType]:
        """Arrow types of the columns this sync reads (strings for SQLite text-stored dates)."""
        with translate_errors(self.endpoint, "reading the source schema"), self.engine.connect() as conn:
            selectable = self._selectable(conn)
            names = self.needed_columns(list(selectable.c.keys()))
            return {n: arrow_type_of(selectable.c[n].type, sqlite=self.is_sqlite) for n in names}

    def _filtered(self, selectable: sa.FromClause, query: sa.Select[Any]) -> sa.Select[Any]:
        for cond in self.config.filter:
            query = query.where(_condition(selectable.c[cond.column], cond))
        return query

    def _in_window(self, selectable: sa.FromClause, window: tuple[dt.datetime, dt.datetime]) -> sa.ColumnElement[bool]:
        """``start <= cursor < end``. SQLite keeps datetimes as text: compare its normalised form."""
        assert self.config.cursor is not None
        column: sa.ColumnElement[Any] = selectable.c[self.config.cursor]
        start, end = window
        if self.is_sqlite:
            column = sa.func.datetime(column)
            return sa.and_(column >= f"{start:%Y-%m-%d %H:%M:%S}", column < f"{end:%Y-%m-%d %H:%M:%S}")
        return sa.and_(column >= start, column < end)

    def high_water_mark(self) -> Any:
        """``MAX(cursor)`` of the rows this sync reads (filters applied), encoded; None when there are none.

        One aggregate query, cheap on an indexed cursor: the source-change sensor polls it.
        """
        cursor = self.config.cursor
        if cursor is None:
            raise PermanentConnectorError(f"sync {self.config.name} has no cursor to poll", endpoint=self.endpoint)
        with translate_errors(self.endpoint, "reading the source's high-water mark"), self.engine.connect() as conn:
            selectable = self._selectable(conn)
            self.needed_columns(list(selectable.c.keys()))
            query = self._filtered(selectable, sa.select(sa.func.max(selectable.c[cursor])))
            return encode(conn.execute(query).scalar())

    def select_rows(
        self,
        conn: Connection,
        watermark: dict[str, Any] | None,
        *,
        incremental: bool,
        window: tuple[dt.datetime, dt.datetime] | None = None,
        key_range: KeyRange | None = None,
    ) -> tuple[sa.Select[Any], list[str]]:
        """The ordered SELECT of the rows this run reads (filter, window, watermark and key range applied)."""
        cfg = self.config
        selectable = self._selectable(conn)
        names = self.needed_columns(list(selectable.c.keys()))
        cols = {n: self._column(selectable, n) for n in names}
        query = self._filtered(selectable, sa.select(*cols.values()))
        if window is not None:
            query = query.where(self._in_window(selectable, window))
        if key_range is not None:
            query = query.where(self._in_key_range(selectable, key_range))
        keys = [cols[k] for k in cfg.source_key]
        order: list[sa.ColumnElement[Any]] = []
        if incremental:
            assert cfg.cursor is not None
            cursor = cols[cfg.cursor]
            order.append(cursor)
            if watermark:
                c_val = decode(watermark["cursor"])
                k_vals = [decode(v) for v in watermark["key"]]
                tail = keys[0] > k_vals[0] if len(keys) == 1 else sa.tuple_(*keys) > sa.tuple_(*k_vals)
                query = query.where(sa.or_(cursor > c_val, sa.and_(cursor == c_val, tail)))
            query = query.where(cursor.is_not(None))
        order.extend(keys)
        return query.order_by(*order), names

    def _in_key_range(self, selectable: sa.FromClause, key_range: KeyRange) -> sa.ColumnElement[bool]:
        """The rows of one key range: complementary bounds, so that adjacent ranges never share a row."""
        (name,) = self.config.source_key
        column = selectable.c[name]
        bounds: list[sa.ColumnElement[bool]] = []
        if key_range.lower is not None:
            bounds.append(column >= key_range.lower)
        if key_range.upper is not None:
            bounds.append(column < key_range.upper)
        inside = sa.and_(sa.true(), *bounds)
        return sa.or_(inside, column.is_(None)) if key_range.nulls else inside

    def key_boundaries(self, chunks: int) -> list[Any]:
        """Up to ``chunks - 1`` sorted distinct key values splitting the rows read into ranges of about equal size.

        One ``NTILE`` window query over the (filtered) single-column key: each boundary is the
        smallest key of a tile, so equal keys (duplicates in the source) always fall in one range.
        """
        (name,) = self.config.source_key
        with translate_errors(self.endpoint, "splitting the source into key ranges"), self.engine.connect() as conn:
            selectable = self._selectable(conn)
            self.needed_columns(list(selectable.c.keys()))
            column = selectable.c[name]
            tiles = self._filtered(
                selectable,
                sa.select(column.label("k"), sa.func.ntile(chunks).over(order_by=column).label("tile")).where(
                    column.is_not(None)
                ),
            ).subquery("tiles")
            lowest = sa.func.min(tiles.c.k)
            firsts = [row[0] for row in conn.execute(sa.select(lowest).group_by(tiles.c.tile).order_by(lowest))]
        distinct: list[Any] = []
        for value in firsts[1:]:
            if value is not None and (not distinct or value != distinct[-1]) and value != firsts[0]:
                distinct.append(value)
        return distinct

    def count(
        self,
        watermark: dict[str, Any] | None,
        *,
        incremental: bool,
        window: tuple[dt.datetime, dt.datetime] | None = None,
    ) -> int:
        """How many rows :meth:`read` will yield: a ``COUNT(*)`` with the same filter, window and watermark."""
        with translate_errors(self.endpoint, "counting the source rows"), self.engine.connect() as conn:
            query, _ = self.select_rows(conn, watermark, incremental=incremental, window=window)
            counted = sa.select(sa.func.count()).select_from(query.order_by(None).subquery("counted"))
            return int(conn.execute(counted).scalar_one())

    def read(
        self,
        watermark: dict[str, Any] | None,
        *,
        incremental: bool,
        window: tuple[dt.datetime, dt.datetime] | None = None,
        key_range: KeyRange | None = None,
    ) -> Iterator[SourceBatch]:
        """Yield batches after ``watermark`` (incremental), of a cursor ``window``, of a key range, or of all rows."""
        cfg = self.config
        with translate_errors(self.endpoint, "reading the source"), self.engine.connect() as conn:
            query, names = self.select_rows(
                conn, watermark, incremental=incremental, window=window, key_range=key_range
            )
            copy_types = _copy_types(conn, query)
            if copy_types is not None:
                for table in pg_copy.read_csv_batches(conn, query, copy_types, cfg.batch_size):
                    position = None
                    if incremental and cfg.cursor is not None:
                        position = {
                            "cursor": encode(table.column(cfg.cursor)[-1].as_py()),
                            "key": [encode(table.column(k)[-1].as_py()) for k in cfg.source_key],
                        }
                    yield SourceBatch(table, position)
                return
            result = conn.execution_options(stream_results=True, yield_per=cfg.batch_size).execute(query)
            for rows in result.partitions(cfg.batch_size):
                table = _rows_to_arrow(names, rows)
                last = rows[-1]._mapping
                position = None
                if incremental and cfg.cursor is not None:
                    position = {
                        "cursor": encode(last[cfg.cursor]),
                        "key": [encode(last[k]) for k in cfg.source_key],
                    }
                yield SourceBatch(table, position)

    def close(self) -> None:
        """Release the reader's connections."""
        self.engine.dispose()


def missing_sqlite_file(url: str, *, where: str) -> Path | None:
    """The database file of a SQLite URL when it does not exist (SQLite would create it, empty, on connect)."""
    try:
        parsed = build_url(url, where=where)
    except ValueError:
        return None  # the engine reports an invalid URL with its own message
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def open_sql_source(config: SyncConfig) -> SqlSourceReader:
    """The reader of a SQL source.

    Raises:
        PermanentConnectorError: a SQLite source whose file does not exist (reading it would leave an
            empty file behind).
    """
    assert isinstance(config.source, SqlSource)
    missing = missing_sqlite_file(config.source.url, where=f"{config.name}: source.url")
    if missing is not None:
        raise PermanentConnectorError(
            f"source database file {missing} does not exist (sync {config.name}, source.url)",
            endpoint=display_url(config.source.url),
        )
    return SqlSourceReader(config)


def _copy_types(conn: Connection, query: sa.Select[Any]) -> dict[str, pa.DataType] | None:
    """Arrow types to read ``query`` with ``COPY ... TO STDOUT (FORMAT csv)``, or None to read it row by row.

    Only PostgreSQL columns whose text form Arrow parses back exactly qualify: booleans, integers,
    decimals of declared precision, timestamps without time zone, dates and text.
    """
    if not backend(conn).can_copy(conn):
        return None
    types: dict[str, pa.DataType] = {}
    for column in query.selected_columns:
        kind = column.type
        if isinstance(kind, sa.Enum | sa.Float | sa.Interval) or not isinstance(
            kind, sa.Boolean | sa.Integer | sa.Numeric | sa.DateTime | sa.Date | sa.String
        ):
            return None
        if isinstance(kind, sa.DateTime) and kind.timezone:
            return None
        if isinstance(kind, sa.Numeric) and not (kind.precision and 0 < kind.precision <= 38):
            return None
        if column.name in types:
            return None
        types[column.name] = arrow_type_of(kind, sqlite=False)
    return types


def reflect_columns(conn: Connection, name: str, schema: str | None) -> sa.Table:
    """A table's columns and their types, as reflected by the database (raises ``NoSuchTableError``).

    Reads, upserts and deletes need nothing else; a full reflection also reads constraints, indexes and
    comments, several times the queries.
    """
    columns = sa.inspect(conn).get_columns(name, schema=schema)
    return sa.Table(name, sa.MetaData(schema=schema), *[sa.Column(c["name"], c["type"]) for c in columns])


def _rows_to_arrow(names: list[str], rows: Sequence[sa.Row[Any]]) -> pa.Table:
    arrays = []
    for i, _name in enumerate(names):
        values = [row[i] for row in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Mixed or odd values: keep them as text so that transform can report the bad ones.
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


# --------------------------------------------------------------------------- target


@dataclass
class SyncState:
    """The committed position of a sync in its target database."""

    watermark: dict[str, Any] | None = None
    version: int = 0
    last_run_id: str | None = None
    last_batch: int = -1


def _short(name: str, prefix: str) -> str:
    full = f"{prefix}{name}"
    if len(full) <= 60:
        return full
    return f"{full[:51]}_{hashlib.blake2b(name.encode()).hexdigest()[:8]}"


_OUTCOMES = pa.schema(
    [
        ("run_id", pa.string()),
        ("sync", pa.string()),
        ("batch", pa.int32()),
        ("record_key", pa.string()),
        ("entity", pa.string()),
        ("action", pa.string()),
        ("changes", pa.string()),
        ("error", pa.string()),
        ("recorded_at", pa.timestamp("us")),
    ]
)
"""The columns of ``_sync_records`` a run writes (the id is the database's)."""


class SqlTargetWriter:
    """Reads, upserts and deletes target rows; keeps the `_sync_*` bookkeeping tables beside them."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.target, SqlTarget)
        self.config = config
        self.target: SqlTarget = config.target
        self.engine, self.endpoint = create_sql_engine(self.target.url, where=f"{config.name}: target.url")
        self.backend = backend(self.engine)
        self.metadata = sa.MetaData(schema=self.target.db_schema)
        self.state_table = bookkeeping.state_table(self.metadata)
        self.records_table = bookkeeping.records_table(self.metadata)
        self.table: sa.Table | None = None
        self.seen_table: sa.Table | None = None

    # -- schema

    def prepare(self, schema: dict[str, pa.DataType]) -> sa.Table:
        """Create the bookkeeping tables, and the target table if allowed; check the target's columns."""
        problems = [f"{n!r} {why}" for n in (self.target.table, *schema) if (why := self.backend.identifier_problem(n))]
        if problems:
            raise PermanentConnectorError(
                f"name(s) {'; '.join(problems)}; rename them in the sync's mapping or target.table",
                endpoint=self.endpoint,
            )
        with translate_errors(self.endpoint, "preparing the target"), self.engine.begin() as conn:
            self.metadata.create_all(
                conn, tables=[self.state_table, self.records_table, record_sets.record_sets_table(self.metadata)]
            )
            inspector = sa.inspect(conn)
            add_missing_columns(conn, inspector, self.records_table)
            bookkeeping.upgrade_records(conn, self.records_table)
            if not inspector.has_table(self.target.table, schema=self.target.db_schema):
                if not self.target.create:
                    raise PermanentConnectorError(
                        f"target table {self.target.table!r} does not exist and target.create is false",
                        endpoint=self.endpoint,
                    )
                columns = [
                    sa.Column(
                        name,
                        sql_type_of(t, key=name in self.target.key),
                        primary_key=name in self.target.key,
                        autoincrement=False,
                    )
                    for name, t in schema.items()
                ]
                sa.Table(self.target.table, sa.MetaData(schema=self.target.db_schema), *columns).create(conn)
            table = reflect_columns(conn, self.target.table, self.target.db_schema)
            missing = [c for c in schema if c not in table.c]
            if missing:
                raise PermanentConnectorError(
                    f"target table {self.target.table!r} has no column(s) {', '.join(missing)}",
                    endpoint=self.endpoint,
                )
            self.table = table
            self.prepare_seen_definition()
            return table

    def prepare_seen_definition(self) -> None:
        """Define (not create) the table of keys seen in a full sync, typed like the target's key."""
        assert self.table is not None
        key_cols = [(k, self.table.c[k].type) for k in self.target.key]
        name = _short(self.config.name, bookkeeping.SEEN_PREFIX)
        if name in self.metadata.tables or f"{self.target.db_schema}.{name}" in self.metadata.tables:
            self.metadata.remove(
                self.metadata.tables[f"{self.target.db_schema}.{name}" if self.target.db_schema else name]
            )
        self.seen_table = bookkeeping.seen_table(self.metadata, name, key_cols)

    # -- state

    def read_state(self, conn: Connection) -> SyncState:
        row = (
            conn.execute(sa.select(self.state_table).where(self.state_table.c.sync == self.config.name))
            .mappings()
            .first()
        )
        if row is None:
            return SyncState()
        return SyncState(
            watermark=_loads(row["watermark"]),
            version=int(row["version"]),
            last_run_id=row["last_run_id"],
            last_batch=int(row["last_batch"]),
        )

    def current_state(self) -> SyncState:
        with translate_errors(self.endpoint, "reading the sync state"), self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(bookkeeping.STATE_TABLE, schema=self.target.db_schema):
                return SyncState()
            return self.read_state(conn)

    def save_state(self, conn: Connection, state: SyncState) -> None:
        values = {
            "watermark": _dumps_or_none(state.watermark),
            "version": state.version,
            "last_run_id": state.last_run_id,
            "last_batch": state.last_batch,
            "updated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
        updated = conn.execute(
            sa.update(self.state_table).where(self.state_table.c.sync == self.config.name).values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(sa.insert(self.state_table).values(sync=self.config.name, **values))

    # -- rows

    def key_columns(self) -> list[sa.Column[Any]]:
        assert self.table is not None
        return [self.table.c[k] for k in self.target.key]

    def record_outcomes(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Append outcome rows (see :func:`~sync_pipelines.connectors.bookkeeping.outcome_rows`) in bulk."""
        if rows:
            self.backend.insert_arrow(conn, self.records_table, pa.Table.from_pylist(rows, schema=_OUTCOMES))

    # -- deletes (full sync with delete_missing)

    def reset_seen(self, conn: Connection) -> None:
        assert self.seen_table is not None
        self.seen_table.create(conn, checkfirst=True)
        conn.execute(sa.delete(self.seen_table))

    def _missing_condition(self, seen: sa.Table) -> sa.ColumnElement[bool]:
        assert self.table is not None
        match = sa.and_(*[seen.c[k] == self.table.c[k] for k in self.target.key])
        return ~sa.exists().where(match)

    def count_missing(self, conn: Connection, seen: sa.Table) -> tuple[int, int]:
        """``(rows the source no longer has, rows in the target)``."""
        assert self.table is not None
        total = conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()
        missing = conn.execute(
            sa.select(sa.func.count()).select_from(self.table).where(self._missing_condition(seen))
        ).scalar_one()
        return int(missing), int(total)

    def missing_keys(self, conn: Connection, seen: sa.Table, limit: int | None = None) -> list[tuple[Any, ...]]:
        query = sa.select(*self.key_columns()).where(self._missing_condition(seen))
        if limit is not None:
            query = query.limit(limit)
        return [tuple(r) for r in conn.execute(query)]

    def delete_keys(self, conn: Connection, keys: list[tuple[Any, ...]]) -> None:
        """Delete the target rows of ``keys`` (key tuples as read from the target)."""
        assert self.table is not None
        if keys:
            columns = list(zip(*keys, strict=True))
            self.backend.delete_arrow(
                conn,
                self.table,
                pa.table({k: pa.array(list(v)) for k, v in zip(self.target.key, columns, strict=True)}),
            )

    def temp_seen_table(self, conn: Connection) -> sa.Table:
        """A session-scoped copy of the seen-keys table, for dry runs that must write nothing."""
        assert self.seen_table is not None
        cols = [sa.Column(c.name, c.type, primary_key=True, autoincrement=False) for c in self.seen_table.columns]
        temp = sa.Table("_sync_dry_seen", sa.MetaData(), *cols, prefixes=["TEMPORARY"])
        temp.create(conn, checkfirst=False)
        return temp

    # -- lease

    @contextlib.contextmanager
    def lease(self, run_id: str, timeout_s: float = 60.0) -> Iterator[None]:
        """Hold the per-sync lease while loading, so two runs of one sync never interleave."""
        with (
            translate_errors(self.endpoint, "taking the sync lease"),
            sync_lease(self.engine, self.config.name, timeout_s),
        ):
            yield


def add_missing_columns(conn: Connection, inspector: sa.Inspector, table: sa.Table) -> None:
    """Add nullable columns a bookkeeping table created by an earlier release lacks (e.g. ``entity``)."""
    present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
    preparer = conn.dialect.identifier_preparer
    for column in table.columns:
        if column.name not in present and column.nullable:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(
                sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.quote(column.name)} {kind}")
            )


def _norm_key(value: Any) -> Any:
    """Key values as compared between staged rows and target rows."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def norm_key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_norm_key(v) for v in values)


def _dumps_or_none(value: Any) -> str | None:
    import json

    return None if value is None else json.dumps(value)


def _loads(text: str | None) -> Any:
    import json

    return None if text is None else json.loads(text)
