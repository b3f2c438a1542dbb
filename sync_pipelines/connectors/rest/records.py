"""JSON records to staged Arrow columns: which columns a sync reads, their types, and each value's staged form.

A column is a dotted path into a record (``profile.email``); a missing field is NULL. A column whose
mapping declares a type is staged as that type (ISO-8601 text becomes dates and datetimes); any other
column takes the type of the values of the first page (objects and lists as JSON text). A value that
does not fit is staged as text, so that transform reports that record alone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.json_paths import dig
from sync_pipelines.connectors.values import arrow_type


def columns_of(config: SyncConfig, sample: Sequence[dict[str, Any]]) -> list[str]:
    """The paths a sync reads: the mapping's source paths, its key and cursor; without a mapping, every
    top-level field of the sample records (in first-seen order)."""
    if config.mapping:
        names = [column for target in config.mapping if (column := config.source_column(target)) is not None]
    else:
        names = [name for record in sample for name in record]
    names += [*config.source_key, *([config.cursor] if config.cursor else [])]
    return list(dict.fromkeys(names))


def declared_types(config: SyncConfig) -> dict[str, str]:
    """Source path -> the type its first mapped target column declares."""
    declared: dict[str, str] = {}
    for target, spec in config.mapping.items():
        column = config.source_column(target)
        if column is not None and spec.type and column not in declared:
            declared[column] = spec.type
    return declared


def staged_type(declared: str | None, values: Iterable[Any]) -> pa.DataType:
    """The Arrow type a column is staged as: its declared type (decimals as text), else the values' own."""
    if declared is not None:
        return pa.string() if declared.startswith("decimal") else arrow_type(declared)
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pa.bool_()
    if kinds and kinds <= {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def stage_value(value: Any, arrow: pa.DataType) -> Any:
    """``value`` as a column of type ``arrow`` holds it; left as it is when it does not fit."""
    if value is None:
        return None
    if pa.types.is_string(arrow):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if pa.types.is_timestamp(arrow) and isinstance(value, str):
        return _datetime(value)
    if pa.types.is_date(arrow) and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]) if len(value) >= 10 else value
        except ValueError:
            return value
    if pa.types.is_integer(arrow) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _datetime(text: str) -> Any:
    """ISO-8601 text as naive UTC; other text is left for transform to reject."""
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def to_row(record: dict[str, Any], types: dict[str, pa.DataType]) -> dict[str, Any]:
    """One record's staged values, by column path."""
    return {name: stage_value(dig(record, name), arrow) for name, arrow in types.items()}


def to_arrow(rows: Sequence[dict[str, Any]], types: dict[str, pa.DataType]) -> pa.Table:
    """Rows as an Arrow table; a column holding a value that does not fit its type is staged as text."""
    arrays = []
    for name, arrow in types.items():
        values = [row[name] for row in rows]
        try:
            arrays.append(pa.array(values, type=arrow))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=list(types))


__all__ = ["columns_of", "declared_types", "stage_value", "staged_type", "to_arrow", "to_row"]
