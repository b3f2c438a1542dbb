"""Deletes of records the source no longer has: found by key difference, written column-wise.

A full sync with ``delete_missing`` knows the keys it read (the seen-keys table). An incremental run
reads only what changed, so it scans the source's keys instead: one narrow ``SELECT key FROM source
WHERE filter`` (:meth:`~sync_pipelines.connectors.sql_source.SqlSourceReader.read_keys`), compared
with every key of the target (:meth:`~sync_pipelines.connectors.dialects.base.SqlBackend.scan_arrow`)
by a hash lookup in Arrow. Either way the target rows whose key is missing are deleted in the run's
last transaction, under the ``max_delete_ratio`` guard, each with a ``deleted`` outcome holding its key
and its last values. ``delete_scan`` (:func:`scan_due`) lets a large table scan hourly or daily.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.render import json_column, json_objects, record_keys
from sync_pipelines.connectors.rowhash import Column, column_of
from sync_pipelines.connectors.values import display
from sync_pipelines.kinds import range_reader
from sync_pipelines.types import DeleteScan, RecordAction, RecordOutcome


def scan_due(config: SyncConfig, last: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a run at ``now`` (naive UTC) scans the source's keys, the last scan having been at ``last``.

    ``every_run`` always; ``hourly`` when the last scan lies in an earlier clock hour (UTC); ``daily`` when it
    lies on an earlier day in the sync's ``timezone``. A sync never scanned scans.
    """
    if last is None or config.delete_scan is DeleteScan.EVERY_RUN:
        return True
    if config.delete_scan is DeleteScan.HOURLY:
        hour = dt.timedelta(hours=1)
        return (now - dt.datetime.min) // hour > (last - dt.datetime.min) // hour
    zone = ZoneInfo(config.timezone)
    return _local_day(now, zone) > _local_day(last, zone)


def _local_day(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    return moment.replace(tzinfo=dt.UTC).astimezone(zone).date()


@dataclass
class KeyScan:
    """The source's keys as one run scanned them."""

    keys: pa.Table
    """Target key columns of their declared types (text where a value does not fit)."""
    at: dt.datetime
    """When the scan started (naive UTC)."""
    seconds: float
    """How long reading the source's keys took."""


def scan_source_keys(config: SyncConfig, types: dict[str, str]) -> pa.Table:
    """Every key the source holds for this sync (filters applied), as target key columns of their declared types.

    Keys that do not convert, or are NULL, are left out: such rows fail in every run, so their target rows
    (if any) count as gone, as in a full sync.
    """
    reader = range_reader(config)
    try:
        batches = list(reader.read_keys())
    finally:
        reader.close()
    key = list(config.target.key)
    sources = config.source_key
    columns = []
    for name, source in zip(key, sources, strict=True):
        columns.append(comparable(column_of(_joined(batches, source), types.get(name, "string"))))
    table = pa.Table.from_arrays(columns, names=key)
    valid = None
    for column in table.columns:
        present = pc.is_valid(column)
        valid = present if valid is None else pc.and_(valid, present)
    return table if valid is None else table.filter(valid)


def _joined(batches: list[pa.Table], name: str) -> pa.ChunkedArray:
    """Column ``name`` of every batch, as text when the batches read it as different types."""
    parts = [chunk for b in batches for chunk in b.column(name).chunks]
    if not parts:
        return pa.chunked_array([], pa.null())
    if len({p.type for p in parts}) > 1:
        parts = [pc.cast(p, pa.string()) for p in parts]
    return pa.chunked_array(parts)


def comparable(column: Column) -> pa.Array:
    """A key column's values in its declared type, or as text where some value does not fit it."""
    if column.text is None:
        return column.typed
    return pc.if_else(column.text.is_valid(), column.text, pc.cast(column.typed, pa.string()))


def missing_keys(target: pa.Table, source: pa.Table) -> pa.Table:
    """The rows of ``target`` (key columns) whose key is not in ``source`` (the same columns), in any order.

    Hashed in Arrow: ``is_in`` for a single-column key, a left anti join for a composite one. A column typed
    differently on the two sides (one side kept some value as text) is compared as text.
    """
    names = target.column_names
    left, right = target, source.select(names)
    for i, name in enumerate(names):
        if left.schema.field(i).type != right.schema.field(i).type:
            left = left.set_column(i, name, pc.cast(left.column(i), pa.string()))
            right = right.set_column(i, name, pc.cast(right.column(i), pa.string()))
    if not left.num_rows:
        return target
    if len(names) == 1:
        found = pc.is_in(left.column(0), value_set=right.column(0).combine_chunks())
        return target.filter(pc.invert(found))
    row = "__sync_row"
    numbered = left.append_column(row, pa.array(range(left.num_rows), pa.int64()))
    gone = numbered.join(right, keys=names, join_type="left anti").column(row)
    return target.take(gone.take(pc.sort_indices(gone)))


def deleted_outcomes(rows: pa.Table, key: list[str], types: dict[str, str]) -> pa.Table:
    """``deleted`` outcome columns (``record_key``, ``action``, ``changes``, ``error``) of the target ``rows`` about
    to be deleted: each record's key, and its last values as ``{"field": [value, null]}``."""
    n = rows.num_rows
    columns = {name: column_of(rows.column(name), types.get(name, "string")) for name in rows.column_names}
    fields = [name for name in rows.column_names if name not in key]
    pairs = [pc.binary_join_element_wise("[", json_column(columns[f]), ",null]", "") for f in fields]
    return pa.table(
        {
            "record_key": record_keys(key, [columns[k] for k in key], n),
            "action": pa.array([RecordAction.DELETED.value] * n, pa.string()),
            "changes": json_objects(fields, pairs, n) if fields else pa.nulls(n, pa.string()),
            "error": pa.nulls(n, pa.string()),
        }
    )


def sample_outcomes(outcomes: pa.Table, limit: int) -> list[RecordOutcome]:
    """The first ``limit`` outcomes of :func:`deleted_outcomes` as :class:`RecordOutcome`."""
    head = outcomes.slice(0, limit).to_pylist()
    return [
        RecordOutcome(json.loads(r["record_key"]), RecordAction.DELETED, json.loads(r["changes"] or "{}")) for r in head
    ]


def key_outcomes(keys: pa.Table, limit: int) -> list[RecordOutcome]:
    """``deleted`` outcomes naming the first ``limit`` of ``keys`` (a dry run that reads no values)."""
    names = keys.column_names
    return [
        RecordOutcome({k: display(v) for k, v in zip(names, row, strict=True)}, RecordAction.DELETED)
        for row in zip(*(keys.column(k).slice(0, limit).to_pylist() for k in names), strict=True)
    ]


__all__ = ["KeyScan", "comparable", "deleted_outcomes", "key_outcomes", "missing_keys", "sample_outcomes", "scan_due"]
