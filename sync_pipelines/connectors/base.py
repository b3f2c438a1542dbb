"""What the engine calls on a connector: one protocol per role.

A table sync reads a :class:`SourceReader` (a :class:`RangeSourceReader` when it can also read a cursor
window, a key range or its cursor maximum, as SQL sources do) and writes a :class:`TargetWriter`. A
host-metrics sync queries a :class:`HostMetricsReader` and writes a :class:`HostWriter` (the CMDB).
The protocols are runtime-checkable, so a kind's factories are checked when they build a connector.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine

    from sync_pipelines.config.elasticsearch import CmdbTarget
    from sync_pipelines.config.models import SqlTarget, SyncConfig
    from sync_pipelines.connectors.cmdb import HostResult
    from sync_pipelines.connectors.dialects.base import SqlBackend
    from sync_pipelines.connectors.es_hosts import HostMetrics
    from sync_pipelines.connectors.sql_source import KeyRange, SourceBatch
    from sync_pipelines.connectors.sql_target import SyncState

Window = tuple[dt.datetime, dt.datetime]
"""A cursor window ``[start, end)`` (a partitioned run)."""


@runtime_checkable
class SourceReader(Protocol):
    """A source of rows for a table sync: its column types, a row count for progress, and the rows in batches."""

    endpoint: str

    def arrow_schema(self) -> dict[str, pa.DataType]:
        """Arrow type of every column read."""

    def count(self, watermark: dict[str, Any] | None, *, incremental: bool) -> int | None:
        """How many rows :meth:`read` will yield; None when the source cannot tell in advance (an HTTP API)."""

    def read(self, watermark: dict[str, Any] | None, *, incremental: bool) -> Iterator[SourceBatch]:
        """Batches after ``watermark`` (incremental) or of every row."""


@runtime_checkable
class RangeSourceReader(SourceReader, Protocol):
    """A source that can also read a cursor window (partitions), a key range (parallel full reads) and
    report its cursor maximum (the source-change sensor)."""

    def count(self, watermark: dict[str, Any] | None, *, incremental: bool, window: Window | None = None) -> int: ...

    def read(
        self,
        watermark: dict[str, Any] | None,
        *,
        incremental: bool,
        window: Window | None = None,
        key_range: KeyRange | None = None,
    ) -> Iterator[SourceBatch]: ...

    def key_boundaries(self, chunks: int) -> list[Any]:
        """Sorted distinct key values splitting the source into about ``chunks`` ranges of equal size."""

    def high_water_mark(self) -> Any:
        """``MAX(cursor)`` of the rows read, JSON-encoded; None for an empty source."""

    def read_keys(self, batch_size: int = 200_000) -> Iterator[pa.Table]:
        """The key columns of every row read (filters applied, no watermark), in batches: the key scan of an
        incremental sync with ``delete_missing``."""

    def close(self) -> None:
        """Release the reader's connections."""


@runtime_checkable
class TargetWriter(Protocol):
    """A SQL table target with the sync's bookkeeping tables, as the load driver and the classifier use it.

    Rows themselves are read and written in bulk through :attr:`backend` (``read_arrow``, ``insert_arrow``,
    ``upsert_arrow``, ``delete_arrow``); the writer holds the tables, the sync's state, its outcomes, the
    keys a full read saw (deletes by key difference) and its lease.
    """

    config: SyncConfig
    target: SqlTarget
    engine: Engine
    endpoint: str
    backend: SqlBackend
    metadata: sa.MetaData
    state_table: sa.Table
    records_table: sa.Table
    table: sa.Table | None
    seen_table: sa.Table | None

    def prepare(self, schema: dict[str, pa.DataType]) -> sa.Table: ...
    def prepare_seen_definition(self) -> None: ...
    def read_state(self, conn: Connection) -> SyncState: ...
    def current_state(self) -> SyncState: ...
    def save_state(self, conn: Connection, state: SyncState) -> None: ...
    def record_outcomes(self, conn: Connection, rows: list[dict[str, Any]]) -> None: ...
    def reset_seen(self, conn: Connection) -> None: ...
    def count_missing(self, conn: Connection, seen: sa.Table) -> tuple[int, int]: ...
    def missing_keys(self, conn: Connection, seen: sa.Table, limit: int | None = None) -> list[tuple[Any, ...]]: ...
    def delete_keys(self, conn: Connection, keys: list[tuple[Any, ...]]) -> None: ...
    def temp_seen_table(self, conn: Connection) -> sa.Table: ...
    def read_all_keys(self, conn: Connection, schema: pa.Schema) -> pa.Table: ...
    def last_key_scan(self, conn: Connection) -> dt.datetime | None: ...
    def record_key_scan(
        self, conn: Connection, run_id: str, scanned_at: dt.datetime, *, source: int, target: int, deleted: int
    ) -> None: ...
    def lease(
        self,
        run_id: str,
        timeout_s: float = 60.0,
        *,
        slots: int = 0,
        on_wait: Callable[[str], None] | None = None,
        behind_shared_s: float | None = None,
    ) -> AbstractContextManager[None]: ...


@runtime_checkable
class HostMetricsReader(Protocol):
    """Per-host metrics over a time range; one host's failure is that host's status."""

    endpoint: str

    def discover(self, group: str, time_range: str) -> list[str]:
        """The IPs of the hosts of ``group`` with data points in the range."""

    def query_hosts(
        self, host_ips: list[str], time_range: str, stop_requested: threading.Event | None = None
    ) -> list[HostMetrics]:
        """Each host's metrics, in ``host_ips`` order."""

    def close(self) -> None:
        """Release the reader's connections."""


@runtime_checkable
class HostWriter(Protocol):
    """The CMDB: its host pool, the resources per host and every host's outcome."""

    config: SyncConfig
    target: CmdbTarget
    engine: Engine
    endpoint: str

    def lease(self) -> AbstractContextManager[None]: ...
    def prepare(self) -> None: ...
    def pool(self, host_ips: Iterable[str] | None = None) -> dict[str, int]: ...
    def write(
        self,
        conn: Connection,
        hosts: Sequence[HostMetrics],
        *,
        run_id: str,
        register: bool,
        query_time_range: str,
        batch: int = 0,
        dry_run: bool = False,
    ) -> list[HostResult]: ...
    def recorded(self, run_id: str, host_ips: Sequence[str]) -> list[HostResult]: ...


__all__ = ["HostMetricsReader", "HostWriter", "RangeSourceReader", "SourceReader", "TargetWriter", "Window"]
