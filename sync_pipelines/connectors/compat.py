"""Which column types a mapping can cast, and schema drift: the source no longer fits the mapping.

Types are compared by family (string, integer, float, decimal, boolean, date, datetime, binary).
A cast is *possible* when some values of the source family convert to the declared type; text
always qualifies (a value that does not parse fails alone, as a failed record). A cast is
*impossible* when no value could convert, e.g. a date into an integer: that is drift, and a run
stops before writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from sync_pipelines.config.models import SyncConfig, decimal_parts
from sync_pipelines.errors import SchemaDriftError


class TypeFamily(StrEnum):
    """Broad kinds of column types, as far as casting between them is concerned."""

    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    BINARY = "binary"


_NUMBERS = {TypeFamily.INTEGER, TypeFamily.FLOAT, TypeFamily.DECIMAL}
_TIMES = {TypeFamily.DATE, TypeFamily.DATETIME}

CASTS: dict[TypeFamily, set[TypeFamily]] = {
    TypeFamily.STRING: set(TypeFamily) - {TypeFamily.BINARY},
    TypeFamily.INTEGER: {TypeFamily.STRING, TypeFamily.BOOLEAN, *_NUMBERS},
    TypeFamily.FLOAT: {TypeFamily.STRING, *_NUMBERS},
    TypeFamily.DECIMAL: {TypeFamily.STRING, *_NUMBERS},
    TypeFamily.BOOLEAN: {TypeFamily.STRING, TypeFamily.BOOLEAN, TypeFamily.INTEGER, TypeFamily.FLOAT},
    TypeFamily.DATE: {TypeFamily.STRING, *_TIMES},
    TypeFamily.DATETIME: {TypeFamily.STRING, *_TIMES},
    TypeFamily.BINARY: {TypeFamily.STRING, TypeFamily.BINARY},
}
"""Source family -> the declared families its values can be cast to."""


def family_of_declared(type_name: str) -> TypeFamily:
    """The family of a declared field type (``integer``, ``decimal(12,2)``...)."""
    if decimal_parts(type_name):
        return TypeFamily.DECIMAL
    return TypeFamily(type_name)


def family_of_arrow(arrow: pa.DataType) -> TypeFamily:
    """The family of an Arrow type, as a source column is staged."""
    checks = (
        (pa.types.is_boolean, TypeFamily.BOOLEAN),
        (pa.types.is_integer, TypeFamily.INTEGER),
        (pa.types.is_floating, TypeFamily.FLOAT),
        (pa.types.is_decimal, TypeFamily.DECIMAL),
        (pa.types.is_timestamp, TypeFamily.DATETIME),
        (pa.types.is_date, TypeFamily.DATE),
        (pa.types.is_binary, TypeFamily.BINARY),
        (pa.types.is_large_binary, TypeFamily.BINARY),
    )
    for check, family in checks:
        if check(arrow):
            return family
    return TypeFamily.STRING


def family_of_sql(column_type: sa.types.TypeEngine[Any]) -> TypeFamily:
    """The family of a SQL column type, as reflected from a target table."""
    checks: tuple[tuple[type[Any], TypeFamily], ...] = (
        (sa.Boolean, TypeFamily.BOOLEAN),
        (sa.Integer, TypeFamily.INTEGER),
        (sa.Float, TypeFamily.FLOAT),
        (sa.Numeric, TypeFamily.DECIMAL),
        (sa.DateTime, TypeFamily.DATETIME),
        (sa.Date, TypeFamily.DATE),
        (sa.LargeBinary, TypeFamily.BINARY),
        (sa.types._Binary, TypeFamily.BINARY),
    )
    for cls, family in checks:
        if isinstance(column_type, cls):
            return family
    return TypeFamily.STRING


def can_cast(source: TypeFamily, declared: TypeFamily) -> bool:
    """Whether values of family ``source`` can (at least some of them) be cast to ``declared``."""
    return declared in CASTS[source]


def can_store(declared: TypeFamily, column: TypeFamily) -> bool:
    """Whether a value of the declared family can be written into a target column of ``column`` family.

    Text columns take anything; SQLite columns declared as numbers or dates take text too, but the
    reflected family is what counts here.
    """
    if column is TypeFamily.STRING or declared is column:
        return True
    if declared in _NUMBERS and column in _NUMBERS:
        return True
    if declared in _TIMES and column in _TIMES:
        return True
    return {declared, column} <= {TypeFamily.BOOLEAN, TypeFamily.INTEGER}


@dataclass(frozen=True)
class Mismatch:
    """One mapped column whose source type the declared type cannot take."""

    target_column: str
    source_column: str
    source_type: str
    declared_type: str

    def __str__(self) -> str:
        return (
            f"source column {self.source_column!r} is {self.source_type}, which cannot be cast to "
            f"{self.declared_type} (mapping.{self.target_column}.type)"
        )


def type_mismatches(config: SyncConfig, source_types: dict[str, pa.DataType]) -> list[Mismatch]:
    """Mapped columns with a declared type that their source column's type cannot be cast to."""
    found = []
    for target, spec in config.mapping.items():
        if spec.type is None or spec.constant is not None:
            continue
        column = config.source_column(target) or target
        arrow = source_types.get(column)
        if arrow is None:
            continue  # Missing columns are reported by the reader, naming them.
        family = family_of_arrow(arrow)
        if not can_cast(family, family_of_declared(spec.type)):
            found.append(Mismatch(target, column, family.value, spec.type))
    return found


def check_drift(config: SyncConfig, source_types: dict[str, pa.DataType], endpoint: str | None = None) -> None:
    """Raise :class:`SchemaDriftError` naming every mapped column the source can no longer fill."""
    mismatches = type_mismatches(config, source_types)
    if mismatches:
        raise SchemaDriftError(
            f"schema drift in sync {config.name}: " + "; ".join(str(m) for m in mismatches), endpoint=endpoint
        )


__all__ = [
    "CASTS",
    "Mismatch",
    "TypeFamily",
    "can_cast",
    "can_store",
    "check_drift",
    "family_of_arrow",
    "family_of_declared",
    "family_of_sql",
    "type_mismatches",
]
