"""Arrow columns to driver values and back, column by column, for the backends' bulk reads and writes.

Writes turn each Arrow column into one Python list (or one text column) at once; reads turn each
column of driver values into the wanted Arrow type when every value converts exactly, and into text
otherwise (``str(v)``, ISO dates and datetimes), so that the caller can tell and normalise it.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Collection, Sequence
from decimal import Context, Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

_INEXACT = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError, TypeError)
_WIDE = Context(prec=80)
"""Enough digits to rescale any decimal128 value (the default context keeps 28, fewer than 38)."""
_SUB_MICRO = re.compile(r"\.\d{7,}")


class _Inexact(Exception):
    """A value that the wanted type cannot hold exactly."""


# --------------------------------------------------------------------------- writing


def python_columns(rows: pa.Table, *, text_dates: bool = False) -> list[list[Any]]:
    """One list of driver values per column of ``rows`` (``to_pylist`` once per column).

    With ``text_dates`` (SQLite), dates, timestamps and decimals become the values SQLAlchemy's
    SQLite dialect stores: ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS.ffffff`` and floats.
    """
    return [_python_column(rows.column(i), text_dates=text_dates) for i in range(rows.num_columns)]


def _python_column(column: pa.ChunkedArray, *, text_dates: bool) -> list[Any]:
    kind = column.type
    if text_dates and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        if pa.types.is_timestamp(kind):
            column = _naive_utc(column).cast(pa.timestamp("us"))
        return pc.cast(column, pa.string()).to_pylist()
    if text_dates and pa.types.is_decimal(kind):
        # float(str) rounds correctly, as SQLAlchemy's float(Decimal) does.
        return [None if v is None else float(v) for v in pc.cast(column, pa.string()).to_pylist()]
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        column = _naive_utc(column)
    return column.to_pylist()


def _naive_utc(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if kind.tz is None:
        return column
    return column.cast(pa.timestamp(kind.unit))  # the stored instants are UTC


def delimited_lines(rows: pa.Table) -> pa.Array:
    """``rows`` as the lines of a ``LOAD DATA`` file, one value per row, each ending with a newline.

    Fields are separated by tabs; NULL is ``\\N``; backslashes, tabs, newlines and NUL are escaped
    with a backslash (the defaults of ``FIELDS ESCAPED BY '\\\\'``); booleans are ``1``/``0``;
    timestamps are naive UTC ``YYYY-MM-DD HH:MM:SS.ffffff``; binary values are their own bytes, escaped
    alike (a file with binary values is read ``CHARACTER SET binary``). The lines are text unless a column
    is binary.
    """
    fields = [_delimited_field(rows.column(i)) for i in range(rows.num_columns)]
    if not fields:
        raise ValueError("no column to write")
    if any(pa.types.is_binary(f.type) for f in fields):
        fields = [f.cast(pa.binary()) for f in fields]  # zero-copy for text
        tab, newline, empty = (pa.scalar(b, pa.binary()) for b in (b"\t", b"\n", b""))
    else:
        tab, newline, empty = (pa.scalar(t, pa.string()) for t in ("\t", "\n", ""))
    # The newline goes after the last field first: one pass over that column instead of one over every line.
    fields[-1] = pc.binary_join_element_wise(fields[-1], empty, newline)
    return pc.binary_join_element_wise(*fields, tab) if len(fields) > 1 else fields[0]


_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\0", "\\0"))


def _delimited_field(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        raw = column.cast(pa.binary())
        for plain, escaped in _ESCAPES:
            if _holds(raw, plain.encode()):
                raw = pc.replace_substring(raw, plain.encode(), escaped.encode())
        return pc.fill_null(raw, pa.scalar(b"\\N", pa.binary()))
    if pa.types.is_boolean(kind):
        text = pc.cast(pc.cast(column, pa.int8()), pa.string())
    elif pa.types.is_timestamp(kind):
        text = pc.cast(_naive_utc(column).cast(pa.timestamp("us")), pa.string())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column.cast(pa.string())
        for plain, escaped in _ESCAPES:
            if _holds(text, plain.encode()):
                text = pc.replace_substring(text, plain, escaped)
    else:
        text = pc.cast(column, pa.string())
    return pc.fill_null(text, pa.scalar("\\N", pa.string()))


def _holds(column: pa.ChunkedArray, byte: bytes) -> bool:
    """Whether a value of a string or binary column (32-bit offsets) holds ``byte``: one search of each
    chunk's value bytes (most text holds no character to escape, and is then not copied by a replacement)."""
    for chunk in column.chunks:
        _, offset_buffer, data = chunk.buffers()
        if data is None or not len(chunk):
            continue
        offsets = np.frombuffer(offset_buffer, dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
        if byte in memoryview(data)[int(offsets[0]) : int(offsets[-1])].tobytes():
            return True
    return False


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_pairs() -> np.ndarray[Any, np.dtype[np.uint16]]:
    """The byte each pair of characters (read as a little-endian 16-bit word) spells in hex, upper or lower
    case; above 0xFF where either character is no hex digit."""
    digit = np.full(256, 0x100, dtype=np.uint16)
    digit[_HEX_DIGITS] = np.arange(16)
    digit[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)
    word = np.arange(65536, dtype=np.uint32)
    first, second = digit[word & 0xFF], digit[word >> 8]
    return np.where((first | second) > 0x0F, 0x100, (first << 4) | second).astype(np.uint16)


_HEX_PAIRS = _hex_pairs()


def hex_text(column: pa.Array | pa.ChunkedArray, prefix: bytes = b"") -> pa.Array:
    """Each binary value as ``prefix`` + lower-case hex text, computed on the whole buffer (NULL stays NULL)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if n == 0:
        return pa.array([], pa.string())
    _, offset_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[column.offset : column.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    width = 2 * lengths + len(prefix)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(width, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.uint8)
    for i, byte in enumerate(prefix):
        out[out_offsets[:-1] + i] = byte
    total = int(lengths.sum())
    if total:
        owner = np.repeat(np.arange(n), lengths)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        values = data[offsets[owner] + within]
        at = out_offsets[owner] + len(prefix) + 2 * within
        out[at] = _HEX_DIGITS[values >> 4]
        out[at + 1] = _HEX_DIGITS[values & 0x0F]
    valid = None if column.null_count == 0 else column.is_valid().buffers()[1]
    if valid is not None and column.offset % 8:
        valid = pa.array(np.asarray(column.is_valid())).buffers()[1]
    return pa.Array.from_buffers(
        pa.string(), n, [valid, pa.py_buffer(out_offsets.astype(np.int32)), pa.py_buffer(out)], column.null_count
    )


def from_hex_text(column: pa.Array | pa.ChunkedArray, prefix: int = 0) -> pa.Array:
    """The inverse of :func:`hex_text` (``prefix``: how many leading characters to skip), decoded on the whole
    buffer; upper- and lower-case digits alike (MariaDB's ``HEX`` writes upper case, PostgreSQL lower case).

    A column holding anything but pairs of hex digits is decoded value by value, which raises ``ValueError``
    naming the first bad value as ``bytes.fromhex`` does.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if n == 0:
        return pa.array([], pa.binary())
    text = pc.utf8_slice_codeunits(column, prefix) if prefix else column
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())
    _, offset_buffer, data_buffer = text.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[text.offset : text.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    if bool((np.diff(offsets) & 1).any()):
        return _from_hex_text_by_value(column, prefix)
    # Every value has an even length, so the pairs of the whole buffer are the values' pairs.
    words = np.frombuffer(data_buffer, dtype="<u2", count=(end - start) // 2, offset=start) if end > start else None
    decoded = _HEX_PAIRS[words] if words is not None else np.zeros(0, np.uint16)
    if bool((decoded > 0xFF).any()):
        return _from_hex_text_by_value(column, prefix)
    out = decoded.astype(np.uint8)
    out_offsets = ((offsets - start) // 2).astype(np.int32)
    valid = None if column.null_count == 0 else column.is_valid().buffers()[1]
    return pa.Array.from_buffers(
        pa.binary(), n, [valid, pa.py_buffer(out_offsets), pa.py_buffer(out)], column.null_count
    )


def _from_hex_text_by_value(column: pa.Array, prefix: int) -> pa.Array:
    return pa.array([None if v is None else bytes.fromhex(v[prefix:]) for v in column.to_pylist()], pa.binary())


# --------------------------------------------------------------------------- reading

DENSE = 2
"""A range read serves keys whose span is at most this many times their count."""


def dense_range(keys: pa.Table) -> tuple[int, int] | None:
    """``(first, last)`` of one integer key column whose values ascend and span a short range, else None.

    A full read's batch comes in key order: its target rows are read by one range condition instead of
    lists of keys; the rows of the range that were not asked for are left out by the reader.
    """
    if keys.num_columns != 1 or not pa.types.is_integer(keys.schema.field(0).type) or keys.num_rows < 2:
        return None
    column = keys.column(0)
    if column.null_count:
        return None
    values = column.to_numpy()
    first, last = int(values[0]), int(values[-1])
    if last - first + 1 > DENSE * len(values) or not bool((values[1:] > values[:-1]).all()):
        return None
    return first, last


def parse_text_csv(
    data: bytes,
    columns: Sequence[str],
    schema: pa.Schema,
    *,
    float_columns: Collection[str] = (),
    canonical: Collection[str] = (),
) -> pa.Table:
    """CSV text of ``columns`` (texts quoted, numbers, dates and times unquoted, NULL an unquoted empty field,
    binary as quoted hex) as Arrow columns of their types in ``schema`` where every value converts exactly, else
    as text. Values of ``float_columns`` (floating-point columns) are never taken as decimals.

    The text of a ``canonical`` column is the canonical form of its type's values (see
    :func:`parses_canonical`): Arrow parses it as that type at once, with no round trip to check it; a value
    that does not parse (out of range, a decimal with more digits than the scale, a zero date) sends the
    whole text through the checks instead.
    """
    if not data:
        return pa.table({c: pa.array([], schema.field(c).type) for c in columns})
    typed = {c: schema.field(c).type for c in columns if c in canonical and parses_canonical(schema.field(c).type)}
    try:
        text = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=list(columns), use_threads=False),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: typed.get(c, pa.string()) for c in columns},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        if not typed:
            raise
        return parse_text_csv(data, columns, schema, float_columns=float_columns)
    arrays = []
    for name in columns:
        wanted = schema.field(name).type
        column = text.column(name)
        if name in typed:
            arrays.append(column)
        elif pa.types.is_binary(wanted):
            arrays.append(from_hex_text(column))
        elif name in float_columns and pa.types.is_decimal(wanted):
            arrays.append(column)
        else:
            arrays.append(exact_from_text(column, wanted))
    return pa.Table.from_arrays(arrays, names=list(columns))


def parses_canonical(kind: pa.DataType) -> bool:
    """Whether Arrow's CSV reader parses the canonical text of a ``kind`` value into that value, and refuses any
    text it cannot take exactly: integers, decimals (more digits than the scale are refused), dates and
    timestamps without a time zone."""
    return (
        pa.types.is_integer(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_date32(kind)
        or (pa.types.is_timestamp(kind) and kind.tz is None)
    )


def only_keys(found: pa.Table, keys: pa.Table, span: tuple[int, int]) -> pa.Table:
    """The rows of ``found`` (read over the key range ``span``, see :func:`dense_range`) whose (single-column) key
    is in ``keys``."""
    name = keys.column_names[0]
    if not found.num_rows or span[1] - span[0] + 1 == keys.num_rows:  # every key of the range was asked for
        return found
    wanted = keys.column(0).cast(found.schema.field(name).type)
    return found.filter(pc.is_in(found.column(name), value_set=wanted))


def text_array(values: Sequence[Any]) -> pa.Array:
    """Each non-null value's text: ``str(v)``, ISO format for dates and datetimes."""
    return pa.array(
        [None if v is None else v.isoformat() if isinstance(v, dt.date) else str(v) for v in values], pa.string()
    )


def exact_array(values: Sequence[Any], wanted: pa.DataType, *, float_column: bool = False) -> pa.Array:
    """``values`` (driver values of one column) as an Arrow array of type ``wanted``, or as text.

    The wanted type is kept only when every non-null value converts exactly: an aware datetime is
    converted to naive UTC, 0/1 become booleans, a decimal is rescaled only without loss, a text is
    parsed only when it is the canonical form of a value of the wanted type (SQLite keeps dates,
    datetimes and odd values as text). ``float_column`` says the stored column is a floating-point
    one, whose values are never taken as decimals.
    """
    try:
        return _exact(values, wanted, float_column=float_column)
    except (_Inexact, *_INEXACT, ArithmeticError):
        return text_array(values)


def _kinds(values: Sequence[Any]) -> set[type]:
    return {type(v) for v in values if v is not None}


def _exact(values: Sequence[Any], wanted: pa.DataType, *, float_column: bool) -> pa.Array:
    kinds = _kinds(values)
    if pa.types.is_binary(wanted):
        if kinds <= {bytes, bytearray, memoryview}:
            return pa.array([None if v is None else bytes(v) for v in values], pa.binary())
        raise _Inexact(wanted)
    if pa.types.is_string(wanted):
        return pa.array(values, pa.string()) if kinds <= {str} else text_array(values)
    if kinds == {str}:
        return exact_from_text(pa.array(values, pa.string()), wanted)
    if pa.types.is_boolean(wanted):
        if kinds <= {bool}:
            return pa.array(values, pa.bool_())
        if kinds <= {int, bool} and all(v in (0, 1) for v in values if v is not None):
            return pa.array([None if v is None else bool(v) for v in values], pa.bool_())
    elif pa.types.is_integer(wanted):
        if kinds <= {int}:
            return pa.array(values, wanted)
        if kinds <= {int, Decimal}:
            return pa.array([_integral(v) for v in values], wanted)
    elif pa.types.is_floating(wanted):
        if kinds <= {float, int, Decimal}:
            return pa.array([_as_float(v) for v in values], wanted)
    elif pa.types.is_decimal(wanted):
        allowed = {int, Decimal} if float_column else {int, Decimal, float}
        if kinds <= allowed:
            numbers = _decimals_of_numbers(values, wanted) if kinds <= {int, float} else None
            if numbers is not None:
                return numbers
            return pa.array([_as_decimal(v, wanted) for v in values], wanted)
    elif pa.types.is_timestamp(wanted):
        if kinds <= {dt.datetime}:
            return pa.array([_naive(v) for v in values], wanted)
    elif pa.types.is_date(wanted) and kinds <= {dt.date}:
        return pa.array(values, wanted)
    raise _Inexact(wanted)


def _integral(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if value != value.to_integral_value():
        raise _Inexact(value)
    return int(value)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, float):
        return value
    result = float(value)
    if Decimal(result) != value:  # also an integer past 2**53
        raise _Inexact(value)
    return result


def _as_decimal(value: Any, wanted: pa.Decimal128Type) -> Decimal | None:
    if value is None:
        return None
    # A float stored for a decimal column (SQLite's NUMERIC) stands for its shortest decimal form.
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    scaled = number.quantize(Decimal(1).scaleb(-wanted.scale), context=_WIDE)
    if scaled != number or len(scaled.as_tuple().digits) > wanted.precision:
        raise _Inexact(value)
    return scaled


def _decimals_of_numbers(values: Sequence[Any], wanted: pa.Decimal128Type) -> pa.Array | None:
    """Integers and floats (SQLite keeps a decimal as either) as decimals, column-wise: each float stands for
    its shortest decimal form (Arrow writes the same digits as ``repr``), taken only when the wanted scale
    and precision hold it without loss, as :func:`_as_decimal` does. None: some value does not fit (or an
    integer a double does not hold exactly, or exponent notation), for :func:`_as_decimal` to judge."""
    try:
        numbers = pa.array(values, pa.float64())  # refuses an integer a double does not hold exactly
        text = pc.cast(numbers, pa.string())
        if pc.any(pc.match_substring(text, "e")).as_py():
            return None  # exponent notation (below 1e-4, from 1e16): rescaling it is left to Decimal
        return pc.cast(text, wanted)  # refuses a lost digit, or too many
    except _INEXACT:
        return None


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def exact_from_text(text: pa.Array | pa.ChunkedArray, wanted: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A text column as type ``wanted`` when every non-null text is an exact form of such a value, else as is.

    Integers, dates and booleans (``t``/``f``, ``true``/``false``, ``1``/``0``) must be in their canonical
    form; decimals may carry fewer decimals than the wanted scale; datetimes are ISO 8601 (``T`` or a space)
    with at most microseconds, and an offset is converted to UTC.
    """
    try:
        return _from_text(text, wanted)
    except (_Inexact, *_INEXACT, ArithmeticError):
        return text


def _from_text(text: pa.Array | pa.ChunkedArray, wanted: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_string(wanted):
        return text
    if pa.types.is_boolean(wanted):
        lowered = pc.utf8_lower(text)
        truth = pc.is_in(lowered, pa.array(["t", "true", "1"]))
        falsity = pc.is_in(lowered, pa.array(["f", "false", "0"]))
        if not pc.all(pc.or_(pc.or_(truth, falsity), pc.is_null(text))).as_py():
            raise _Inexact(wanted)
        return pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), truth)
    if pa.types.is_timestamp(wanted):
        try:
            return pc.cast(text, wanted)
        except _INEXACT:
            texts = text.to_pylist()
            # fromisoformat drops digits past the microsecond: such a text is not exact.
            if any(v is not None and _SUB_MICRO.search(v) for v in texts):
                raise _Inexact(wanted) from None
            return pa.array([None if v is None else _naive(dt.datetime.fromisoformat(v)) for v in texts], wanted)
    if pa.types.is_decimal(wanted):
        try:
            return pc.cast(text, wanted)  # refuses a text that would lose digits or overflow the precision
        except _INEXACT:
            pass  # judged value by value: forms Arrow does not read (spaces, underscores), or not exact
        values = [None if v is None else Decimal(v) for v in text.to_pylist()]
        if any(v is not None and not v.is_finite() for v in values):
            raise _Inexact(wanted)
        return pa.array([_as_decimal(v, wanted) for v in values], wanted)
    cast = pc.cast(text, wanted)
    if pa.types.is_floating(wanted):
        return cast
    # Integers and dates: only their canonical text (no '+5', '05', '2024-1-5').
    if pc.all(pc.equal(pc.cast(cast, pa.string()), text)).as_py() is False:
        raise _Inexact(wanted)
    return cast


__all__ = [
    "delimited_lines",
    "exact_array",
    "exact_from_text",
    "parse_text_csv",
    "parses_canonical",
    "python_columns",
    "text_array",
]
