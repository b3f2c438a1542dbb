"""A full read comes in key order, so a key repeated across batches meets the previous batch's last key:
compared column-wise by Arrow, it is found exactly where the comparison of Python tuples finds it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.engine.transform import _DuplicateTracker, _keys_unique
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import ORDERS_T0, make_source, order, orders_config, run, target_rows
from sync_pipelines_tests.support.databases import Databases

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


INCREMENTAL_KEYS = {
    "integer": (st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1)), pa.int64(), "integer"),
    "text": (st.sampled_from(["a", "A", "b", "é", "", "a "]), pa.string(), "string"),
    "decimal": (
        st.sampled_from([Decimal("1.50"), Decimal("-1.00"), Decimal("2.25")]),
        pa.decimal128(6, 2),
        "decimal(6,2)",
    ),
}


@settings(max_examples=300, deadline=None)
@given(kinds=st.lists(st.sampled_from(sorted(INCREMENTAL_KEYS)), min_size=1, max_size=2), data=st.data())
def test_keys_seen_in_earlier_batches_of_an_incremental_read_are_found_as_a_set_finds_them(
    kinds: list[str], data: st.DataObject
) -> None:
    # An incremental read comes in cursor order: a key may come back in any later batch.
    names = [f"k{i}" for i in range(len(kinds))]
    types = {n: INCREMENTAL_KEYS[k][2] for n, k in zip(names, kinds, strict=True)}
    key = st.tuples(*[INCREMENTAL_KEYS[k][0] for k in kinds])
    tracker, seen = _DuplicateTracker(ordered_by_key=False), set()
    for batch in data.draw(st.lists(st.lists(key, max_size=8, unique=True), max_size=8)):
        columns = {
            n: pa.array([row[i] for row in batch], INCREMENTAL_KEYS[k][1])
            for i, (n, k) in enumerate(zip(names, kinds, strict=True))
        }
        assert tracker.seen_before(columns, types) == [i for i, row in enumerate(batch) if row in seen]
        seen.update(batch)


def test_integer_keys_whose_python_hashes_collide_are_told_apart() -> None:
    # hash(-1) == hash(-2) in CPython, and so do the hashes of (-1,) and (-2,): the keys themselves are compared.
    tracker = _DuplicateTracker(ordered_by_key=False)
    assert tracker.seen_before({"id": pa.array([-1, 7], pa.int64())}, {"id": "integer"}) == []
    assert tracker.seen_before({"id": pa.array([-2, 5], pa.int64())}, {"id": "integer"}) == []
    assert tracker.seen_before({"id": pa.array([5, -1, 8], pa.int64())}, {"id": "integer"}) == [0, 1]
    pair = {"id": pa.array([-1], pa.int64()), "part": pa.array(["x"])}
    assert tracker.seen_before(pair, {"id": "integer", "part": "string"}) == []
    pair = {"id": pa.array([-2], pa.int64()), "part": pa.array(["x"])}
    assert tracker.seen_before(pair, {"id": "integer", "part": "string"}) == []


def test_many_batches_keep_few_sorted_runs() -> None:
    # 200 batches of 500 keys: each word merged about log2(batches) times, looked up in a few runs.
    tracker = _DuplicateTracker(ordered_by_key=False)
    for start in range(0, 100_000, 500):
        assert tracker.seen_before({"id": pa.array(range(start, start + 500), pa.int64())}, {"id": "integer"}) == []
    assert len(tracker._runs) <= 10
    assert sum(len(run) for run in tracker._runs) == 100_000
    assert tracker.seen_before({"id": pa.array([99_999, 100_000, 0], pa.int64())}, {"id": "integer"}) == [0, 2]


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


@pytest.mark.slow
def test_an_incremental_run_keeps_keys_whose_python_hashes_collide(dbs: Databases) -> None:
    # Keys -1 and -2 in different batches of one incremental run (batches of 7, in cursor order).
    rows = [order(-1, updated_at=ORDERS_T0)]
    rows += [order(i, updated_at=ORDERS_T0 + dt.timedelta(minutes=i)) for i in range(1, 11)]
    rows += [order(-2, updated_at=ORDERS_T0 + dt.timedelta(minutes=30))]
    make_source(dbs, rows)
    result = run(orders_config(dbs), "run-1")
    assert result.status is RunStatus.COMPLETED
    assert (result.counts.created, result.counts.failed) == (12, 0)
    assert {-1, -2} <= set(target_rows(dbs))
