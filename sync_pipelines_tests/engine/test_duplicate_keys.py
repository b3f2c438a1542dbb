"""A full read comes in key order, so a key repeated across batches meets the previous batch's last key:
compared column-wise by Arrow, it is found exactly where the comparison of Python tuples finds it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.engine.transform import _DuplicateTracker, _keys_unique

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

KEYS = {
    "integer": (st.integers(0, 6), pa.int64()),
    "text": (st.sampled_from(["a", "A", "b", "é", "z"]), pa.string()),
    "instant": (st.integers(0, 4).map(lambda h: T0 + dt.timedelta(hours=h)), pa.timestamp("us", tz="UTC")),
    "decimal": (st.sampled_from([Decimal("1.50"), Decimal("2.00"), Decimal("-1.00")]), pa.decimal128(6, 2)),
}


@settings(max_examples=200, deadline=None)
@given(kinds=st.lists(st.sampled_from(sorted(KEYS)), min_size=1, max_size=2), data=st.data())
def test_keys_repeated_across_key_ordered_batches_are_found_as_tuples_find_them(
    kinds: list[str], data: st.DataObject
) -> None:
    key = st.tuples(*[KEYS[k][0] for k in kinds])
    rows = sorted(set(data.draw(st.lists(key, max_size=20))))
    repeated = data.draw(st.lists(st.sampled_from(rows), max_size=4)) if rows else []
    rows = sorted(rows + repeated)  # the read's order, equal keys side by side
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=4)))
    batches = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    batches = [b for b in batches if b and len(set(b)) == len(b)]  # the column-wise path takes unique batches

    by_columns, by_tuples = _DuplicateTracker(ordered_by_key=True), _DuplicateTracker(ordered_by_key=True)
    for batch in batches:
        columns = [pa.array([r[i] for r in batch], KEYS[k][1]) for i, k in enumerate(kinds)]
        found = by_columns.earlier_in_columns(columns)
        assert found is not None
        assert set(found) == by_tuples.earlier(batch)
        assert by_columns.last_key == by_tuples.last_key


def test_a_batch_that_begins_with_the_last_key_of_the_one_before_is_flagged_there() -> None:
    tracker = _DuplicateTracker(ordered_by_key=True)
    assert tracker.earlier_in_columns([pa.array([1, 2, 5]), pa.array(["x", "y", "z"])]) == []
    assert tracker.earlier_in_columns([pa.array([5, 6]), pa.array(["z", "a"])]) == [0]
    assert tracker.earlier_in_columns([pa.array([6, 7]), pa.array(["b", "a"])]) == []  # another second part


def test_an_incremental_read_is_left_to_the_hashes_of_its_keys() -> None:
    tracker: Any = _DuplicateTracker(ordered_by_key=False)
    assert tracker.earlier_in_columns([pa.array([1, 2])]) is None
    assert tracker.earlier([(1,), (2,)]) == set()
    assert tracker.earlier([(2,), (3,)]) == {0}


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 3)), max_size=12),
    ascending=st.booleans(),
    null=st.booleans(),
)
def test_a_batch_has_unique_keys_exactly_when_no_key_repeats_or_is_null(
    values: list[int], ascending: bool, null: bool
) -> None:
    # Ascending integer keys (a full read) are told unique in one pass; any other order counts them.
    keys: list[int | None] = [*sorted(values)] if ascending else [*values]
    if null and keys:
        keys[len(keys) // 2] = None
    expected = None not in keys and len(set(keys)) == len(keys)
    assert _keys_unique({"id": pa.array(keys, pa.int64())}, ["id"]) is expected
    pair = {"id": pa.array(keys, pa.int64()), "part": pa.array([1] * len(keys), pa.int64())}
    assert _keys_unique(pair, ["id", "part"]) is expected
