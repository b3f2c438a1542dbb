"""Decimals read back as the integers and floats SQLite keeps them as: taken column-wise exactly when each
float's shortest decimal form fits the wanted scale and precision, as the value-by-value reading takes them,
and as text (for the caller to normalise) when one does not."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sync_pipelines.connectors.dialects import arrow_values
from sync_pipelines.connectors.dialects.arrow_values import exact_array, text_array


def _value_by_value(values: list[Any], wanted: pa.Decimal128Type) -> pa.Array:
    """What reading took before the column-wise path: each value through ``_as_decimal``, else all as text."""
    try:
        return pa.array([arrow_values._as_decimal(v, wanted) for v in values], wanted)
    except (arrow_values._Inexact, *arrow_values._INEXACT, ArithmeticError):
        return text_array(values)


NUMBERS = st.one_of(
    st.none(),
    st.integers(-(10**20), 10**20),
    st.builds(round, st.floats(-1e17, 1e17), st.integers(0, 14)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.0001, 1e-5, 5e-324, 1e16, 1e20, 9999999999999998.0, 0.1, 12.345]),
)


@settings(max_examples=400, deadline=None)
@example(values=[5e-324], precision=11, scale=4)  # rounds to 0 at that scale: not exact
@example(values=[1e20], precision=37, scale=8)  # exponent notation
@example(values=[-75092186529981.4, None], precision=19, scale=2)  # 16 digits: still exact
@example(values=[24274781454.278572], precision=20, scale=5)  # one decimal too many
@given(
    values=st.lists(NUMBERS, max_size=8),
    precision=st.integers(1, 38),
    scale=st.integers(0, 12),
)
def test_integers_and_floats_become_the_decimals_the_value_by_value_path_makes(
    values: list[Any], precision: int, scale: int
) -> None:
    wanted = pa.decimal128(precision, min(scale, precision))

    assert exact_array(values, wanted).equals(_value_by_value(values, wanted))


def test_sqlite_reals_of_a_price_column_read_back_as_their_decimals() -> None:
    stored = [12.34, 12, 0.1, None, 9999999999.99, -0.5]  # NUMERIC affinity: REAL, or INTEGER when whole

    read = exact_array(stored, pa.decimal128(12, 2))

    assert read.type == pa.decimal128(12, 2)
    assert read.to_pylist() == [
        Decimal("12.34"),
        Decimal("12.00"),
        Decimal("0.10"),
        None,
        Decimal("9999999999.99"),
        Decimal("-0.50"),
    ]


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ([1.005, 2.0], "more decimals than the scale"),
        ([1e11], "more digits than the precision"),
        ([float("nan")], "not a number"),
    ],
)
def test_a_value_the_decimal_type_cannot_hold_leaves_the_column_as_text(stored: list[Any], why: str) -> None:
    read = exact_array(stored, pa.decimal128(12, 2))

    assert read.type == pa.string(), why
    assert read.to_pylist() == [repr(v) if isinstance(v, float) else str(v) for v in stored]


HEX_TEXTS = st.one_of(
    st.none(),
    st.binary(max_size=12).map(bytes.hex),
    st.binary(max_size=12).map(lambda b: b.hex().upper()),  # MariaDB's HEX()
    st.text(alphabet="0123456789abcdefABCDEFxg \\é", max_size=9),  # odd lengths, non-digits, spaces
)


@settings(max_examples=400, deadline=None)
@example(texts=["\\x0a1b", None, "\\x"], prefix=2, cut=1)
@example(texts=["0a 1b", "ff"], prefix=0, cut=0)  # a space: decoded value by value, as bytes.fromhex takes it
@given(texts=st.lists(HEX_TEXTS, max_size=10), prefix=st.integers(0, 2), cut=st.integers(0, 3))
def test_hex_text_decodes_on_the_buffer_as_value_by_value(texts: list[str | None], prefix: int, cut: int) -> None:
    """Hex text (a slice of a longer column too) gives the bytes, or the error, ``bytes.fromhex`` gives."""
    column = pa.array(["0"] * cut + texts, pa.string()).slice(cut)  # its buffer starting at an odd byte
    try:
        expected: Any = pa.array([None if t is None else bytes.fromhex(t[prefix:]) for t in texts], pa.binary())
    except ValueError as exc:
        expected = type(exc)
    try:
        got: Any = arrow_values.from_hex_text(column, prefix)
    except ValueError as exc:
        got = type(exc)
    if isinstance(expected, pa.Array):
        assert isinstance(got, pa.Array)
        got.validate(full=True)
        assert got.to_pylist() == expected.to_pylist()
    else:
        assert got is expected


def test_hex_text_round_trips_through_the_buffer_path() -> None:
    values = [bytes(range(i % 256, i % 256 + 9 if i % 256 < 247 else 256)) if i % 7 else None for i in range(5_000)]
    column = pa.array(values, pa.binary())
    assert arrow_values.from_hex_text(arrow_values.hex_text(column, b"\\x"), 2).to_pylist() == values
    assert arrow_values.from_hex_text(pa.chunked_array([arrow_values.hex_text(column)])).to_pylist() == values


DECIMAL_TEXTS = st.one_of(
    st.none(),
    st.integers(0, 6)
    .flatmap(lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places))
    .map(str),
    st.from_regex(r"\A[+-]?\d{0,14}(\.\d{0,6})?([eE][+-]?\d{1,2})?\Z"),
    st.sampled_from(["1.505", " 1.5", "1_0", "NaN", "-inf", "", "-", ".", "-0.00", "0.001", "1e-3", "00012.30"]),
)


@settings(max_examples=400, deadline=None)
@example(texts=["1.5", "12345678901.00"], precision=12, scale=2)
@example(texts=["0.50", "0"], precision=2, scale=2)
@example(texts=["1249999999999998657822717"], precision=29, scale=4)  # 29 digits: past the default context
@given(texts=st.lists(DECIMAL_TEXTS, max_size=6), precision=st.integers(1, 38), scale=st.integers(0, 10))
def test_decimal_texts_read_column_wise_as_value_by_value(texts: list[str | None], precision: int, scale: int) -> None:
    """Decimal text (MariaDB's ``CAST(... AS CHAR)``) cast by Arrow gives what ``Decimal`` value by value gives,
    or the text when a value is not exact (a declared scale is at most its precision, as in SQL)."""
    scale = min(scale, precision)
    wanted = pa.decimal128(precision, scale)
    column = pa.array(texts, pa.string())
    try:
        values = [None if t is None else Decimal(t) for t in texts]
        if any(v is not None and not v.is_finite() for v in values):
            raise arrow_values._Inexact(wanted)
        expected = pa.array([arrow_values._as_decimal(v, wanted) for v in values], wanted)
    except (arrow_values._Inexact, *arrow_values._INEXACT, ArithmeticError):
        expected = column
    got = arrow_values.exact_from_text(column, wanted)
    assert got.type == expected.type
    assert got.to_pylist() == expected.to_pylist()


def _escaped(value: str | None) -> str:
    """A ``LOAD DATA`` field value by value: ``\\N`` for NULL, backslash escapes for the four characters."""
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.lists(st.one_of(st.none(), st.text(st.sampled_from("ab \\\t\n\0é")), st.text(max_size=5)), max_size=6),
        min_size=1,
        max_size=3,
    ),
    cut=st.integers(0, 2),
)
def test_load_data_lines_escape_text_as_value_by_value(chunks: list[list[str | None]], cut: int) -> None:
    # Chunks and slices: a chunk holding a character to escape, beside chunks holding none.
    column = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    column = column.slice(min(cut, len(column)))
    rows = pa.table({"id": pa.array(range(len(column)), pa.int64()), "text": column})
    lines = arrow_values.delimited_lines(rows).to_pylist()
    assert lines == [f"{i}\t{_escaped(v)}\n" for i, v in enumerate(column.to_pylist())]


# Server text of numbers, dates and times (MariaDB's, unquoted; an empty field is NULL), canonical or not.
CANONICAL_TEXTS = {
    "n": (
        pa.int64(),
        st.one_of(
            st.integers(-(2**63), 2**63 - 1).map(str),
            st.sampled_from(["9223372036854775808", "-9223372036854775809", "18446744073709551615"]),
        ),
    ),
    "price": (
        pa.decimal128(12, 2),
        st.one_of(
            st.decimals(-(10**10), 10**10, places=2, allow_nan=False, allow_infinity=False).map(str),
            st.decimals(-(10**10), 10**10, places=4, allow_nan=False, allow_infinity=False).map(str),
            st.sampled_from(["1000000000000000.00", "0.5", "-0.00"]),
        ),
    ),
    "at": (
        pa.timestamp("us"),
        st.one_of(
            st.datetimes().map(lambda d: d.isoformat(" ", "seconds")),
            st.datetimes().map(lambda d: d.isoformat(" ", "microseconds")),
            st.sampled_from(["0000-00-00 00:00:00", "2024-02-30 10:00:00"]),
        ),
    ),
    "day": (pa.date32(), st.one_of(st.dates().map(str), st.sampled_from(["0000-00-00", "2023-02-29"]))),
}


@settings(max_examples=300, deadline=None)
@example(rows=[("1", "2.50", "2024-01-05 10:00:00.000001", "2024-01-05"), (None, None, None, None)])
@example(rows=[("18446744073709551615", "1.00", "2024-01-05 10:00:00", "2024-01-05")])  # past int64: text
@example(rows=[("1", "1.2345", "2024-01-05 10:00:00", "0000-00-00")])  # a lossy decimal, a zero date: text
@given(
    rows=st.lists(
        st.tuples(*(st.one_of(st.none(), values) for _, values in CANONICAL_TEXTS.values())), min_size=1, max_size=8
    )
)
def test_canonical_columns_parse_as_their_types_as_the_checked_path_does(rows: list[tuple[str | None, ...]]) -> None:
    """Columns whose text is canonical, parsed at once as their types, give what the text path and its
    exactness checks give: the same values, or the same text where a value does not convert."""
    columns = list(CANONICAL_TEXTS)
    schema = pa.schema([(c, kind) for c, (kind, _) in CANONICAL_TEXTS.items()])
    data = "".join(",".join("" if v is None else v for v in row) + "\n" for row in rows).encode()
    checked = arrow_values.parse_text_csv(data, columns, schema)
    typed = arrow_values.parse_text_csv(data, columns, schema, canonical=columns)
    assert typed.schema == checked.schema
    assert typed.to_pylist() == checked.to_pylist()
