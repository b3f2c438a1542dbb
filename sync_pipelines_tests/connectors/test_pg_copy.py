"""The COPY helpers used on PostgreSQL targets, against the real server: same results as row-by-row writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

from sync_pipelines.connectors import pg_binary, pg_copy, pg_reads
from sync_pipelines.connectors.baselines import baseline_schema, baselines_table
from sync_pipelines.connectors.dialects.arrow_values import dense_range
from sync_pipelines_tests.support.databases import Databases, make_databases


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases("postgresql", tmp_path)


def _orders(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("note", sa.Text),
        sa.Column("at", sa.DateTime),
    )


def test_copy_commits_and_rolls_back_with_the_transaction(pg: Databases) -> None:
    engine = pg.target()
    table = _orders(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        pg_copy.insert_arrow(conn, table, pa.table({"id": [1], "note": ["x"]}))
        raise RuntimeError("the batch failed after the copy")
    with engine.begin() as conn:
        pg_copy.insert_arrow(conn, table, pa.table({"id": [2], "note": ["y"]}))
    with engine.connect() as conn:
        assert conn.execute(sa.select(table.c.id)).scalars().all() == [2]


def test_driver_errors_surface_as_sqlalchemy_errors(pg: Databases) -> None:
    engine = pg.target()
    table = _orders(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        pg_copy.insert_arrow(conn, table, pa.table({"id": [1, 1], "note": ["a", "b"]}))
    with pytest.raises(sa.exc.DataError), engine.begin() as conn:
        pg_copy.upsert_arrow(conn, table, pa.table({"id": [3], "price": ["not a number"]}), ["id"])


ROWS: list[dict[str, Any]] = [
    {
        "code": 'quote " back \\ tab \t nl \n ctl \x01 é 中 \u2028',
        "n": -(2**62),
        "amount": Decimal("-1234567890.05"),
        "at": dt.datetime(2024, 2, 29, 23, 59, 59, 1),
        "day": dt.date(99, 1, 2),
        "flag": True,
        "note": "",
    },
    {
        "code": "plain",
        "n": 0,
        "amount": Decimal("0.00"),
        "at": dt.datetime(1999, 12, 31),
        "day": dt.date(2024, 1, 1),
        "flag": False,
        "note": None,
    },
    {"code": "nulls", "n": None, "amount": None, "at": None, "day": None, "flag": None, "note": "x" * 300},
]


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "things",
        metadata,
        sa.Column("code", sa.String(100), primary_key=True),
        sa.Column("n", sa.BigInteger),
        sa.Column("amount", sa.Numeric(14, 2)),
        sa.Column("at", sa.DateTime),
        sa.Column("day", sa.Date),
        sa.Column("flag", sa.Boolean),
        sa.Column("note", sa.Text),
    )


def test_csv_reads_give_the_values_row_reads_give(pg: Databases) -> None:
    engine = pg.source()
    table = _table(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), ROWS)
    types = {
        "code": pa.string(),
        "n": pa.int64(),
        "amount": pa.decimal128(14, 2),
        "at": pa.timestamp("us"),
        "day": pa.date32(),
        "flag": pa.bool_(),
        "note": pa.string(),
    }
    with engine.connect() as conn:
        query = sa.select(table).where(table.c.code.in_(["plain", "nulls", ROWS[0]["code"]])).order_by(table.c.code)
        batches = list(pg_reads.read_csv_batches(conn, query, types, batch_size=2))
        expected = [dict(r) for r in conn.execute(query).mappings()]
    assert [b.num_rows for b in batches] == [2, 1]
    assert [row for b in batches for row in b.to_pylist()] == expected
    engine.dispose()


def _narrow(metadata: sa.MetaData) -> sa.Table:
    """A table shaped like the baselines: integers of each width, texts and byte strings, nullable."""
    return sa.Table(
        "narrow",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("code", sa.String(40)),
        sa.Column("i4", sa.Integer),
        sa.Column("i2", sa.SmallInteger),
        sa.Column("note", sa.Text),
        sa.Column("fields", sa.LargeBinary, nullable=False),
        sa.Column("other", sa.LargeBinary),
    )


def test_binary_copy_writes_integers_texts_and_bytes_exactly(pg: Databases) -> None:
    every_byte = bytes(range(256))
    rows = pa.table(
        {
            "id": pa.array([-(2**63), 0, 2**63 - 1, 7, 8], pa.int64()),
            "code": ["plain", "", None, "Zoë 北京 \t\n\\,\"'", "x" * 40],
            "i4": pa.array([-(2**31), None, 2**31 - 1, 0, 1], pa.int32()),
            "i2": pa.array([-(2**15), 2**15 - 1, None, 3, 0], pa.int16()),
            "note": [None, "NULL", "\\N", "", "a" * 10_000],
            "fields": [b"", every_byte, b"\x00\x01", b"\\x00", b"\xff" * 18],
            "other": [None, b"", every_byte[::-1], None, b"z"],
        }
    )
    # Chunked and sliced columns (offsets not at zero) are laid out like whole ones.
    rows = pa.concat_tables([rows.slice(0, 2), rows.slice(2)])
    table = _narrow(sa.MetaData())
    engine = pg.target()
    try:
        with engine.begin() as conn:
            table.create(conn)
        assert pg_copy.binary_copy_data(table, rows) is not None  # this table takes the binary path
        with engine.begin() as conn:
            pg_copy.insert_arrow(conn, table, rows.slice(1))
            pg_copy.upsert_arrow(conn, table, rows.slice(0, 2), ["id"])
        with engine.connect() as conn:
            back = [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]
    finally:
        engine.dispose()
    expected = sorted(zip(*(rows.column(c).to_pylist() for c in rows.column_names), strict=True))
    assert back == expected


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_rows_of_one_width_are_laid_out_as_the_value_by_value_path_lays_them_out(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 6))
    width = data.draw(st.integers(0, 4))
    never, always = st.just(False), st.just(True)

    def column(kind: pa.DataType, value: st.SearchStrategy[Any]) -> pa.Array:
        # Mostly one width throughout (all set, or all NULL), sometimes not: then both paths must still agree.
        shape = data.draw(st.sampled_from(["set", "null", "mixed"]))
        nulls = [data.draw(never if shape == "set" else always if shape == "null" else st.booleans()) for _ in range(n)]
        return pa.array([None if null else data.draw(value) for null in nulls], kind)

    rows = pa.table(
        {
            "id": column(pa.int64(), st.integers(-(2**63), 2**63 - 1)),
            "code": column(pa.string(), st.text(alphabet="ab€", min_size=width, max_size=width)),
            "i4": column(pa.int32(), st.integers(-(2**31), 2**31 - 1)),
            "i2": column(pa.int16(), st.integers(-(2**15), 2**15 - 1)),
            "fields": column(pa.binary(), st.binary(min_size=width, max_size=width)),
            "other": column(pa.binary(), st.binary(max_size=3)),
        }
    )
    if n > 1:
        rows = pa.concat_tables([rows.slice(0, 1), rows.slice(1)])  # chunked, with offsets not at zero
    table = _narrow(sa.MetaData())
    laid_out = pg_copy.binary_copy_data(table, rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pg_binary, "_fixed_width", lambda n, columns: None)
        value_by_value = pg_copy.binary_copy_data(table, rows)
    assert laid_out is not None and laid_out == value_by_value


def test_rows_of_one_width_reach_the_server_exactly(pg: Databases) -> None:
    digests = [bytes([i]) * 18 for i in range(3)]
    rows = pa.table(
        {
            "id": pa.array([-(2**63), 0, 2**63 - 1], pa.int64()),
            "i4": pa.array([None, None, None], pa.int32()),
            "i2": pa.array([1, -1, 2**15 - 1], pa.int16()),
            "note": ["", "", ""],
            "fields": digests,
            "other": pa.array([None, None, None], pa.binary()),
        }
    )
    table = _narrow(sa.MetaData())
    taken: list[bool] = []
    real = pg_binary._fixed_width

    def spy(n: int, columns: Any) -> bytes | None:
        out = real(n, columns)
        taken.append(out is not None)
        return out

    engine = pg.target()
    try:
        with engine.begin() as conn, pytest.MonkeyPatch.context() as patch:
            patch.setattr(pg_binary, "_fixed_width", spy)
            table.create(conn)
            pg_copy.insert_arrow(conn, table, rows)
        with engine.connect() as conn:
            back = [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]
    finally:
        engine.dispose()
    assert taken == [True]  # one width: the structured layout wrote them
    assert back == [
        (r[0], None, None, r[1], r[2], r[3], None)
        for r in zip(rows["id"].to_pylist(), rows["i2"].to_pylist(), rows["note"].to_pylist(), digests, strict=True)
    ]


def _typed(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ok", sa.Boolean),
        sa.Column("ratio", postgresql.DOUBLE_PRECISION),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("big", sa.Numeric(18, 4)),
        sa.Column("small", sa.Numeric(7, 5)),
        sa.Column("whole", sa.Numeric(5, 0)),
        sa.Column("at", sa.DateTime),
        sa.Column("instant", sa.DateTime(timezone=True)),
        sa.Column("day", sa.Date),
    )


def _decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal | None]:
    bound = Decimal(10) ** (precision - scale) - Decimal(10) ** -scale
    return st.one_of(st.none(), st.decimals(-bound, bound, places=scale, allow_nan=False, allow_infinity=False))


DATETIMES = st.one_of(
    st.none(),
    st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.sampled_from([dt.datetime(2000, 1, 1), dt.datetime(1999, 12, 31, 23, 59, 59, 999999)]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_binary_copy_of_booleans_floats_decimals_dates_and_timestamps_stores_what_csv_stores(
    pg: Databases, data: st.DataObject
) -> None:
    """The target rows' types in their binary forms, written beside the same rows as CSV: the server stores the
    same values (NULLs, negative and zero decimals, dates before 2000 and 1970, the last microsecond of a day)."""
    n = data.draw(st.integers(1, 8))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return [data.draw(values) for _ in range(n)]

    rows = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "ok": pa.array(column(st.one_of(st.none(), st.booleans())), pa.bool_()),
            "ratio": pa.array(column(st.one_of(st.none(), st.floats(width=64))), pa.float64()),
            "price": pa.array(column(_decimals(12, 2)), pa.decimal128(12, 2)),
            "big": pa.array(column(_decimals(18, 4)), pa.decimal128(18, 4)),
            "small": pa.array(column(_decimals(7, 5)), pa.decimal128(7, 5)),
            "whole": pa.array(column(_decimals(5, 0)), pa.decimal128(5, 0)),
            "at": pa.array(column(DATETIMES), pa.timestamp("us")),
            "instant": pa.array(column(DATETIMES), pa.timestamp("us", tz="UTC")),
            "day": pa.array(column(st.one_of(st.none(), st.dates())), pa.date32()),
        }
    )
    metadata = sa.MetaData()
    binary, text = _typed(metadata, "typed_binary"), _typed(metadata, "typed_csv")
    assert pg_copy.binary_copy_data(binary, rows) is not None
    engine = pg.target()
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            metadata.create_all(conn)
            pg_copy.insert_arrow(conn, binary, rows)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(pg_copy, "binary_copy_data", lambda table, rows: None)
                pg_copy.insert_arrow(conn, text, rows)
        with engine.connect() as conn:
            by_binary = conn.execute(sa.select(binary).order_by(binary.c.id)).all()
            by_csv = conn.execute(sa.select(text).order_by(text.c.id)).all()
    finally:
        engine.dispose()
    assert len(by_binary) == n
    assert [_comparable(r) for r in by_binary] == [_comparable(r) for r in by_csv]


def _comparable(row: Any) -> tuple[Any, ...]:
    return tuple("nan" if isinstance(v, float) and v != v else v for v in row)


def test_binary_copy_answers_none_for_columns_it_does_not_encode() -> None:
    table = _orders(sa.MetaData())
    assert pg_copy.binary_copy_data(table, pa.table({"id": [1], "price": [1.5]})) is None  # a float to a numeric
    assert pg_copy.binary_copy_data(table, pa.table({"id": [1], "at": pa.array([0], pa.timestamp("ns"))})) is None
    wide = sa.Table("wide", sa.MetaData(), sa.Column("x", sa.Numeric(18, 1)), sa.Column("r", sa.REAL))
    # 18 digits with a scale of 1 take 21 once the scale is whole base-10000 digits: beyond an int64.
    assert pg_copy.binary_copy_data(wide, pa.table({"x": pa.array([Decimal("1.0")], pa.decimal128(18, 1))})) is None
    assert pg_copy.binary_copy_data(wide, pa.table({"r": [1.5]})) is None  # real: the server rounds its text
    narrow = _narrow(sa.MetaData())
    assert pg_copy.binary_copy_data(narrow, pa.table({"id": [1], "code": pa.array([1], pa.int64())})) is None
    assert pg_copy.binary_copy_data(narrow, pa.table({"id": [1], "fields": ["text, not bytes"]})) is None
    assert pg_copy.binary_copy_data(narrow, pa.table({"id": ["1"]})) is None
    # A value beyond the column's width is never wrapped around: the CSV path lets the server refuse it.
    assert pg_copy.binary_copy_data(narrow, pa.table({"id": [1], "i2": pa.array([40_000], pa.int32())})) is None
    assert pg_copy.binary_copy_data(narrow, pa.table({"id": pa.array([2**64 - 1], pa.uint64())})) is None


def _varying(conn: sa.Connection, table: sa.Table) -> tuple[str, int, str, str]:
    """How :data:`pg_reads._VARYING_LAYOUTS` names ``table`` on ``conn``'s server."""
    info = conn.connection.driver_connection.info  # type: ignore[union-attr]
    return (info.host, info.port, info.dbname, table.fullname)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(0, 40),
    width=st.integers(0, 12),
    target_sides=st.sampled_from(["none", "all", "some"]),
    widths_vary=st.booleans(),
    data=st.data(),
)
def test_range_reads_of_integers_and_bytes_in_binary_give_what_csv_gives(
    pg: Databases, count: int, width: int, target_sides: str, widths_vary: bool, data: st.DataObject
) -> None:
    # Rows of one layout are parsed from COPY's binary form by numpy; rows of several (a target side set in
    # some rows only, digests of two widths) make the table's later reads CSV: both give the CSV path's rows.
    engine = pg.target()
    table = baselines_table(sa.MetaData(), "binary_reads", [("id", sa.BigInteger())])
    schema = baseline_schema({"id": pa.int64()})
    big = st.integers(-(2**63), 2**63 - 1)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        set_target = target_sides == "all" or (target_sides == "some" and i % 3 == 0)
        f_width = width + (i % 2 if widths_vary else 0)
        rows.append(
            {
                "id": i + 1,
                "source_hash": data.draw(big),
                "target_hash": data.draw(big) if set_target else None,
                "fields": data.draw(st.binary(min_size=f_width, max_size=f_width)),
                "target_fields": data.draw(st.binary(min_size=width, max_size=width)) if set_target else None,
                "version": data.draw(st.integers(-(2**15), 2**15 - 1)),
            }
        )
    with engine.begin() as conn:
        varying = _varying(conn, table)
        table.drop(conn, checkfirst=True)
        table.create(conn)
        if rows:
            conn.execute(sa.insert(table), rows)
    # One dense ascending range (a full read's batch): rows of the range not asked for, and keys asked for with
    # no row.
    asked = [r["id"] for r in rows if r["id"] % 4] + [count + 1, count + 2]
    keys = pa.table({"id": pa.array(sorted(set(asked)), pa.int64())})
    assert dense_range(keys) is not None
    try:
        side = (table, schema.names, schema)
        with engine.connect() as conn:
            pg_reads._VARYING_LAYOUTS.discard(varying)
            binary = pg_reads.read_arrow_sides(conn, [side], keys)[0]
            refused = varying in pg_reads._VARYING_LAYOUTS
            pg_reads._VARYING_LAYOUTS.add(varying)  # the CSV path, for comparison
            csv = pg_reads.read_arrow_sides(conn, [side], keys)[0]
    finally:
        pg_reads._VARYING_LAYOUTS.discard(varying)
        engine.dispose()
    expected = sorted((r for r in rows if r["id"] in set(keys.column("id").to_pylist())), key=lambda r: r["id"])
    low, high = min(keys.column("id").to_pylist()), max(keys.column("id").to_pylist())
    read = [r for r in rows if low <= r["id"] <= high]
    layouts = {
        (r["target_hash"] is None, len(r["fields"]), -1 if r["target_fields"] is None else len(r["target_fields"]))
        for r in read
    }
    assert refused == (len(layouts) > 1)  # one layout is parsed from binary, several are refused
    assert csv.sort_by("id").to_pylist() == expected
    assert binary.schema == csv.schema
    assert binary.sort_by("id").to_pylist() == expected


def test_a_binary_read_of_rows_in_several_layouts_is_refused_and_one_layout_is_taken() -> None:
    def row(*fields: bytes | None) -> bytes:
        out = len(fields).to_bytes(2, "big")
        for field in fields:
            out += (-1).to_bytes(4, "big", signed=True) if field is None else len(field).to_bytes(4, "big") + field
        return out

    one = (7).to_bytes(8, "big")
    kinds = [pa.int64(), pa.binary()]
    same = pg_binary.HEADER + row(one, b"ab") + row(one, b"cd") + pg_binary.TRAILER
    assert pg_binary.read_fixed(same, kinds) == [pa.array([7, 7], pa.int64()), pa.array([b"ab", b"cd"])]
    nulls = pg_binary.HEADER + row(one, None) + row(one, None) + pg_binary.TRAILER
    assert pg_binary.read_fixed(nulls, kinds) == [pa.array([7, 7], pa.int64()), pa.nulls(2, pa.binary())]
    for mixed in (row(one, b"ab") + row(one, None), row(one, b"ab") + row(one, b"c") + row(one, b"")):
        assert pg_binary.read_fixed(pg_binary.HEADER + mixed + pg_binary.TRAILER, kinds) is None
    assert pg_binary.read_fixed(pg_binary.HEADER + row(one) + pg_binary.TRAILER, kinds) is None  # too few fields
    assert pg_binary.read_fixed(pg_binary.HEADER + row(b"\x01\x02\x03", b"") + pg_binary.TRAILER, kinds) is None
    assert pg_binary.read_fixed(b"not binary copy", kinds) is None
    assert pg_binary.read_fixed(pg_binary.HEADER + pg_binary.TRAILER, kinds) == [
        pa.array([], pa.int64()),
        pa.array([], pa.binary()),
    ]
