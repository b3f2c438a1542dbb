"""The one rule for table, schema and column names, whatever the target kind.

A name is data, never SQL: every name is quoted by SQLAlchemy when it is used, so ``;``, quotes,
spaces and non-ASCII letters are allowed. What is refused is what no database keeps as written, or
what a reader cannot see: an empty name, more than 63 bytes (PostgreSQL's limit), a control or
invisible format character, spaces at either end, and the backtick (MariaDB/MySQL cannot quote it
through every driver), so that a file valid for one database is valid for all.
"""

from __future__ import annotations

import unicodedata

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL truncates longer names silently; MariaDB/MySQL allow 64 characters."""
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_identifier(value: str) -> str:
    """Validate a table, schema or column name; returns it unchanged.

    Raises:
        ValueError: naming the name (escaped) and what is wrong with it.
    """
    if not value:
        raise ValueError("name is empty")
    if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"name {value!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if value != value.strip():
        raise ValueError(f"name {value!r} starts or ends with a space")
    if "`" in value:
        raise ValueError(f"name {value!r} contains a backtick")
    hidden = [ch for ch in value if unicodedata.category(ch) in _INVISIBLE_CATEGORIES]
    if hidden:
        raise ValueError(f"name {value!r} contains the control or invisible character U+{ord(hidden[0]):04X}")
    return value


def check_optional_identifier(value: str | None) -> str | None:
    """:func:`check_identifier` for a name that may be left out."""
    return None if value is None else check_identifier(value)


def check_identifiers(values: list[str]) -> list[str]:
    """:func:`check_identifier` for every name of a list."""
    for value in values:
        check_identifier(value)
    return values


__all__ = ["MAX_IDENTIFIER_BYTES", "check_identifier", "check_identifiers", "check_optional_identifier"]
