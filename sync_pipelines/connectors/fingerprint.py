"""Dialect-independent forms of synced values, and the format-2 hashes of records and keys built from them.

Format-3 baselines hash with :mod:`~sync_pipelines.connectors.rowhash`; the hashes here still name a record
in ``_sync_conflicts`` (:func:`key_hash`) and judge the baselines an upgrade kept from format 2.

A value read back from PostgreSQL, MariaDB or SQLite must hash like the staged value that was
written, whatever the driver returns (``1`` for a MariaDB boolean, ``Decimal('1.50')`` for a
``decimal(12,1)`` value, an aware datetime from a ``timestamptz`` column, text from SQLite). Each
value is therefore normalised by the field's declared type before it is hashed or compared.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sync_pipelines.config.models import decimal_parts

_TRUE_TEXT = {"1", "true", "t", "yes", "y", "on"}


def _datetime(value: Any) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()).isoformat(timespec="microseconds")
    raise TypeError(f"not a datetime: {value!r}")


def _date(value: Any) -> str:
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not a date: {value!r}")


def _decimal(value: Any, quantum: Decimal) -> str:
    number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    return str(number.quantize(quantum))


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return bool(value)


def _float(value: Any) -> str:
    return repr(float(value))


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "boolean": _boolean,
    "integer": int,
    "float": _float,
    "datetime": _datetime,
    "date": _date,
}


@functools.lru_cache(maxsize=512)
def _converter(type_name: str) -> Callable[[Any], Any] | None:
    """The conversion of a declared type (looked up once per type name, not once per value)."""
    parts = decimal_parts(type_name)
    if parts is not None:
        return functools.partial(_decimal, quantum=Decimal(1).scaleb(-parts[1]))
    return _CONVERTERS.get(type_name)


_FAILED_CONVERSION = (ValueError, TypeError, ArithmeticError, InvalidOperation)


def _unconverted(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def normalise(value: Any, type_name: str) -> Any:
    """The JSON-safe, dialect-independent form of ``value`` for a field of declared type ``type_name``.

    Values that do not fit the type (a hand-edited text in a number column, say) keep their text
    form, so they still compare and hash, as different from any proper value.
    """
    if value is None:
        return None
    convert = _converter(type_name)
    if convert is not None:
        try:
            return convert(value)
        except _FAILED_CONVERSION:
            pass
    return _unconverted(value)


def normalise_row(row: Mapping[str, Any], types: Mapping[str, str], columns: Sequence[str]) -> dict[str, Any]:
    """``columns`` of ``row`` in normalised form (see :func:`normalise`)."""
    return {c: normalise(row.get(c), types.get(c, "string")) for c in columns}


_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))

HASH_BYTES = 8
"""Hashes are the first 8 bytes of the SHA-256 of the JSON text, read as a signed big-endian ``bigint``.

A fixed-width integer indexes and compares faster than hex text, and every dialect stores it in a
``bigint``. Being a prefix of the SHA-256 that earlier bookkeeping stored as 64 hex characters, an
old hash converts to the new one exactly (:func:`hash_from_hex`), so an upgraded project keeps its
baselines. Over the records of one sync, 64 bits make an accidental collision negligible (about
2.7e-8 at a million records)."""


def text_hash(text: str) -> int:
    """The 64-bit hash of a JSON text (see :data:`HASH_BYTES`)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:HASH_BYTES], "big", signed=True)


def hash_from_hex(hex_digest: str) -> int:
    """The 64-bit hash of a text whose full SHA-256 is ``hex_digest`` (the earlier bookkeeping format)."""
    return int.from_bytes(bytes.fromhex(hex_digest[: 2 * HASH_BYTES]), "big", signed=True)


def _digest(payload: Any) -> int:
    return text_hash(_ENCODER.encode(payload))


def values_hash(values: Mapping[str, Any]) -> int:
    """The hash of normalised field values (as returned by :func:`normalise_row`)."""
    return _digest(dict(values))


def key_hash(key: Sequence[Any], key_types: Sequence[str]) -> int:
    """The hash identifying a record by its key values, the same whichever side they were read from."""
    return _digest([normalise(v, t) for v, t in zip(key, key_types, strict=True)])
