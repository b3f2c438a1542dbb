"""SQL sources: a table or query streamed in batches of Arrow rows, in ``(cursor, key)`` or key order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import FilterCondition, SqlSource, SyncConfig
from sync_pipelines.config.urls import build_url, display_url
from sync_pipelines.connectors import pg_reads
from sync_pipelines.connectors.dialects import backend, driver_rows
from sync_pipelines.connectors.sql import create_sql_engine, reflect_columns, translate_errors
from sync_pipelines.connectors.values import decode, encode
from sync_pipelines.errors import PermanentConnectorError


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
        # Options of this statement only: Connection.execution_options would keep streaming on for the connection.
        probe = conn.execute(sa.text(self.source.query), execution_options={"stream_results": True})
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
                for table in pg_reads.read_csv_batches(conn, query, copy_types, cfg.batch_size):
                    position = None
                    if incremental and cfg.cursor is not None:
                        position = {
                            "cursor": encode(table.column(cfg.cursor)[-1].as_py()),
                            "key": [encode(table.column(k)[-1].as_py()) for k in cfg.source_key],
                        }
                    yield SourceBatch(table, position)
                return
            for table, last in self._row_batches(conn, query, names, cfg.batch_size):
                position = None
                if incremental and cfg.cursor is not None:
                    position = {
                        "cursor": encode(last[cfg.cursor]),
                        "key": [encode(last[k]) for k in cfg.source_key],
                    }
                yield SourceBatch(table, position)

    def _row_batches(
        self, conn: Connection, query: sa.Select[Any], names: list[str], size: int
    ) -> Iterator[tuple[pa.Table, dict[str, Any]]]:
        """Batches of ``query``'s rows as Arrow tables, each with its last row's values as SQLAlchemy returns them.

        Straight from the driver's cursor where it steps through the result as rows are fetched (SQLite's):
        one plain tuple per row, the values SQLAlchemy's result processors convert converted column by column
        (:mod:`~sync_pipelines.connectors.dialects.driver_rows`); elsewhere SQLAlchemy's rows, streamed. Python's
        garbage collector waits while a batch is fetched and converted
        (:func:`~sync_pipelines.connectors.dialects.driver_rows.collection_paused`).
        """
        plain = backend(conn).plain_cursor_streams
        # SQLAlchemy's rows hold converted values already; the driver's get SQLAlchemy's result processors.
        convert = driver_rows.result_processors(conn.dialect, query.selected_columns) if plain else [None] * len(names)

        def batch(rows: Sequence[Any]) -> tuple[pa.Table, dict[str, Any]]:
            table = driver_rows.columns_to_arrow(names, driver_rows.transposed(rows), convert)
            return table, {n: v if f is None else f(v) for n, v, f in zip(names, rows[-1], convert, strict=True)}

        yield from driver_rows.fetched(conn, query, size, batch, from_cursor=plain)

    def read_keys(self, batch_size: int = 200_000) -> Iterator[pa.Table]:
        """Yield the key columns of every row this sync reads (its filter applied, no cursor or watermark).

        One narrow ``SELECT key FROM source WHERE filter``: on PostgreSQL one ``array_agg`` per key column
        (:func:`~sync_pipelines.connectors.pg_reads.aggregated_read`) or, for very large sources, ``COPY``; elsewhere
        streamed in batches of ``batch_size`` rows (straight from the driver's cursor where it streams them, as
        SQLite's does: see :meth:`_row_batches`). An incremental sync with
        ``delete_missing`` compares these keys with the target's to find the rows the source no longer has.
        """
        with translate_errors(self.endpoint, "scanning the source's keys"), self.engine.connect() as conn:
            selectable = self._selectable(conn)
            self.needed_columns(list(selectable.c.keys()))
            names = list(self.config.source_key)
            query = self._filtered(selectable, sa.select(*(self._column(selectable, n) for n in names)))
            copy_types = _copy_types(conn, query)
            if copy_types is not None:
                compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
                found = pg_reads.aggregated_read(conn, str(compiled), compiled.params, copy_types)
                if found is not None:
                    yield found
                else:
                    yield from pg_reads.read_csv_batches(conn, query, copy_types, batch_size)
                return
            for table, _ in self._row_batches(conn, query, names, batch_size):
                yield table

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
