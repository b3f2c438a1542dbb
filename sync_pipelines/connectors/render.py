"""JSON texts of whole Arrow columns: record keys and field-level changes, rendered without a Python loop.

Each value renders exactly as :func:`~sync_pipelines.connectors.values.dumps` renders its
:func:`~sync_pipelines.connectors.values.display` form (numbers as numbers, decimals, dates and
datetimes as ISO text, ``ensure_ascii=False``), so that outcomes written from a batch read the same as
outcomes written one by one. Strings holding a quote, a backslash or a control character, and floats
that are not finite, are rendered by :mod:`json` itself (rare, and only those values).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.connectors.rowhash import Column

_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _strings(values: pa.Array) -> pa.Array:
    """JSON strings of a string array (NULL stays NULL)."""
    if values.type != pa.string():
        values = values.cast(pa.string())
    out = _quoted(values)
    special = pc.fill_null(pc.match_substring_regex(values, _NEEDS_ESCAPE), False)
    if pc.any(special).as_py():
        where = np.flatnonzero(np.asarray(special))
        fixed = pa.array([json.dumps(values[int(i)].as_py(), ensure_ascii=False) for i in where], pa.string())
        out = _replace_at(out, where, fixed)
    return out


def _replace_at(array: pa.Array, positions: np.ndarray[Any, Any], values: pa.Array) -> pa.Array:
    """``array`` with the values at ``positions`` replaced by ``values``."""
    indices = np.arange(len(array))
    source = np.zeros(len(array), dtype=np.int64)
    source[positions] = np.arange(len(positions)) + len(array)
    pick = np.where(np.isin(indices, positions), source, indices)
    return pa.concat_arrays([array, values]).take(pa.array(pick))


def _floats(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    # Python writes integral floats with ".0" and non-finite ones as NaN / Infinity.
    plain = pc.fill_null(pc.match_substring_regex(text, r"^-?\d+$"), False)
    text = pc.if_else(plain, pc.binary_join_element_wise(text, ".0", ""), text)
    finite = pc.fill_null(pc.is_finite(values), True)
    if not pc.all(finite).as_py():
        where = np.flatnonzero(~np.asarray(finite))
        fixed = pa.array([json.dumps(values[int(i)].as_py()) for i in where], pa.string())
        text = _replace_at(text, where, fixed)
    return text


_MICROS = pa.timestamp("us")
"""The engine's ``datetime`` (naive, microseconds): rendered through Arrow's cast to text (0.46 against 1.71 s per
million values with ``strftime``)."""


def _datetimes(values: pa.Array) -> pa.Array:
    """ISO text as ``datetime.isoformat`` writes it: no fraction for a whole second, else six digits."""
    if values.type != _MICROS:  # other units, or an instant with a time zone
        text = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
        return _quoted(pc.replace_substring_regex(text, r"\.000000$", ""))
    text = pc.replace_substring(values.cast(pa.string()), " ", "T", max_replacements=1)  # YYYY-MM-DD hh:mm:ss.ffffff
    whole = np.asarray(values.cast(pa.int64()).fill_null(0)) % 1_000_000 == 0
    return _quoted(pc.if_else(pa.array(whole), pc.utf8_slice_codeunits(text, 0, -7), text))


def json_values(values: pa.Array) -> pa.Array:
    """The JSON text of each value's display form; NULL for NULL."""
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings(values)
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "true", "false")
    if pa.types.is_integer(kind):
        return values.cast(pa.string())
    if pa.types.is_floating(kind):
        return _floats(values)
    if pa.types.is_decimal(kind) or pa.types.is_date(kind):
        return _quoted(values.cast(pa.string()))
    if pa.types.is_timestamp(kind):
        return _datetimes(values)
    if pa.types.is_binary(kind):
        return _quoted(pc.binary_join_element_wise(values, b"", b"").cast(pa.string()))  # pragma: no cover
    raise TypeError(f"cannot render Arrow type {kind} as JSON")


def json_column(column: Column) -> pa.Array:
    """:func:`json_values` of a :class:`~sync_pipelines.connectors.rowhash.Column`, its unfit values as text."""
    out = pc.fill_null(json_values(column.typed), "null")
    if column.text is not None:
        out = pc.if_else(column.text.is_valid(), pc.fill_null(_strings(column.text), "null"), out)
    return out


def _name(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def json_objects(names: Sequence[str], values: Sequence[pa.Array], n: int) -> pa.Array:
    """``{"name":value,...}`` per row; a NULL value leaves its member out (as a missing key)."""
    if not values:
        return pa.array(["{}"] * n, pa.string())
    # Each member with a comma before it, or "" for a NULL value; the first comma is cut. (Joining with
    # null_handling="skip" instead drops the rows whose values are all NULL: pyarrow 26 returns fewer rows.)
    members = [
        pc.fill_null(pc.binary_join_element_wise(f",{_name(name)}:", v, ""), "")
        for name, v in zip(names, values, strict=True)
    ]
    inner = pc.utf8_slice_codeunits(pc.binary_join_element_wise(*members, ""), 1)
    return pc.binary_join_element_wise("{", inner, "}", "")


def record_keys(key: Sequence[str], columns: Sequence[Column], n: int) -> pa.Array:
    """The ``record_key`` JSON of each row, in key-column order."""
    return json_objects(list(key), [json_column(c) for c in columns], n)


def _pairs(before: Column, after: Column) -> pa.Array:
    return pc.binary_join_element_wise("[", json_column(before), ",", json_column(after), "]", "")


def changes(
    fields: Sequence[str], before: Sequence[Column], after: Sequence[Column], differs: np.ndarray[Any, Any]
) -> pa.Array:
    """``{"field":[before,after],...}`` per row over the fields whose flag in ``differs`` (fields x rows) is set;
    NULL for a row without any."""
    n = differs.shape[1] if differs.ndim == 2 else 0
    values = []
    for i in range(len(fields)):
        # Only the values of the rows where the field differs are rendered (a record changes few of its fields).
        where = np.flatnonzero(differs[i])
        if len(where) < n:
            take = pa.array(where, pa.int64())
            pair = _pairs(before[i].take(take), after[i].take(take))
            values.append(pc.replace_with_mask(pa.nulls(n, pa.string()), pa.array(differs[i]), pair))
        else:
            values.append(_pairs(before[i], after[i]))
    objects = json_objects(list(fields), values, n)
    return pc.if_else(pa.array(differs.any(axis=0)), objects, pa.scalar(None, pa.string()))


__all__ = ["changes", "json_column", "json_objects", "json_values", "record_keys"]
