"""Column types that keep values whole on every dialect (declared with SQLAlchemy type variants).

MariaDB's ``TEXT`` and ``BLOB`` stop at 64 KB, less than one PostgreSQL or SQLite value can hold; a
longer value would fail its whole batch. These types are ``LONGTEXT`` / ``LONGBLOB`` there.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
"""Text of any length: target data columns and the JSON of values kept in bookkeeping tables."""

LONG_BINARY = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
"""Bytes of any length."""


def timestamp_type(*, timezone: bool = False) -> sa.types.TypeEngine[Any]:
    """A timestamp to the microsecond (MariaDB's plain ``DATETIME`` keeps whole seconds)."""
    return sa.DateTime(timezone=timezone).with_variant(mysql.DATETIME(fsp=6, timezone=timezone), "mysql", "mariadb")


__all__ = ["LONG_BINARY", "LONG_TEXT", "timestamp_type"]
