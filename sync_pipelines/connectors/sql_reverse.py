"""Writing target-side changes back into a SQL source table (bidirectional syncs).

Rows arrive with the target's column names and values; they are renamed through the sync's mapping
and converted to the source columns' types before being written, keyed by the source key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SqlSource, SyncConfig
from sync_pipelines.connectors.sql import create_sql_engine, translate_errors
from sync_pipelines.connectors.values import display
from sync_pipelines.errors import PermanentConnectorError


def _to_column(value: Any, column_type: sa.types.TypeEngine[Any]) -> Any:
    """``value`` converted to what a source column of ``column_type`` stores."""
    if value is None:
        return None
    if isinstance(column_type, sa.Boolean):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "t", "yes")
    if isinstance(column_type, sa.Integer):
        return int(value)
    if isinstance(column_type, sa.Float):
        return float(value)
    if isinstance(column_type, sa.Numeric):
        return Decimal(str(value))
    if isinstance(column_type, sa.DateTime):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime) and value.tzinfo is not None and not column_type.timezone:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(column_type, sa.Date):
        return dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
    if isinstance(column_type, sa.String) and not isinstance(value, str):
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=" ")
        return str(display(value))
    return value


class SqlSourceWriter:
    """Creates, updates and deletes rows of a sync's SQL source table, by the source key."""

    def __init__(self, config: SyncConfig):
        if not isinstance(config.source, SqlSource) or config.source.table is None:
            raise PermanentConnectorError(f"sync {config.name}: only a SQL source table can be written back")
        self.config = config
        self.source: SqlSource = config.source
        self.engine, self.endpoint = create_sql_engine(self.source.url, where=f"{config.name}: source.url")
        self._table: sa.Table | None = None
        self.key = config.source_key

    def table(self, conn: Connection) -> sa.Table:
        """The reflected source table."""
        if self._table is None:
            self._table = sa.Table(
                self.source.table or "", sa.MetaData(schema=self.source.db_schema), autoload_with=conn
            )
        return self._table

    def to_source(self, conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
        """A target row as source column values."""
        table = self.table(conn)
        out: dict[str, Any] = {}
        for target_column, value in row.items():
            name = self.config.source_column(target_column)
            if name is None or name not in table.c:
                continue
            try:
                out[name] = _to_column(value, table.c[name].type)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise PermanentConnectorError(
                    f"sync {self.config.name}: cannot write {target_column}={display(value)!r} back to source "
                    f"column {name} ({table.c[name].type}): {exc}",
                    endpoint=self.endpoint,
                ) from None
        return out

    def _where(self, table: sa.Table, values: dict[str, Any]) -> sa.ColumnElement[bool]:
        return sa.and_(*[table.c[k] == values[k] for k in self.key])

    def write(self, rows: Sequence[dict[str, Any]], action: str = "writing changes back to the source") -> None:
        """Create or update ``rows`` (target column names) in the source, in one transaction."""
        if not rows:
            return
        with translate_errors(self.endpoint, action), self.engine.begin() as conn:
            table = self.table(conn)
            for row in rows:
                values = self.to_source(conn, row)
                updated = conn.execute(sa.update(table).where(self._where(table, values)).values(**values))
                if updated.rowcount == 0:
                    conn.execute(sa.insert(table).values(**values))

    def delete(self, keys: Sequence[dict[str, Any]]) -> None:
        """Delete the source rows with these keys (target column names), in one transaction."""
        if not keys:
            return
        with translate_errors(self.endpoint, "deleting from the source"), self.engine.begin() as conn:
            table = self.table(conn)
            for key in keys:
                conn.execute(sa.delete(table).where(self._where(table, self.to_source(conn, key))))

    def count(self) -> int:
        """Rows in the source table."""
        with translate_errors(self.endpoint, "counting source rows"), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table(conn))).scalar_one())
