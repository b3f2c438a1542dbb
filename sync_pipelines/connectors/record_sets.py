"""``_sync_record_sets``: the outcomes without field-level change of one batch, stored as one row.

A run creates (and, with ``history.store_unchanged``, leaves unchanged) most of its records; their
outcome is nothing but the record key. Rather than one ``_sync_records`` row each, a batch writes
one row per action and entity holding the keys of its records as a zstd-compressed Parquet blob
(the key columns in key order, typed as the batch held them). Updated, deleted, failed and
conflicting records keep one ``_sync_records`` row each.

A reader expands a set with :func:`iter_set_records` into rows of the shape of ``_sync_records``,
whose ``record_key`` is byte for byte the text the per-record path writes for the same key.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from sync_pipelines.connectors.column_types import LONG_BINARY
from sync_pipelines.connectors.values import display, dumps
from sync_pipelines.types import RecordAction

RECORD_SETS_TABLE = "_sync_record_sets"
RECORD_SETS_RUN_INDEX = "ix__sync_record_sets_run"
"""The index of ``_sync_record_sets`` by run, action, entity and batch."""

SET_ACTIONS = frozenset({RecordAction.CREATED, RecordAction.UNCHANGED})
"""The actions whose outcomes carry no field-level change, the only ones stored as sets."""

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
"""An autoincrement id (SQLite autoincrements only ``INTEGER PRIMARY KEY``)."""

_COMPRESSION = "zstd"
_RENDER_ROWS = 10_000
"""Keys turned into Python values at a time when a set is expanded (memory stays bounded)."""


def record_sets_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_record_sets``: per batch, action and entity, the keys of the records with that outcome."""
    return sa.Table(
        RECORD_SETS_TABLE,
        metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("entity", sa.String(128)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("keys", LONG_BINARY, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Index(RECORD_SETS_RUN_INDEX, "run_id", "action", "entity", "batch"),
        extend_existing=True,
    )


def encode_keys(keys: pa.Table) -> bytes:
    """The key columns of ``keys`` (in their order) as a zstd-compressed Parquet file."""
    sink = io.BytesIO()
    pq.write_table(keys, sink, compression=_COMPRESSION)
    return sink.getvalue()


def decode_keys(blob: bytes) -> pa.Table:
    """The key columns stored by :func:`encode_keys`, in their order and types."""
    return pq.read_table(pa.BufferReader(blob))


def record_set_row(
    sync: str,
    entity: str | None,
    run_id: str,
    batch: int,
    action: RecordAction,
    keys: pa.Table,
    now: dt.datetime,
) -> dict[str, Any]:
    """The ``_sync_record_sets`` row of the records of ``keys`` (one batch) that ended with ``action``.

    Raises:
        ValueError: ``action`` carries field-level changes (see :data:`SET_ACTIONS`), or ``keys`` is empty.
    """
    if action not in SET_ACTIONS:
        raise ValueError(f"records with action {action.value!r} are stored one by one, not as a set")
    if keys.num_rows == 0 or keys.num_columns == 0:
        raise ValueError("a record set holds at least one record and one key column")
    return {
        "run_id": run_id,
        "sync": sync,
        "batch": batch,
        "entity": entity,
        "action": action.value,
        "count": keys.num_rows,
        "keys": encode_keys(keys),
        "recorded_at": now,
    }


def _key_value(value: Any) -> Any:
    # As the per-record path compares and renders keys (``connectors.sql.norm_key``): aware times in naive UTC.
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return display(value)


def record_keys(keys: pa.Table) -> Iterator[str]:
    """The ``record_key`` text of each row of ``keys``, as the per-record path writes it."""
    names = keys.column_names
    for start in range(0, keys.num_rows, _RENDER_ROWS):
        part = keys.slice(start, _RENDER_ROWS)
        columns = [part.column(name).to_pylist() for name in names]
        for values in zip(*columns, strict=True):
            yield dumps({name: _key_value(v) for name, v in zip(names, values, strict=True)})


def iter_set_records(row: Any, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
    """The records of a stored set (a ``_sync_record_sets`` row) as ``_sync_records`` rows, in stored order.

    ``start`` and ``stop`` select a slice of the set (positions as in ``range``), so a page of a large
    set renders only its own keys. The rows have no ``id`` of their own (None).
    """
    keys = decode_keys(row["keys"])
    stop = keys.num_rows if stop is None else min(stop, keys.num_rows)
    if start >= stop:
        return
    for record_key in record_keys(keys.slice(start, stop - start)):
        yield {
            "id": None,
            "run_id": row["run_id"],
            "sync": row["sync"],
            "batch": row["batch"],
            "record_key": record_key,
            "entity": row["entity"],
            "action": row["action"],
            "changes": None,
            "error": None,
            "recorded_at": row["recorded_at"],
        }


__all__ = [
    "RECORD_SETS_RUN_INDEX",
    "RECORD_SETS_TABLE",
    "SET_ACTIONS",
    "decode_keys",
    "encode_keys",
    "iter_set_records",
    "record_keys",
    "record_set_row",
    "record_sets_table",
]
