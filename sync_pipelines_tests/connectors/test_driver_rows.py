"""Rows read straight from SQLite's cursor come out as SQLAlchemy's rows would: the columns a result processor
converts (booleans, Arrow converting a column of integers whole; JSON, value by value) and the columns no
processor converts, checked against SQLAlchemy's own rows of the same stored values."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sync_pipelines.connectors.dialects.driver_rows import (
    collection_paused,
    columns_to_arrow,
    result_processors,
)

_ODD = st.sampled_from(["yes", "", 1.5, -0.0, b"\x00\x01", 2**63 - 1])
COLUMNS: dict[str, tuple[sa.types.TypeEngine[Any], st.SearchStrategy[Any]]] = {
    "boolean": (sa.Boolean(), st.one_of(st.integers(-3, 3), _ODD)),
    "json": (sa.JSON(), st.sampled_from(['{"a": 1}', "[1, 2]", '"text"', "null", "3.5"])),
    "integer": (sa.BigInteger(), st.one_of(st.integers(-(2**63), 2**63 - 1), _ODD)),
    "text": (sa.String(20), st.one_of(st.text(max_size=5), _ODD)),
    "real": (sa.Float(), st.one_of(st.floats(allow_nan=False), st.integers(-5, 5), _ODD)),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    path: Path = tmp_path_factory.mktemp("driver_rows") / "values.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def _read_both(engine: sa.Engine, kind: str, stored: list[Any]) -> tuple[Any, Any, pa.DataType | None]:
    """The column as SQLAlchemy's rows give it (or the error its processor raised) and as
    :func:`columns_to_arrow` gives it from the driver's rows (or its error), with the latter's Arrow type."""
    column = sa.Column("v", COLUMNS[kind][0])
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), column)
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        raw.executemany("INSERT INTO t (id, v) VALUES (?, ?)", list(enumerate(stored)))
    query = sa.select(table.c.v).order_by(table.c.id)
    with engine.connect() as conn:
        try:
            values = tuple(row[0] for row in conn.execute(query).all())
            expected: Any = columns_to_arrow(["v"], [values]).column("v").to_pylist()
        except Exception as exc:  # the processor's own error, which the driver's path must raise too
            expected = type(exc)
        convert = result_processors(conn.dialect, query.selected_columns)
        rows = conn.exec_driver_sql("SELECT v FROM t ORDER BY id").fetchall()
        try:
            column = columns_to_arrow(["v"], [tuple(r[0] for r in rows)], convert).column("v")
        except Exception as exc:
            return expected, type(exc), None
    return expected, column.to_pylist(), column.type


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, list[Any]]:
    kind = draw(st.sampled_from(sorted(COLUMNS)))
    return kind, draw(st.lists(st.one_of(st.none(), COLUMNS[kind][1]), min_size=1, max_size=8))


@settings(max_examples=200, deadline=None)
@given(case=_cases())
@example(case=("boolean", [2, -1, 0, None]))  # any integer but 0 is true
@example(case=("boolean", [None, None]))
@example(case=("boolean", [1, "yes"]))
def test_driver_rows_read_as_sqlalchemy_reads_them(engine: sa.Engine, case: tuple[str, list[Any]]) -> None:
    kind, stored = case
    expected, got, _ = _read_both(engine, kind, stored)
    assert got == expected
    if kind == "boolean" and isinstance(got, list):
        assert all(v is None or type(v) is bool for v in got)


def test_a_column_of_integer_booleans_is_converted_whole(engine: sa.Engine) -> None:
    expected, got, kind = _read_both(engine, "boolean", [1, 0, None, 7])
    assert got == expected == [True, False, None, True]
    assert kind == pa.bool_()


def test_the_collector_waits_for_a_batch_and_resumes_only_if_it_ran() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("a failed fetch")
    assert gc.isenabled()
