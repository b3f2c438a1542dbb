"""A full read of a sync with a cursor still sets the watermark: the greatest ``(cursor, key...)`` of all
batches, found column-wise, equals the greatest row compared as Python tuples."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.engine.extract import _max_position

T0 = dt.datetime(2026, 1, 1)

CURSORS = {
    "int": (st.integers(-5, 5), pa.int64()),
    "text": (st.sampled_from(["", "a", "B", "é", "ab", "zz", "Ω"]), pa.string()),
    "time": (st.integers(0, 4).map(lambda h: T0 + dt.timedelta(hours=h)), pa.timestamp("us")),
    "decimal": (st.sampled_from([Decimal("1.10"), Decimal("1.20"), Decimal("-3.00")]), pa.decimal128(6, 2)),
}


def _reference(batches: list[list[tuple[Any, ...]]]) -> tuple[Any, ...] | None:
    rows = [row for batch in batches for row in batch if row[0] is not None]
    return max(rows) if rows else None


def _table(rows: list[tuple[Any, ...]], cursor_type: pa.DataType) -> pa.Table:
    return pa.table(
        {
            "updated_at": pa.array([r[0] for r in rows], cursor_type),
            "region": pa.array([r[1] for r in rows], pa.string()),
            "id": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(CURSORS)),
    data=st.data(),
)
def test_the_greatest_position_of_all_batches_matches_python_tuples(kind: str, data: st.DataObject) -> None:
    values, cursor_type = CURSORS[kind]
    row = st.tuples(st.one_of(st.none(), values), st.sampled_from(["eu", "us", "ap"]), st.integers(0, 3))
    batches = data.draw(st.lists(st.lists(row, max_size=12), max_size=4))
    config = SimpleNamespace(cursor="updated_at", source_key=["region", "id"])

    best: tuple[Any, ...] | None = None
    for batch in batches:
        best = _max_position(config, _table(batch, cursor_type), best)  # type: ignore[arg-type]

    assert best == _reference(batches)


def test_a_cursor_arrow_cannot_order_is_compared_row_by_row() -> None:
    config = SimpleNamespace(cursor="updated_at", source_key=["id"])
    table = pa.table({"updated_at": pa.array([[2], [3, 1], None, [3]]), "id": pa.array([1, 2, 3, 4])})

    assert _max_position(config, table, None) == ([3, 1], 2)  # type: ignore[arg-type]
    assert _max_position(config, table, ([4], 0)) == ([4], 0)  # type: ignore[arg-type]
