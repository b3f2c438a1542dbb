"""Format-3 hashes (connectors/rowhash.py): fixed values for fixed inputs, whatever the library versions, and the
same value from every way a column can reach them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.connectors import rowhash
from sync_pipelines.connectors.rowhash import (
    HASH_VERSION,
    binary_to_digests,
    bytes_hash,
    column_of,
    digests_to_binary,
    field_hashes,
    row_hashes,
)

TYPES = {
    "id": "integer",
    "name": "string",
    "price": "decimal(12,2)",
    "at": "datetime",
    "day": "date",
    "ok": "boolean",
    "ratio": "float",
}
FIELDS = [c for c in TYPES if c != "id"]


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "name": pa.array(["Ada", None]),
            "price": pa.array([Decimal("1.50"), Decimal("-2.25")], pa.decimal128(12, 2)),
            "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None], pa.timestamp("us")),
            "day": pa.array([dt.date(2024, 2, 29), dt.date(1970, 1, 1)]),
            "ok": pa.array([True, False]),
            "ratio": pa.array([1.5, -0.0]),
        }
    )


def test_hashes_are_the_documented_format_3_values() -> None:
    """Stored baselines must keep their meaning: these values may only change with HASH_VERSION."""
    assert HASH_VERSION == 3
    assert row_hashes(_table(), TYPES, FIELDS).tolist() == [-483430864201224406, 1051887724182994852]
    assert field_hashes(pa.array(["Ada", "a" * 300]), "name", "string").tolist() == [
        5548579583723217344,
        14321123404600214656,
    ]


def test_the_order_of_columns_and_the_arrow_layout_do_not_change_a_hash() -> None:
    table = _table()
    reordered = table.select(list(reversed(table.column_names)))
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    expected = row_hashes(table, TYPES, FIELDS)
    assert row_hashes(reordered, TYPES, FIELDS).tolist() == expected.tolist()
    assert row_hashes(chunked, TYPES, FIELDS).tolist() == expected.tolist()
    assert row_hashes(table.slice(1), TYPES, FIELDS).tolist() == expected[1:].tolist()


def test_values_read_back_in_other_forms_hash_as_their_declared_type() -> None:
    """A driver's 0/1 for a boolean, text from SQLite, an aware timestamp: the same field hashes."""
    assert field_hashes(column_of(pa.array([1, 0, None]), "boolean").typed, "ok", "boolean").tolist() == (
        field_hashes(pa.array([True, False, None]), "ok", "boolean").tolist()
    )
    aware = pa.array([dt.datetime(2024, 1, 2, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))], pa.timestamp("us", "UTC"))
    naive = pa.array([dt.datetime(2024, 1, 2, 3)], pa.timestamp("us"))
    assert (
        column_of(aware, "datetime").hashes("at", "datetime").tolist() == field_hashes(naive, "at", "datetime").tolist()
    )
    text = column_of(pa.array(["1.5", "abc", None]), "decimal(12,2)")
    assert text.text is not None and text.text.to_pylist() == [None, "abc", None]
    hashes = text.hashes("price", "decimal(12,2)")
    proper = field_hashes(pa.array([Decimal("1.50"), None, None], pa.decimal128(12, 2)), "price", "decimal(12,2)")
    assert hashes[0] == proper[0] and hashes[2] == proper[2]
    assert hashes[1] != proper[1]  # a text that is no number differs from every number, and from NULL


@pytest.mark.parametrize("field", FIELDS)
def test_a_column_of_nulls_hashes_as_the_nulls_of_a_column_with_values(field: str) -> None:
    """A column of NULLs (a batch with no target row) is hashed once for all rows: the same hashes."""
    values = _table().column(field).combine_chunks()
    nulls = pa.nulls(3, values.type)
    mixed = field_hashes(pa.concat_arrays([nulls, values]), field, TYPES[field])
    alone = field_hashes(nulls, field, TYPES[field])
    assert alone.tolist() == mixed[:3].tolist()
    assert mixed[3] != mixed[0]


def test_a_null_an_empty_string_and_a_trailing_zero_byte_hash_apart() -> None:
    hashes = field_hashes(pa.array([None, "", "\x00", "a", "a\x00"]), "name", "string").tolist()
    assert len(set(hashes)) == 5


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=40),
            st.binary(max_size=70).map(lambda b: b.hex()),
            st.text(min_size=250, max_size=400),
        ),
        max_size=30,
    )
)
def test_short_and_long_strings_hash_the_same_by_either_strategy(values: list[str | None]) -> None:
    """Word positions taken column-wise (short strings) or all words flat (long ones) are one function."""
    array = pa.array(values, pa.string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[: len(array) + 1].astype(np.int64)
    data = (
        np.frombuffer(array.buffers()[2], dtype=np.uint8) if array.buffers()[2] is not None else np.zeros(0, np.uint8)
    )
    lengths = np.where(np.asarray(array.is_valid()), np.diff(offsets), 0)
    nwords = (lengths + 7) // 8
    flat = rowhash._word_sums_flat(data, offsets[:-1], lengths, nwords)
    by_column = rowhash._word_sums_by_column(data, offsets[:-1], lengths, nwords, int(nwords.max()) if values else 0)
    assert flat.tolist() == by_column.tolist()
    whole = bytes_hash(array).tolist()
    for at in range(min(len(values), 3)):  # a slice's values start anywhere in the data, past its offsets
        assert bytes_hash(array.slice(at)).tolist() == whole[at:]
        assert bytes_hash(pa.array(values[at:], pa.string())).tolist() == whole[at:]


@pytest.mark.parametrize("fields", [0, 1, 8])
def test_field_digests_round_trip_through_their_binary_form(fields: int) -> None:
    digests = np.arange(3 * fields, dtype=np.uint16).reshape(3, fields)
    back, valid = binary_to_digests(digests_to_binary(digests), fields)
    assert back.tolist() == digests.tolist()
    assert valid.tolist() == [True, True, True] or fields == 0


_PAIR_VALUES = {
    "name": st.one_of(st.none(), st.sampled_from(["", "a", "Ada", "x" * 300]), st.text(max_size=12)),
    "price": st.one_of(st.none(), st.decimals(min_value=-999, max_value=999, places=2, allow_nan=False)),
    "ratio": st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.5, float("nan"), float("inf")]), st.floats()),
    "ok": st.one_of(st.none(), st.booleans()),
    "text_price": st.one_of(st.none(), st.sampled_from(["1.50", "abc", "2"])),  # "abc" keeps its text
}
_PAIR_TYPES = {
    "name": "string",
    "price": "decimal(12,2)",
    "ratio": "float",
    "ok": "boolean",
    "text_price": "decimal(12,2)",
}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data(), n=st.integers(0, 8))
def test_hashes_reused_from_equal_values_are_the_hashes_of_the_values(data: st.DataObject, n: int) -> None:
    """Target hashes copied from the source's where the values are equal (-0.0 and 0.0, NULL and NULL) are what
    hashing the target's values gives; NaN, unequal values and values kept as text are hashed."""
    source: dict[str, list[object]] = {
        f: data.draw(st.lists(s, min_size=n, max_size=n)) for f, s in _PAIR_VALUES.items()
    }
    target = {
        f: [v if data.draw(st.booleans()) else data.draw(_PAIR_VALUES[f]) for v in values]
        for f, values in source.items()
    }

    def columns(values: dict[str, list[object]]) -> dict[str, rowhash.Column]:
        return {
            f: column_of(pa.array(v, pa.string() if f == "text_price" else None), _PAIR_TYPES[f])
            for f, v in values.items()
        }

    src, tgt = columns(source), columns(target)
    known = rowhash.FieldHashes(src, _PAIR_TYPES, n)
    reused = rowhash.FieldHashes.reusing(tgt, _PAIR_TYPES, known, src)
    assert reused.fields == known.fields
    assert np.array_equal(reused.matrix, rowhash.FieldHashes(tgt, _PAIR_TYPES, n).matrix)
