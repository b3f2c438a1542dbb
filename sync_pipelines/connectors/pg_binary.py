"""PostgreSQL's binary ``COPY`` format built from Arrow columns with numpy: the bookkeeping tables and the
target rows whose columns are integers, texts, byte strings, booleans, double precision floats, dates,
timestamps (microseconds) and decimals of up to 18 digits.

Every row is laid out column by column: a 2-byte field count, then per field a 4-byte big-endian length
(-1 for NULL) and the value's bytes, as the type's ``recv`` function reads them: big-endian integers and
floats, UTF-8 text, raw bytes, a byte for a boolean, days (dates) or microseconds (timestamps) since
2000-01-01, and for ``numeric`` its base-10000 digits after four 2-byte words (digit count, weight of the
first digit, sign, display scale): a decimal column's values all take the same number of digits, the server
strips the zero ones. When every row has the same width (each column NULL throughout, or set throughout
with one length: the baselines of new records), the rows are one numpy structured array. Otherwise each
column's fields (each run of fixed-width columns set in every row: one numpy structured array) become one
Arrow binary array of length words and values, and Arrow joins them row by row: no Python object per value.
A column of any other type makes :func:`binary_copy_data` answer None, and the caller writes CSV instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)


def _integer_width(column_type: sa.types.TypeEngine[Any]) -> int | None:
    """Bytes of a PostgreSQL integer column: 2, 4 or 8; None when the column is not one."""
    if isinstance(column_type, sa.SmallInteger):
        return 2
    if isinstance(column_type, sa.BigInteger):
        return 8
    if isinstance(column_type, sa.Integer):
        return 4
    return None


def _varlen(column: pa.Array) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """``(offsets, data)`` of a binary or UTF-8 column (32-bit offsets), None for other types."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        pass
    elif pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        column = column.cast(pa.binary())
    else:
        return None
    n = len(column)
    _, offset_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[column.offset : column.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return offsets, data


_EPOCH_DAYS = 10_957
"""Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's)."""
_EPOCH_MICROS = _EPOCH_DAYS * 86_400_000_000
_NUMERIC_NEG = 0x4000
_DIGITS = 18
"""Decimals of up to this many digits (with their scale rounded up to whole base-10000 digits) fit an int64."""


def _groups(kind: pa.Decimal128Type) -> int | None:
    """Base-10000 digits of every value of a decimal column, or None when its unscaled values may pass an int64."""
    pad = -kind.scale % 4
    if kind.scale < 0 or kind.precision + pad > _DIGITS:
        return None
    return -(-(kind.precision + pad) // 4)


def _fixed(column_type: sa.types.TypeEngine[Any], kind: pa.DataType) -> bool:
    """Whether a column of ``column_type`` given as Arrow ``kind`` is one of the fixed-width encodings."""
    if isinstance(column_type, sa.Boolean):
        return pa.types.is_boolean(kind)
    if isinstance(column_type, sa.Double):
        return pa.types.is_float64(kind)
    if isinstance(column_type, sa.Float):
        return False  # real: a double rounded here could differ from the server's rounding of its text
    if isinstance(column_type, sa.Numeric):
        return pa.types.is_decimal128(kind) and _groups(kind) is not None
    if isinstance(column_type, sa.DateTime):
        return pa.types.is_timestamp(kind) and kind.unit == "us"
    if isinstance(column_type, sa.Date):
        return pa.types.is_date32(kind)
    return False


def _encodable(column_type: sa.types.TypeEngine[Any], kind: pa.DataType) -> bool:
    """Whether a column of ``column_type`` given as Arrow ``kind`` is written in binary here."""
    if _integer_width(column_type) is not None:
        return pa.types.is_integer(kind)
    if isinstance(column_type, sa.String):
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if isinstance(column_type, sa.LargeBinary):
        return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    return _fixed(column_type, kind)


def _fixed_values(array: pa.Array) -> np.ndarray[Any, Any] | None:
    """The values of a boolean, float64, decimal, date or timestamp column (NULLs as zeros) in their ``recv``
    form, one numpy element of the type's width per value; None for a decimal beyond its declared precision."""
    kind = array.type
    if pa.types.is_boolean(kind):
        return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=np.uint8)
    if pa.types.is_float64(kind):
        return np.asarray(pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False)).astype(">f8")
    if pa.types.is_date32(kind):
        days = np.asarray(pc.fill_null(array.cast(pa.int32()), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return (days - _EPOCH_DAYS).astype(">i4")
    if pa.types.is_timestamp(kind):  # microseconds, UTC instants or naive wall-clock times alike
        micros = np.asarray(pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False))
        return (micros - _EPOCH_MICROS).astype(">i8")
    groups = _groups(kind)
    assert groups is not None  # _fixed
    # A decimal128 of at most 18 digits: its low 64-bit word is the whole unscaled value.
    low = np.frombuffer(array.buffers()[1], dtype="<i8")[2 * array.offset : 2 * (array.offset + len(array)) : 2]
    unscaled = np.where(np.asarray(array.is_valid()), low, 0) if array.null_count else low
    if len(unscaled) and int(np.abs(unscaled).max()) >= 10**kind.precision:
        return None  # not a valid value of its type: the CSV path lets the server judge its text
    magnitude = np.abs(unscaled) * 10 ** (-kind.scale % 4)  # the scale as whole base-10000 digits
    out = np.zeros(
        len(array), dtype=[("n", ">i2"), ("weight", ">i2"), ("sign", ">u2"), ("scale", ">u2"), ("d", ">i2", (groups,))]
    )
    out["n"] = groups
    out["weight"] = groups - 1 - -(-kind.scale // 4)
    out["sign"] = np.where(unscaled < 0, _NUMERIC_NEG, 0)
    out["scale"] = kind.scale
    for i in range(groups):  # the most significant digit first
        out["d"][:, groups - 1 - i] = magnitude // 10_000**i % 10_000
    return out


def binary_copy_data(table: sa.Table, rows: pa.Table) -> bytes | None:
    """``rows`` in ``COPY ... FROM STDIN (FORMAT binary)`` form for ``table``'s columns of the same names, or
    None when a column is not one the module encodes given as its Arrow type (an integer column as integers, a
    text or ``bytea`` column as strings or binaries, a boolean, ``double precision``, ``numeric`` of up to 18
    digits, date or timestamp column as Arrow booleans, float64, decimal128, date32 or microsecond timestamps).
    """
    if not all(_encodable(table.c[name].type, rows.schema.field(name).type) for name in rows.column_names):
        return None  # told by the types alone, before any column is converted
    n = rows.num_rows
    columns: list[tuple[str, Any, np.ndarray[Any, Any]]] = []  # (kind, payload, valid mask)
    for name in rows.column_names:
        column = rows.column(name)
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        valid = np.ones(n, dtype=bool) if array.null_count == 0 else np.asarray(array.is_valid().to_numpy(False))
        column_type = table.c[name].type
        width = _integer_width(column_type)
        if width is not None:  # an Arrow integer column (_encodable)
            values = np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False))
            bound = np.iinfo(f"i{width}")
            if len(values) and (values.min() < bound.min or values.max() > bound.max):
                return None  # out of the column's range: CSV, whose COPY the server refuses with its own error
            columns.append(("fixed", (width, values.astype(f">i{width}")), valid))
            continue
        if _fixed(column_type, array.type):
            encoded = _fixed_values(array)
            if encoded is None:
                return None
            width = encoded.dtype.itemsize
            columns.append(("fixed", (width, encoded), valid))
            continue
        varlen = _varlen(array)
        assert varlen is not None  # _encodable
        offsets, data = varlen
        lengths = np.diff(offsets)
        columns.append(("var", (offsets, data, lengths, array), valid))
    fixed = _fixed_width(n, columns)
    if fixed is not None:
        return fixed
    return _joined(n, columns)


def _joined(n: int, columns: list[tuple[str, Any, np.ndarray[Any, Any]]]) -> bytes:
    """Rows of varying widths, joined row by row by Arrow from pieces that are each one binary array: a run of
    fixed-width fields set in every row (with the field count before the first, and the length word of a
    varying column after the last) as one numpy structured array; a varying column's values; a fixed-width
    column with NULLs. The joined array's data is the rows."""
    pieces: list[pa.Array] = []
    run: list[tuple[tuple[Any, ...], Any]] = [((">i2",), len(columns))]

    def end_run() -> None:
        if run:
            pieces.append(_words(_laid_out(n, run)))
            run.clear()

    for kind, payload, valid in columns:
        if kind == "fixed":
            width, values = payload
            if valid.all():
                run.extend([((">i4",), width), ((values.dtype,), values)])
                continue
            end_run()
            pieces.append(pc.if_else(pa.array(valid), _fields(n, [(width, values)]), _NULL_FIELD))
            continue
        _, _, lengths, array = payload
        run.append(((">i4",), np.where(valid, lengths, -1)))
        end_run()
        body = array.cast(pa.large_binary())
        pieces.append(pc.fill_null(body, _NOTHING) if array.null_count else body)
    end_run()
    if not n:
        return HEADER + TRAILER
    rows = pc.binary_join_element_wise(*pieces, _NOTHING)
    _, offset_buffer, data = rows.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[rows.offset : rows.offset + n + 1]
    return b"".join((HEADER, memoryview(data)[int(offsets[0]) : int(offsets[-1])], TRAILER))  # one copy


_NOTHING = pa.scalar(b"", pa.large_binary())
_NULL_FIELD = pa.scalar((-1).to_bytes(4, "big", signed=True), pa.large_binary())
"""A NULL field: its length word, -1, and no value."""


def _words(values: np.ndarray[Any, Any]) -> pa.Array:
    """Each element of a numpy array (structured or not) as one binary value of its bytes."""
    n, width = len(values), values.dtype.itemsize
    raw = pa.py_buffer(np.ascontiguousarray(values).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, raw]).cast(pa.large_binary())


def _fields(n: int, run: list[tuple[int, np.ndarray[Any, Any]]]) -> pa.Array:
    """The fields of consecutive fixed-width columns set in every row: each row's length words and values."""
    parts: list[tuple[tuple[Any, ...], Any]] = []
    for width, values in run:
        parts += [((">i4",), width), ((values.dtype,), values)]
    return _words(_laid_out(n, parts))


def _fixed_width(n: int, columns: list[tuple[str, Any, np.ndarray[Any, Any]]]) -> bytes | None:
    """The rows laid out as one numpy structured array when every row has the same width: each column
    either NULL in every row or set in every row with one length (the baselines of new records: integers,
    digests of one width, NULL target sides). None: some column varies, and the rows go value by value."""
    parts: list[tuple[tuple[Any, ...], Any]] = [((">i2",), len(columns))]
    for kind, payload, valid in columns:
        if n and not valid.any():
            parts.append(((">i4",), -1))
            continue
        if not valid.all():
            return None
        if kind == "fixed":
            width, numbers = payload
            parts += [((">i4",), width), ((numbers.dtype,), numbers)]
            continue
        offsets, data, lengths, _ = payload
        width = int(lengths[0]) if n else 0
        if (lengths != width).any():
            return None
        parts.append(((">i4",), width))
        if width:
            first = int(offsets[0])
            parts.append(((np.uint8, (width,)), data[first : first + n * width].reshape(n, width)))
    return HEADER + _laid_out(n, parts).tobytes() + TRAILER


def _laid_out(n: int, parts: list[tuple[tuple[Any, ...], Any]]) -> np.ndarray[Any, Any]:
    """``n`` rows of ``parts`` side by side as one numpy structured array: each part its numpy field type and
    its value (one for every row, or one per row)."""
    rows = np.empty(n, dtype=np.dtype([(f"f{i}", *kind) for i, (kind, _) in enumerate(parts)]))
    for i, (_, value) in enumerate(parts):
        rows[f"f{i}"] = value
    return rows


def reads_fixed(column_type: sa.types.TypeEngine[Any], kind: pa.DataType) -> bool:
    """Whether :func:`read_fixed` reads a column of ``column_type`` as Arrow ``kind``: an integer column as
    integers, a ``bytea`` column as byte strings."""
    if _integer_width(column_type) is not None:
        return pa.types.is_integer(kind)
    return isinstance(column_type, sa.LargeBinary) and pa.types.is_binary(kind)


def read_fixed(data: bytes | bytearray, types: Sequence[pa.DataType]) -> list[pa.Array] | None:
    """The columns of ``COPY ... TO STDOUT (FORMAT binary)`` output whose rows all have one layout (each field
    NULL in every row, or set in every row with one length: the baselines of a batch whose target sides
    agree), as Arrow arrays of ``types`` (integers, from ``smallint``, ``integer`` or ``bigint``, and byte
    strings): one numpy structured array over the whole output, no Python object per value. None when the
    rows differ in layout, or a field is not of its type's width."""
    body = memoryview(data)
    if len(body) < len(HEADER) + len(TRAILER) or bytes(body[: len(HEADER)]) != HEADER or body[-2:] != TRAILER:
        return None
    body = body[len(HEADER) : -len(TRAILER)]
    if not body:
        return [pa.array([], kind) for kind in types]
    lengths = _first_layout(body, len(types))
    if lengths is None:
        return None
    parts: list[tuple[Any, ...]] = [("count", ">i2")]
    for i, (length, kind) in enumerate(zip(lengths, types, strict=True)):
        parts.append((f"l{i}", ">i4"))
        if length < 0:
            continue
        if pa.types.is_integer(kind):
            if length not in (2, 4, 8):
                return None
            parts.append((f"v{i}", f">i{length}"))
        elif pa.types.is_binary(kind):
            parts.append((f"v{i}", np.uint8, (length,)))
        else:
            return None
    layout = np.dtype(parts)
    if len(body) % layout.itemsize:
        return None
    rows = np.frombuffer(body, dtype=layout)
    if (rows["count"] != len(types)).any():
        return None
    columns: list[pa.Array] = []
    for i, (length, kind) in enumerate(zip(lengths, types, strict=True)):
        if (rows[f"l{i}"] != length).any():
            return None
        n = len(rows)
        if length < 0:
            columns.append(pa.nulls(n, kind))
        elif pa.types.is_integer(kind):
            values = rows[f"v{i}"].astype(np.int64)
            columns.append(pa.array(values, pa.int64()).cast(kind))  # a value beyond ``kind`` fails the cast
        else:
            offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * length).tobytes())
            values_buffer = pa.py_buffer(np.ascontiguousarray(rows[f"v{i}"]).tobytes())
            columns.append(pa.Array.from_buffers(pa.binary(), n, [None, offsets, values_buffer]))
    return columns


def _first_layout(body: memoryview, fields: int) -> list[int] | None:
    """The field lengths of the first row (-1 for NULL), None when it does not hold ``fields`` fields."""
    if int.from_bytes(body[:2], "big", signed=True) != fields:
        return None
    at, lengths = 2, []
    for _ in range(fields):
        if at + 4 > len(body):
            return None
        length = int.from_bytes(body[at : at + 4], "big", signed=True)
        lengths.append(length)
        at += 4 + max(length, 0)
    return lengths


__all__ = ["binary_copy_data", "read_fixed", "reads_fixed"]
