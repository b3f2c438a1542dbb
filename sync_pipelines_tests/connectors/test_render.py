"""Whole columns rendered as JSON text read exactly as the values rendered one by one (``values.dumps``)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sync_pipelines.connectors.render import json_objects, json_values
from sync_pipelines.connectors.values import dumps

DATETIMES = st.one_of(
    st.none(),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.datetimes().map(lambda d: d.replace(microsecond=0)),  # whole seconds: no fraction
)


@settings(max_examples=300, deadline=None)
@example(values=[dt.datetime(1, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59), dt.datetime(1969, 12, 31, 23, 59, 59, 1)])
@example(values=[dt.datetime(999, 12, 31, 0, 0, 0, 100000), None, dt.datetime(9999, 12, 31, 23, 59, 59, 999999)])
@given(values=st.lists(DATETIMES, max_size=20))
def test_datetimes_render_as_their_isoformat(values: list[dt.datetime | None]) -> None:
    rendered = json_values(pa.array(values, pa.timestamp("us"))).to_pylist()
    assert rendered == [None if v is None else dumps(v) for v in values]


def test_objects_of_rows_whose_values_are_all_null_stay_in_place() -> None:
    a = pa.array([None, "1", None, None], pa.string())
    b = pa.array([None, None, '"x"', None], pa.string())
    assert json_objects(["a", "b"], [a, b], 4).to_pylist() == ["{}", '{"a":1}', '{"b":"x"}', "{}"]
    assert json_objects(["a"], [pa.nulls(2, pa.string())], 2).to_pylist() == ["{}", "{}"]
