"""``_sync_base_<sync>``: one sync's baselines (format 3), read and written in bulk as Arrow.

A baseline is the last state both sides of a record agreed on, kept as hashes
(:mod:`~sync_pipelines.connectors.rowhash`): one row per record, keyed by the record's own key columns
(typed like the target's key), holding

========================  ====================================================================
``source_hash``           the row hash of the source's values (``bigint``)
``target_hash``           the row hash of the target row as stored; NULL when equal to ``source_hash``
``fields``                2-byte digests of each field of the source's values (sorted field names)
``target_fields``         the same of the target row; NULL when equal to ``fields``
``version``               :data:`~sync_pipelines.connectors.rowhash.HASH_VERSION` (2: a baseline of the
                          earlier format whose two sides differed, judged by its SHA-256 hashes)
========================  ====================================================================

About 30 bytes a record for a 9-column table, against the record's whole values before; one table per
sync, so the primary key is the record's key and the target row is found by the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.connectors.dialects import backend
from sync_pipelines.connectors.rowhash import HASH_VERSION, Column, FieldHashes, column_of, digests_to_binary
from sync_pipelines.connectors.values import arrow_type

BASELINE_PREFIX = "_sync_base_"

BASELINE_FIELDS = ("source_hash", "target_hash", "fields", "target_fields", "version")


def short_name(sync: str, prefix: str) -> str:
    """``<prefix><sync>``, shortened with a digest to fit every database's identifier limit."""
    full = f"{prefix}{sync}"
    if len(full) <= 60:
        return full
    return f"{full[:51]}_{hashlib.blake2b(sync.encode()).hexdigest()[:8]}"


def baselines_table(metadata: sa.MetaData, sync: str, key: Sequence[tuple[str, sa.types.TypeEngine[Any]]]) -> sa.Table:
    """``_sync_base_<sync>``: the sync's baselines, keyed like its target (see the module docstring)."""
    columns = [sa.Column(k, kind, primary_key=True, autoincrement=False) for k, kind in key]
    return sa.Table(
        short_name(sync, BASELINE_PREFIX),
        metadata,
        *columns,
        sa.Column("source_hash", sa.BigInteger, nullable=False),
        sa.Column("target_hash", sa.BigInteger),
        sa.Column("fields", sa.LargeBinary, nullable=False),
        sa.Column("target_fields", sa.LargeBinary),
        sa.Column("version", sa.SmallInteger, nullable=False, default=HASH_VERSION),
        extend_existing=True,
    )


def baseline_schema(key_types: Mapping[str, pa.DataType]) -> pa.Schema:
    """The Arrow schema of baselines: the key columns, then :data:`BASELINE_FIELDS`."""
    return pa.schema(
        [
            *key_types.items(),
            ("source_hash", pa.int64()),
            ("target_hash", pa.int64()),
            ("fields", pa.binary()),
            ("target_fields", pa.binary()),
            ("version", pa.int16()),
        ]
    )


class BaselineStore:
    """The baselines of one sync in its target database, inside the caller's transactions.

    Args:
        metadata: the target's metadata (its schema).
        sync: the sync's name.
        key: the target's key columns with their column types.
        types: declared type of every written column.
        fields: the written non-key columns.
    """

    def __init__(
        self,
        metadata: sa.MetaData,
        sync: str,
        key: Sequence[tuple[str, sa.types.TypeEngine[Any]]],
        types: Mapping[str, str],
        fields: Sequence[str],
    ):
        self.table = baselines_table(metadata, sync, key)
        self.key = [name for name, _ in key]
        self.types = dict(types)
        self.fields = list(fields)
        self.schema = baseline_schema({k: arrow_type(self.types.get(k, "string")) for k in self.key})

    def create(self, conn: Connection) -> None:
        self.table.create(conn, checkfirst=True)

    def exists(self, conn: Connection) -> bool:
        return sa.inspect(conn).has_table(self.table.name, schema=self.table.schema)

    @property
    def columns(self) -> list[str]:
        """The columns of a baseline row, key first."""
        return [*self.key, *BASELINE_FIELDS]

    def read(self, conn: Connection, keys: pa.Table) -> pa.Table:
        """The baselines of ``keys`` (a table of the key columns), any order."""
        if not keys.num_rows:
            return self.schema.empty_table()
        return self.as_read(backend(conn).read_arrow(conn, self.table, self.columns, keys, self.schema))

    def as_read(self, found: pa.Table) -> pa.Table:
        """Baselines as a backend read them, in :func:`baseline_schema` (keys are normalised by the classifier)."""
        return _cast(found, self.schema)

    def write(self, conn: Connection, baselines: pa.Table, replaced: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        """Save ``baselines``: inserted where ``replaced`` is False (the record had none), upserted elsewhere."""
        if not baselines.num_rows:
            return
        db = backend(conn)
        if replaced.all():
            db.upsert_arrow(conn, self.table, baselines, self.key)
            return
        if not replaced.any():
            db.insert_arrow(conn, self.table, baselines)
            return
        mask = pa.array(replaced)
        db.insert_arrow(conn, self.table, baselines.filter(pa.compute.invert(mask)))
        db.upsert_arrow(conn, self.table, baselines.filter(mask), self.key)

    def delete(self, conn: Connection, keys: pa.Table) -> None:
        """Forget the baselines of ``keys`` (deleted records)."""
        if keys.num_rows:
            backend(conn).delete_arrow(conn, self.table, keys)


def agreed_baselines(
    rows: pa.Table, stored: pa.Table | None, key: Sequence[str], fields: Sequence[str], types: Mapping[str, str]
) -> pa.Table:
    """Baselines (:func:`baseline_schema`) of ``rows`` agreed with ``stored`` (aligned row by row; None: the same)."""
    if stored is not None:
        rows, stored = _aligned(rows, stored, key, types)
    columns = {f: column_of(rows.column(f), types.get(f, "string")) for f in fields}
    source = FieldHashes(columns, types, rows.num_rows)
    target = source
    if stored is not None:
        stored_columns = {f: column_of(stored.column(f), types.get(f, "string")) for f in fields}
        target = FieldHashes(stored_columns, types, stored.num_rows)
    same = source.rows == target.rows
    key_columns: list[Column] = [column_of(rows.column(k), types.get(k, "string")) for k in key]
    arrays: list[pa.Array] = [c.typed for c in key_columns]
    arrays += [
        pa.array(source.rows, pa.int64()),
        pa.array(target.rows, pa.int64(), mask=same),
        digests_to_binary(source.digests()),
        pa.compute.if_else(pa.array(same), pa.scalar(None, pa.binary()), digests_to_binary(target.digests())),
        pa.array(np.full(rows.num_rows, HASH_VERSION, dtype=np.int16)),
    ]
    return pa.Table.from_arrays(arrays, names=[*key, *BASELINE_FIELDS])


def _aligned(
    rows: pa.Table, stored: pa.Table, key: Sequence[str], types: Mapping[str, str]
) -> tuple[pa.Table, pa.Table]:
    """``rows`` and ``stored`` restricted to the keys both hold, in the same order (``rows``' order)."""
    left = pa.Table.from_arrays(
        [*(column_of(rows.column(k), types.get(k, "string")).typed for k in key), pa.array(np.arange(rows.num_rows))],
        names=[*key, "__l"],
    )
    right = pa.Table.from_arrays(
        [
            *(column_of(stored.column(k), types.get(k, "string")).typed for k in key),
            pa.array(np.arange(stored.num_rows)),
        ],
        names=[*key, "__r"],
    )
    joined = left.join(right, keys=list(key), join_type="inner").sort_by("__l")
    return rows.take(joined.column("__l")), stored.take(joined.column("__r"))


def _cast(found: pa.Table, schema: pa.Schema) -> pa.Table:
    """Baselines as read, in :func:`baseline_schema` (keys are normalised by the classifier itself)."""
    arrays = []
    for field in schema:
        column = found.column(field.name)
        if field.name in BASELINE_FIELDS and column.type != field.type:
            if pa.types.is_binary(field.type) and (
                pa.types.is_string(column.type) or pa.types.is_large_binary(column.type)
            ):
                column = pa.compute.cast(column, pa.binary())
            else:
                column = pa.compute.cast(column, field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=schema.names)


__all__ = [
    "BASELINE_FIELDS",
    "BASELINE_PREFIX",
    "BaselineStore",
    "agreed_baselines",
    "baseline_schema",
    "baselines_table",
    "short_name",
]
