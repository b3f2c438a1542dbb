"""Arrow types for declared field types and JSON-safe encoding of cursor / key values."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sync_pipelines.config.models import decimal_parts

_SIMPLE = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
}


def arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type of a declared field type (``string``, ``decimal(12,2)``...)."""
    parts = decimal_parts(type_name)
    if parts:
        return pa.decimal128(*parts)
    return _SIMPLE[type_name]


def type_name(arrow: pa.DataType) -> str:
    """A declared type name for an Arrow type (the inverse of :func:`arrow_type`, loosely)."""
    if pa.types.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    if pa.types.is_integer(arrow):
        return "integer"
    if pa.types.is_floating(arrow):
        return "float"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_date(arrow):
        return "date"
    if pa.types.is_timestamp(arrow):
        return "datetime"
    return "string"


def encode(value: Any) -> Any:
    """A JSON-safe form of a cursor, key or field value that :func:`decode` turns back."""
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        if tag == "$datetime":
            return dt.datetime.fromisoformat(text)
        if tag == "$date":
            return dt.date.fromisoformat(text)
        if tag == "$decimal":
            return Decimal(text)
        if tag == "$bytes":
            return bytes.fromhex(text)
    return value


def display(value: Any) -> Any:
    """A readable JSON value (datetimes and decimals as strings) for outcomes and metadata."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def dumps(value: Any) -> str:
    """Compact JSON with readable datetimes and decimals."""
    return json.dumps(value, default=display, ensure_ascii=False, separators=(",", ":"))


def same(a: Any, b: Any) -> bool:
    """Whether a target value and a new value are equal, tolerant of driver representations."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b)
    if isinstance(b, Decimal | float | int) and isinstance(a, Decimal | float | int):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except ArithmeticError:
            return False
    if isinstance(b, dt.datetime) and isinstance(a, dt.datetime):
        if (a.tzinfo is None) != (b.tzinfo is None):
            a = a.astimezone(dt.UTC).replace(tzinfo=None) if a.tzinfo else a
            b = b.astimezone(dt.UTC).replace(tzinfo=None) if b.tzinfo else b
        return a == b
    if isinstance(b, dt.datetime) and isinstance(a, str):
        try:
            return same(dt.datetime.fromisoformat(a), b)
        except ValueError:
            return False
    if isinstance(b, dt.date) and isinstance(a, str):
        return a == b.isoformat()
    return bool(a == b)
