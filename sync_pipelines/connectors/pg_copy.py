"""Bulk writes to PostgreSQL with ``COPY``, inside the caller's SQLAlchemy transaction.

Row-by-row ``INSERT`` (even pipelined by ``executemany``) costs a round of parsing, binding and
planning per row; ``COPY ... FROM STDIN`` streams the rows in one statement. The helpers here write
through the psycopg connection under the SQLAlchemy connection, so the rows commit or roll back
with everything else the batch writes (target rows, outcomes, baselines and watermark together).
Driver errors are re-raised as SQLAlchemy errors, so :func:`~sync_pipelines.connectors.sql.translate_errors`
classifies them like any other.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.connectors.dialects.arrow_values import (
    dense_range,
    exact_from_text,
    from_hex_text,
    hex_text,
    only_keys,
)
from sync_pipelines.connectors.pg_binary import binary_copy_data, read_fixed, reads_fixed
from sync_pipelines.connectors.pg_copy_out import copy_out_chunks

# Always qualified with pg_temp, so that no statement here can reach a permanent table of the same name.
_ARROW_STAGE = sql.Identifier("pg_temp", "_sync_arrow_stage")
_ARROW_KEYS = sql.Identifier("pg_temp", "_sync_arrow_keys")
_CSV_WRITE = pa_csv.WriteOptions(include_header=False)


def _identifier(table: sa.Table) -> sql.Composable:
    if table.schema:
        return sql.Identifier(table.schema, table.name)
    return sql.Identifier(table.name)


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from None


_CSV_NULLS = {"null_values": [""], "strings_can_be_null": True, "quoted_strings_can_be_null": False}


def _read_csv(data: bytes | bytearray, types: dict[str, pa.DataType]) -> tuple[pa.Table, bool]:
    """PostgreSQL CSV as Arrow columns of ``types`` and True; when some column does not parse as its type,
    every column as text and False."""
    read = pa_csv.ReadOptions(column_names=list(types), use_threads=False)
    try:
        typed = pa_csv.read_csv(
            pa.BufferReader(data),  # no copy of the bytes
            read_options=read,
            convert_options=pa_csv.ConvertOptions(
                column_types=types, true_values=["t"], false_values=["f"], **_CSV_NULLS
            ),
        )
        return typed, True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=read,
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(types, pa.string()), **_CSV_NULLS),
    )
    return text, False


def _parse_csv(data: bytes | bytearray, types: dict[str, pa.DataType]) -> pa.Table:
    """Rows of PostgreSQL CSV as an Arrow table; a column Arrow cannot parse as its type stays text."""
    table, typed = _read_csv(data, types)
    if typed:
        return table
    columns = []
    for name, wanted in types.items():
        column = table.column(name)
        # Odd values (a column Arrow cannot convert) stay text, so that transform reports the records holding them.
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            column = pc.equal(column, "t") if pa.types.is_boolean(wanted) else pc.cast(column, wanted)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(types))


def read_csv_batches(
    conn: Connection, query: sa.Select[Any], types: dict[str, pa.DataType], batch_size: int
) -> Iterator[pa.Table]:
    """Stream ``query`` with ``COPY (query) TO STDOUT (FORMAT csv)`` and yield Arrow tables of ``batch_size`` rows.

    Arrow parses each batch's text in one call instead of building one Python object per value.
    ``types`` gives the Arrow type of every selected column, in order.
    """
    raw = _raw(conn)
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    statement = f"COPY ({compiled}) TO STDOUT (FORMAT csv)"
    with _driver_errors("COPY (source query) TO STDOUT"):
        raw.execute("SET LOCAL DateStyle = 'ISO, MDY'")
        if compiled.params:  # merged client-side: COPY takes no parameters
            statement = psycopg.ClientCursor(raw).mogrify(statement, compiled.params)
        for chunk in copy_out_chunks(raw, statement, rows_per_chunk=batch_size):
            yield _parse_csv(chunk, types)


# --------------------------------------------------------------------------- Arrow batches


def _copy_out(cur: psycopg.Cursor[Any], query: sql.Composed) -> bytearray:
    """Everything ``COPY ... TO STDOUT`` sends, in one buffer."""
    chunks = list(copy_out_chunks(cur.connection, query))  # one chunk: the whole output, or none
    return chunks[0] if chunks else bytearray()


def _raw(conn: Connection) -> psycopg.Connection[Any]:
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


def _stage(cur: psycopg.Cursor[Any], stage: sql.Identifier, table: sa.Table, rows: pa.Table) -> None:
    """A temporary ``stage`` with the columns of ``rows`` typed as in ``table``, holding ``rows``."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
    cur.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            stage, _names(rows.column_names), _identifier(table)
        )
    )
    _copy_in(cur, stage, table, rows)


def insert_arrow(conn: Connection, table: sa.Table, rows: pa.Table) -> None:
    """Append ``rows`` to ``table`` with one ``COPY ... FROM STDIN``, binary or CSV (see :func:`_copy_in`)."""
    if not rows.num_rows:
        return
    with _driver_errors(f"COPY {table.fullname}"), _raw(conn).cursor() as cur:
        _copy_in(cur, _identifier(table), table, rows)


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
    with _driver_errors(f"upsert into {table.fullname} through COPY"), _raw(conn).cursor() as cur:
        _stage(cur, _ARROW_STAGE, table, rows)
        cur.execute(
            sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                _identifier(table), _names(columns), _names(columns), _ARROW_STAGE, _names(key), action
            )
        )
        cur.execute(sql.SQL("DROP TABLE {}").format(_ARROW_STAGE))


def _key_match(key: Sequence[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("t.{0} = k.{0}").format(sql.Identifier(c)) for c in key)


def delete_arrow(conn: Connection, table: sa.Table, keys: pa.Table) -> int:
    """Delete the rows whose key is in ``keys``: ``COPY`` the keys into a temporary table, ``DELETE ... USING`` it."""
    if not keys.num_rows:
        return 0
    with _driver_errors(f"delete from {table.fullname} through COPY"), _raw(conn).cursor() as cur:
        _stage(cur, _ARROW_KEYS, table, keys)
        cur.execute(
            sql.SQL("DELETE FROM {} t USING {} k WHERE {}").format(
                _identifier(table), _ARROW_KEYS, _key_match(keys.column_names)
            )
        )
        deleted = cur.rowcount
        cur.execute(sql.SQL("DROP TABLE {}").format(_ARROW_KEYS))
    return deleted


Side = tuple[sa.Table, Sequence[str], pa.Schema]
"""A table read by key: the table, the columns to read and their wanted Arrow types."""


def read_arrow(
    conn: Connection, table: sa.Table, columns: Sequence[str], keys: pa.Table, schema: pa.Schema
) -> pa.Table:
    """The rows of ``table`` whose key is in ``keys``, with ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` parsed by
    Arrow (see ``SqlBackend.read_arrow``)."""
    return read_arrow_sides(conn, [(table, columns, schema)], keys)[0]


def read_arrow_sides(conn: Connection, sides: Sequence[Side], keys: pa.Table) -> list[pa.Table]:
    """The rows of each table of ``sides`` (tables keyed by the same columns, those of ``keys``) whose key is in
    ``keys``.

    The batch's keys are either one short ascending range (a full read: one ``COPY`` of an index range scan per
    table, the rows of the range that were not asked for left out afterwards; joining the tables on the server
    would cost it more than the second statement costs) or staged with ``COPY`` and probed one index lookup each
    in ONE ``COPY`` (the server sends one message per key instead of one per key and table; ``LATERAL ...
    OFFSET 0`` keeps the planner from hashing a whole table whose statistics may be stale: the cost follows the
    batch, not the table).
    """
    if not keys.num_rows:
        return [pa.table({c: pa.array([], s.field(c).type) for c in cols}) for _, cols, s in sides]
    key = keys.column_names
    raw = _raw(conn)
    span = dense_range(keys) if all(key[0] in cols for _, cols, _ in sides) else None
    with _driver_errors(f"read from {sides[0][0].fullname} through COPY"), raw.cursor() as cur:
        if not str(raw.info.parameter_status("DateStyle") or "ISO").startswith("ISO"):
            cur.execute("SET LOCAL DateStyle = 'ISO, MDY'")
        if span is not None:
            return [_read_range(cur, side, key[0], span, keys) for side in sides]
        found = _read_probed(cur, sides, keys)
    out = []
    for i, (table, columns, schema) in enumerate(sides):
        present = found.filter(pc.fill_null(found.column(f"{i}"), False))
        side = pa.Table.from_arrays([present.column(f"{i}:{c}") for c in columns], names=list(columns))
        out.append(_binary_columns(side, table, columns, schema))
    return out


_VARYING_LAYOUTS: set[tuple[str, int, str, str]] = set()
"""Tables (of integers and byte strings) whose rows were once read in binary in more than one layout, named by
server, database and table: this process reads them as CSV from then on."""


def _read_range(cur: psycopg.Cursor[Any], side: Side, key: str, span: tuple[int, int], keys: pa.Table) -> pa.Table:
    """The rows of one table whose ``key`` lies in ``span`` and is one of ``keys``.

    A table of integers and byte strings alone (the baselines) is read in ``COPY``'s binary form, parsed by
    numpy when its rows share one layout (:func:`~sync_pipelines.connectors.pg_binary.read_fixed`): 0.46 s of
    the server's time per million baselines instead of 0.70 s, and no text to parse or hex to decode.
    """
    table, columns, schema = side
    selected, types = _selection(table, columns, schema)

    def query(form: str) -> sql.Composed:
        return sql.SQL("COPY (SELECT {} FROM {} t WHERE t.{} BETWEEN {} AND {}) TO STDOUT (FORMAT {})").format(
            sql.SQL(", ").join(selected),
            _identifier(table),
            sql.Identifier(key),
            sql.Literal(span[0]),
            sql.Literal(span[1]),
            sql.SQL(form),
        )

    kinds = [schema.field(c).type for c in columns]
    fixed = all(reads_fixed(table.c[c].type, k) for c, k in zip(columns, kinds, strict=True))
    info = cur.connection.info
    where = (info.host, info.port, info.dbname, table.fullname)
    if fixed and where not in _VARYING_LAYOUTS:
        binary = read_fixed(_copy_out(cur, query("binary")), kinds)
        if binary is not None:
            return only_keys(pa.Table.from_arrays(binary, names=list(columns)), keys, span)
        _VARYING_LAYOUTS.add(where)
    found = only_keys(_parse_exact(_copy_out(cur, query("csv")), types), keys, span)
    return _binary_columns(found, table, columns, schema)


def _read_probed(cur: psycopg.Cursor[Any], sides: Sequence[Side], keys: pa.Table) -> pa.Table:
    """For each staged key found in a table of ``sides``: a flag ``"<i>"`` per table, then its columns as
    ``"<i>:<column>"``."""
    key = keys.column_names
    types: dict[str, pa.DataType] = {}
    selected: list[sql.Composable] = []
    for i, (table, columns, schema) in enumerate(sides):
        selected.append(sql.SQL("({}.{} IS NOT NULL)").format(sql.Identifier(f"s{i}"), sql.Identifier(key[0])))
        types[f"{i}"] = pa.bool_()
        side_selected, side_types = _selection(table, columns, schema, alias=f"s{i}")
        selected += side_selected
        types.update({f"{i}:{name}": kind for name, kind in side_types.items()})
    _stage(cur, _ARROW_KEYS, sides[0][0], keys)
    probes = [
        sql.SQL("LEFT JOIN LATERAL (SELECT * FROM {} tt WHERE {} OFFSET 0) s{} ON true").format(
            _identifier(table),
            sql.SQL(" AND ").join(sql.SQL("tt.{0} = k.{0}").format(sql.Identifier(c)) for c in key),
            sql.SQL(str(i)),
        )
        for i, (table, _, _) in enumerate(sides)
    ]
    found_any = sql.SQL(" OR ").join(
        sql.SQL("s{}.{} IS NOT NULL").format(sql.SQL(str(i)), sql.Identifier(key[0])) for i in range(len(sides))
    )
    source = sql.SQL("{} k {} WHERE {}").format(_ARROW_KEYS, sql.SQL(" ").join(probes), found_any)
    query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv)").format(sql.SQL(", ").join(selected), source)
    data = _copy_out(cur, query)
    cur.execute(sql.SQL("DROP TABLE {}").format(_ARROW_KEYS))
    return _parse_exact(data, types)


AGGREGATED_ROWS = 10_000_000
"""Up to this many rows, a narrow read of every row is one ``array_agg`` per column (far below PostgreSQL's 1 GB
limit on one value for keys); beyond it, one streamed ``COPY``."""


def aggregated_read(
    conn: Connection, query: str | sql.Composable, params: Any, types: dict[str, pa.DataType]
) -> pa.Table | None:
    """The rows of ``query`` (its columns named and typed by ``types``, in order) as one ``array_agg`` per column,
    fetched in binary: a few values instead of one message per row, 3x faster than ``COPY`` for a key column.

    None when the query has more than :data:`AGGREGATED_ROWS` rows, or a value does not convert to its type
    exactly (the caller then streams the rows with ``COPY``).
    """
    names = list(types)
    inner = sql.SQL(query) if isinstance(query, str) else query
    count = sql.SQL("SELECT count(*) FROM ({}) s").format(inner)
    arrays = sql.SQL("SELECT {} FROM ({}) s").format(
        sql.SQL(", ").join(sql.SQL("array_agg(s.{})").format(sql.Identifier(n)) for n in names), inner
    )
    with _driver_errors("aggregated read"), _raw(conn).cursor(binary=True) as cur:
        cur.execute(count, params)
        counted = cur.fetchone()
        if counted is None or counted[0] > AGGREGATED_ROWS:
            return None
        cur.execute(arrays, params)
        row = cur.fetchone()
    assert row is not None
    try:
        columns = [pa.array(values or [], types[n]) for n, values in zip(names, row, strict=True)]
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    return pa.Table.from_arrays(columns, names=names)


def scan_arrow(conn: Connection, table: sa.Table, columns: Sequence[str], schema: pa.Schema) -> pa.Table:
    """``columns`` of every row of ``table``: one :func:`aggregated_read`, else one ``COPY (SELECT ...) TO STDOUT
    (FORMAT csv)`` parsed by Arrow (see ``SqlBackend.scan_arrow``)."""
    selected, types = _selection(table, columns, schema)
    labelled = sql.SQL("SELECT {} FROM {} t").format(
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(e, sql.Identifier(n)) for e, n in zip(selected, columns, strict=True)
        ),
        _identifier(table),
    )
    if not any(pa.types.is_binary(schema.field(n).type) for n in columns):
        found = aggregated_read(conn, labelled, None, types)
        if found is not None:
            return found
    raw = _raw(conn)
    with _driver_errors(f"read from {table.fullname} through COPY"), raw.cursor() as cur:
        if not str(raw.info.parameter_status("DateStyle") or "ISO").startswith("ISO"):
            cur.execute("SET LOCAL DateStyle = 'ISO, MDY'")
        query = sql.SQL("COPY (SELECT {} FROM {} t) TO STDOUT (FORMAT csv)").format(
            sql.SQL(", ").join(selected), _identifier(table)
        )
        data = _copy_out(cur, query)
    return _binary_columns(_parse_exact(data, types), table, columns, schema)


def _selection(
    table: sa.Table, columns: Sequence[str], schema: pa.Schema, *, alias: str = "t"
) -> tuple[list[sql.Composable], dict[str, pa.DataType]]:
    """The select list of ``columns`` of ``alias`` (time zones read as UTC) and the Arrow type each is parsed as."""
    selected: list[sql.Composable] = []
    types: dict[str, pa.DataType] = {}
    for name in columns:
        column_type = table.c[name].type
        wanted = schema.field(name).type
        expression: sql.Composable = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))
        if isinstance(column_type, sa.DateTime) and column_type.timezone:
            expression = sql.SQL("({} AT TIME ZONE 'UTC')").format(expression)
        selected.append(expression)
        # Floating-point values are never taken as decimals; other mismatches are found by parsing.
        float_as_decimal = isinstance(column_type, sa.Float) and pa.types.is_decimal(wanted)
        types[name] = pa.string() if float_as_decimal or pa.types.is_binary(wanted) else wanted
    return selected, types


def _binary_columns(found: pa.Table, table: sa.Table, columns: Sequence[str], schema: pa.Schema) -> pa.Table:
    """``found`` with its ``bytea`` columns decoded from their ``\\x...`` output."""
    for name in columns:
        if pa.types.is_binary(schema.field(name).type) and isinstance(table.c[name].type, sa.LargeBinary):
            index = found.schema.get_field_index(name)
            found = found.set_column(index, name, from_hex_text(found.column(name), 2))
    return found


def _parse_exact(data: bytes | bytearray, types: dict[str, pa.DataType]) -> pa.Table:
    """PostgreSQL CSV as Arrow columns of ``types``, a column that does not parse exactly as text."""
    if not data:
        return pa.table({name: pa.array([], kind) for name, kind in types.items()})
    table, typed = _read_csv(data, types)
    if typed:
        return table
    return pa.Table.from_arrays(
        [exact_from_text(table.column(n), kind) for n, kind in types.items()], names=list(types)
    )


__all__ = [
    "AGGREGATED_ROWS",
    "aggregated_read",
    "binary_copy_data",
    "delete_arrow",
    "insert_arrow",
    "read_arrow",
    "read_arrow_sides",
    "read_csv_batches",
    "scan_arrow",
    "upsert_arrow",
]
