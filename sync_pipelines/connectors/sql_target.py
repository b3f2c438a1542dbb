"""SQL targets: the target table and the sync's bookkeeping tables beside it (state, outcomes, seen keys, lease)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SqlTarget, SyncConfig
from sync_pipelines.connectors import bookkeeping, record_sets
from sync_pipelines.connectors.baselines import short_name
from sync_pipelines.connectors.column_types import LONG_BINARY, LONG_TEXT, timestamp_type
from sync_pipelines.connectors.dialects import backend, sync_lease
from sync_pipelines.connectors.sql import add_missing_columns, create_sql_engine, reflect_columns, translate_errors
from sync_pipelines.errors import PermanentConnectorError


def sql_type_of(arrow: pa.DataType, *, key: bool) -> sa.types.TypeEngine[Any]:
    """The column type used when a target table is created from the staged schema."""
    if pa.types.is_boolean(arrow):
        return sa.Boolean()
    if pa.types.is_integer(arrow):
        return sa.BigInteger()
    if pa.types.is_floating(arrow):
        return sa.Double()
    if pa.types.is_decimal(arrow):
        return sa.Numeric(arrow.precision, arrow.scale)
    if pa.types.is_timestamp(arrow):
        tz = arrow.tz is not None
        return timestamp_type(timezone=tz)
    if pa.types.is_date(arrow):
        return sa.Date()
    if pa.types.is_binary(arrow):
        return LONG_BINARY
    return sa.String(255) if key else LONG_TEXT


@dataclass
class SyncState:
    """The committed position of a sync in its target database."""

    watermark: dict[str, Any] | None = None
    version: int = 0
    last_run_id: str | None = None
    last_batch: int = -1


_OUTCOMES = pa.schema(
    [
        ("run_id", pa.string()),
        ("sync", pa.string()),
        ("batch", pa.int32()),
        ("record_key", pa.string()),
        ("entity", pa.string()),
        ("action", pa.string()),
        ("changes", pa.string()),
        ("error", pa.string()),
        ("recorded_at", pa.timestamp("us")),
    ]
)
"""The columns of ``_sync_records`` a run writes (the id is the database's)."""


class SqlTargetWriter:
    """Reads, upserts and deletes target rows; keeps the `_sync_*` bookkeeping tables beside them."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.target, SqlTarget)
        self.config = config
        self.target: SqlTarget = config.target
        self.engine, self.endpoint = create_sql_engine(
            self.target.url, where=f"{config.name}: target.url", bulk_load=True
        )
        self.backend = backend(self.engine)
        self.metadata = sa.MetaData(schema=self.target.db_schema)
        self.state_table = bookkeeping.state_table(self.metadata)
        self.records_table = bookkeeping.records_table(self.metadata)
        self.key_scans_table = bookkeeping.key_scans_table(self.metadata)
        self.table: sa.Table | None = None
        self.seen_table: sa.Table | None = None

    # -- schema

    def prepare(self, schema: dict[str, pa.DataType]) -> sa.Table:
        """Create the bookkeeping tables, and the target table if allowed; check the target's columns."""
        problems = [f"{n!r} {why}" for n in (self.target.table, *schema) if (why := self.backend.identifier_problem(n))]
        if problems:
            raise PermanentConnectorError(
                f"name(s) {'; '.join(problems)}; rename them in the sync's mapping or target.table",
                endpoint=self.endpoint,
            )
        with translate_errors(self.endpoint, "preparing the target"), self.engine.begin() as conn:
            self.metadata.create_all(
                conn,
                tables=[
                    self.state_table,
                    self.records_table,
                    self.key_scans_table,
                    record_sets.record_sets_table(self.metadata),
                ],
            )
            inspector = sa.inspect(conn)
            add_missing_columns(conn, inspector, self.records_table)
            bookkeeping.upgrade_records(conn, self.records_table)
            if not inspector.has_table(self.target.table, schema=self.target.db_schema):
                if not self.target.create:
                    raise PermanentConnectorError(
                        f"target table {self.target.table!r} does not exist and target.create is false",
                        endpoint=self.endpoint,
                    )
                columns = [
                    sa.Column(
                        name,
                        sql_type_of(t, key=name in self.target.key),
                        primary_key=name in self.target.key,
                        autoincrement=False,
                    )
                    for name, t in schema.items()
                ]
                sa.Table(self.target.table, sa.MetaData(schema=self.target.db_schema), *columns).create(conn)
            table = reflect_columns(conn, self.target.table, self.target.db_schema)
            missing = [c for c in schema if c not in table.c]
            if missing:
                raise PermanentConnectorError(
                    f"target table {self.target.table!r} has no column(s) {', '.join(missing)}",
                    endpoint=self.endpoint,
                )
            self.table = table
            self.prepare_seen_definition()
            return table

    def prepare_seen_definition(self) -> None:
        """Define (not create) the table of keys seen in a full sync, typed like the target's key."""
        assert self.table is not None
        key_cols = [(k, self.table.c[k].type) for k in self.target.key]
        name = short_name(self.config.name, bookkeeping.SEEN_PREFIX)
        if name in self.metadata.tables or f"{self.target.db_schema}.{name}" in self.metadata.tables:
            self.metadata.remove(
                self.metadata.tables[f"{self.target.db_schema}.{name}" if self.target.db_schema else name]
            )
        self.seen_table = bookkeeping.seen_table(self.metadata, name, key_cols)

    # -- state

    def read_state(self, conn: Connection) -> SyncState:
        row = (
            conn.execute(sa.select(self.state_table).where(self.state_table.c.sync == self.config.name))
            .mappings()
            .first()
        )
        if row is None:
            return SyncState()
        return SyncState(
            watermark=_loads(row["watermark"]),
            version=int(row["version"]),
            last_run_id=row["last_run_id"],
            last_batch=int(row["last_batch"]),
        )

    def current_state(self) -> SyncState:
        with translate_errors(self.endpoint, "reading the sync state"), self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(bookkeeping.STATE_TABLE, schema=self.target.db_schema):
                return SyncState()
            return self.read_state(conn)

    def save_state(self, conn: Connection, state: SyncState) -> None:
        values = {
            "watermark": _dumps_or_none(state.watermark),
            "version": state.version,
            "last_run_id": state.last_run_id,
            "last_batch": state.last_batch,
            "updated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
        updated = conn.execute(
            sa.update(self.state_table).where(self.state_table.c.sync == self.config.name).values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(sa.insert(self.state_table).values(sync=self.config.name, **values))

    # -- rows

    def key_columns(self) -> list[sa.Column[Any]]:
        assert self.table is not None
        return [self.table.c[k] for k in self.target.key]

    def record_outcomes(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Append outcome rows (see :func:`~sync_pipelines.connectors.bookkeeping.outcome_rows`) in bulk."""
        if rows:
            self.backend.insert_arrow(conn, self.records_table, pa.Table.from_pylist(rows, schema=_OUTCOMES))

    # -- deletes (full sync with delete_missing)

    def reset_seen(self, conn: Connection) -> None:
        assert self.seen_table is not None
        if bookkeeping.upgrade_seen(conn, self.seen_table):
            conn.execute(sa.delete(self.seen_table))
        else:
            self.seen_table.create(conn)

    def _missing_condition(self, seen: sa.Table) -> sa.ColumnElement[bool]:
        assert self.table is not None
        match = sa.and_(*[seen.c[k] == self.table.c[k] for k in self.target.key])
        return ~sa.exists().where(match)

    def count_missing(self, conn: Connection, seen: sa.Table) -> tuple[int, int]:
        """``(rows the source no longer has, rows in the target)``."""
        assert self.table is not None
        total = conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()
        missing = conn.execute(
            sa.select(sa.func.count()).select_from(self.table).where(self._missing_condition(seen))
        ).scalar_one()
        return int(missing), int(total)

    def missing_keys(self, conn: Connection, seen: sa.Table, limit: int | None = None) -> list[tuple[Any, ...]]:
        query = sa.select(*self.key_columns()).where(self._missing_condition(seen))
        if limit is not None:
            query = query.limit(limit)
        return [tuple(r) for r in conn.execute(query)]

    def delete_keys(self, conn: Connection, keys: list[tuple[Any, ...]]) -> None:
        """Delete the target rows of ``keys`` (key tuples as read from the target)."""
        assert self.table is not None
        if keys:
            columns = list(zip(*keys, strict=True))
            self.backend.delete_arrow(
                conn,
                self.table,
                pa.table({k: pa.array(list(v)) for k, v in zip(self.target.key, columns, strict=True)}),
            )

    # -- key scans (incremental sync with delete_missing)

    def read_all_keys(self, conn: Connection, schema: pa.Schema) -> pa.Table:
        """Every key of the target table (columns of ``schema``), read in bulk through the backend."""
        assert self.table is not None
        return self.backend.scan_arrow(conn, self.table, list(self.target.key), schema)

    def last_key_scan(self, conn: Connection) -> dt.datetime | None:
        """When this sync's source keys were last compared with the target's (naive UTC); None: never."""
        if not sa.inspect(conn).has_table(bookkeeping.KEY_SCANS_TABLE, schema=self.target.db_schema):
            return None
        scans = self.key_scans_table
        value = conn.execute(sa.select(scans.c.scanned_at).where(scans.c.sync == self.config.name)).scalar()
        return value if isinstance(value, dt.datetime) else None

    def record_key_scan(
        self, conn: Connection, run_id: str, scanned_at: dt.datetime, *, source: int, target: int, deleted: int
    ) -> None:
        """Remember this run's key scan (in the caller's transaction, beside its deletes)."""
        scans = self.key_scans_table
        conn.execute(sa.delete(scans).where(scans.c.sync == self.config.name))
        conn.execute(
            sa.insert(scans).values(
                sync=self.config.name,
                run_id=run_id,
                scanned_at=scanned_at,
                source_keys=source,
                target_keys=target,
                deleted=deleted,
            )
        )

    def temp_seen_table(self, conn: Connection) -> sa.Table:
        """A session-scoped copy of the seen-keys table, for dry runs that must write nothing."""
        assert self.seen_table is not None
        key = [(c.name, c.type) for c in self.seen_table.columns]
        temp = bookkeeping.seen_table(sa.MetaData(), "_sync_dry_seen", key, temporary=True)
        temp.create(conn)
        return temp

    # -- lease

    @contextlib.contextmanager
    def lease(
        self,
        run_id: str,
        timeout_s: float = 60.0,
        *,
        slots: int = 0,
        on_wait: Callable[[str], None] | None = None,
        behind_shared_s: float | None = None,
    ) -> Iterator[None]:
        """Hold the per-sync lease while loading: alone (``slots=0``), or shared by at most ``slots`` partition
        runs (see :func:`~sync_pipelines.connectors.dialects.sync_lease`)."""
        with (
            translate_errors(self.endpoint, "taking the sync lease"),
            sync_lease(
                self.engine,
                self.config.name,
                timeout_s,
                slots=slots,
                on_wait=on_wait,
                behind_shared_s=behind_shared_s,
            ),
        ):
            yield


def _dumps_or_none(value: Any) -> str | None:
    import json

    return None if value is None else json.dumps(value)


def _loads(text: str | None) -> Any:
    import json

    return None if text is None else json.loads(text)
