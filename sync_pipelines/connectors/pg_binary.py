"""PostgreSQL's binary ``COPY`` format built from Arrow columns with numpy, for the narrow tables of the
bookkeeping (baselines, staged keys) whose columns are integers, texts and byte strings.

Every row is laid out column by column: a 2-byte field count, then per field a 4-byte big-endian length
(-1 for NULL) and the value's bytes (big-endian integers, UTF-8 text, raw bytes). The lengths and fixed-width
values are written at their computed offsets with one fancy-index assignment per column, and variable-width
values with one gather over their data buffer: no Python object per value. When every row has the same
width (each column NULL throughout, or set throughout with one length: the baselines of new records), the
rows are one numpy structured array instead. A column of any other type makes
:func:`binary_copy_data` answer None, and the caller writes CSV instead.
"""

from __future__ import annotations

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


def _encodable(column_type: sa.types.TypeEngine[Any], kind: pa.DataType) -> bool:
    """Whether a column of ``column_type`` given as Arrow ``kind`` is written in binary here."""
    if _integer_width(column_type) is not None:
        return pa.types.is_integer(kind)
    if isinstance(column_type, sa.String):
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if isinstance(column_type, sa.LargeBinary):
        return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    return False


def binary_copy_data(table: sa.Table, rows: pa.Table) -> bytes | None:
    """``rows`` in ``COPY ... FROM STDIN (FORMAT binary)`` form for ``table``'s columns of the same names, or
    None when a column is neither an integer column given as Arrow integers, nor a text or ``bytea`` column
    given as Arrow strings or binaries."""
    if not all(_encodable(table.c[name].type, rows.schema.field(name).type) for name in rows.column_names):
        return None  # told by the types alone, before any column is converted
    n = rows.num_rows
    columns: list[tuple[str, Any, np.ndarray[Any, Any]]] = []  # (kind, payload, valid mask)
    sizes = np.full(n, 2, dtype=np.int64)
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
            columns.append(("int", (width, values.astype(f">i{width}")), valid))
            sizes += 4 + np.where(valid, width, 0)
            continue
        varlen = _varlen(array)
        assert varlen is not None  # _encodable
        offsets, data = varlen
        lengths = np.diff(offsets)
        columns.append(("var", (offsets, data, lengths), valid))
        sizes += 4 + np.where(valid, lengths, 0)
    fixed = _fixed_width(n, columns)
    if fixed is not None:
        return fixed
    starts = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(sizes[:-1], out=starts[1:])
    starts += len(HEADER)
    total = len(HEADER) + int(sizes.sum()) + len(TRAILER)
    out = np.zeros(total, dtype=np.uint8)
    out[: len(HEADER)] = np.frombuffer(HEADER, dtype=np.uint8)
    out[total - len(TRAILER) :] = np.frombuffer(TRAILER, dtype=np.uint8)
    _put(out, starts, np.full(n, len(rows.column_names), dtype=">i2"))
    at = starts + 2  # where each row's next field starts
    for kind, payload, valid in columns:
        if kind == "int":
            width, values = payload
            _put(out, at, np.where(valid, width, -1).astype(">i4"))
            _put(out, (at + 4)[valid], values[valid])
            at = at + 4 + np.where(valid, width, 0)
        else:
            offsets, data, lengths = payload
            shown = np.where(valid, lengths, 0)
            _put(out, at, np.where(valid, lengths, -1).astype(">i4"))
            if shown.any():
                # Byte j of row i's value goes to (at_i + 4) + (j - offsets_i): one gather over the data buffer.
                firsts = offsets[:-1][valid]
                counts = shown[valid]
                dest0 = (at + 4)[valid]
                index = np.arange(int(counts.sum()), dtype=np.int64)
                begin = np.repeat(np.cumsum(counts) - counts, counts)
                out[np.repeat(dest0, counts) + index - begin] = data[np.repeat(firsts, counts) + index - begin]
            at = at + 4 + shown
    return out.tobytes()


def _fixed_width(n: int, columns: list[tuple[str, Any, np.ndarray[Any, Any]]]) -> bytes | None:
    """The rows laid out as one numpy structured array when every row has the same width: each column
    either NULL in every row or set in every row with one length (the baselines of new records: integers,
    digests of one width, NULL target sides). None: some column varies, and the rows go value by value."""
    layout: list[tuple[Any, ...]] = [("fields", ">i2")]
    values: dict[str, Any] = {"fields": len(columns)}
    for i, (kind, payload, valid) in enumerate(columns):
        length, value = f"n{i}", f"v{i}"
        layout.append((length, ">i4"))
        if n and not valid.any():
            values[length] = -1
            continue
        if not valid.all():
            return None
        if kind == "int":
            width, numbers = payload
            layout.append((value, numbers.dtype))
            values[length], values[value] = width, numbers
            continue
        offsets, data, lengths = payload
        width = int(lengths[0]) if n else 0
        if (lengths != width).any():
            return None
        values[length] = width
        if width:
            layout.append((value, np.uint8, (width,)))
            first = int(offsets[0])
            values[value] = data[first : first + n * width].reshape(n, width)
    rows = np.empty(n, dtype=np.dtype(layout))
    for name, filled in values.items():
        rows[name] = filled
    return HEADER + rows.tobytes() + TRAILER


def _put(out: np.ndarray[Any, Any], positions: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> None:
    """Write each fixed-width big-endian value of ``values`` at its byte position in ``out``."""
    if not len(values):
        return
    width = values.dtype.itemsize
    raw = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8).reshape(-1, width)
    out[positions[:, None] + np.arange(width)] = raw


__all__ = ["binary_copy_data"]
