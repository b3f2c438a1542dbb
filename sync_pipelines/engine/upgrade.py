"""Bookkeeping of earlier releases, brought to the current format the first time a sync opens it.

- Format 1 (hex SHA-256 hashes) becomes format 2 (their 64-bit prefixes) in place, for every sync of the
  target database at once (:func:`~sync_pipelines.connectors.bookkeeping.upgrade_baselines`).
- Format 2 kept every sync's baselines in one table, ``_sync_baselines``, by a hash of the record's key,
  with a JSON copy of the target's values. Format 3 keeps each sync's in ``_sync_base_<sync>``, keyed by
  the record's key, as row hashes and 2-byte field digests
  (:mod:`~sync_pipelines.connectors.baselines`). A sync's format-2 baselines are converted when the sync
  next runs (or dry-runs): the target's keys name the records (their format-2 key hashes are recomputed),
  and the stored target values give both sides' new hashes when the two sides agreed on the same values.
  A baseline whose two sides differed (a column that stores less than was sent) cannot be recomputed
  from the target's values alone: it is kept with its format-2 hashes and ``version`` 2, and judged by
  them (:func:`~sync_pipelines.engine.classify.classify`) until the record is next written.

Each step is idempotent. The conversion of one sync commits in one transaction (the per-sync table is
created before it), so an interrupted conversion is done again whole by the next run; no baseline is
judged in two formats at once, so the upgrade raises no false conflict. A format-2 baseline whose record
is no longer in the target (deleted there) has no key to be found by and is dropped; the record is then
treated as never synced (in a bidirectional sync with ``delete_missing``, a delete made on the target
just before the upgrade is restored from the source instead of being carried to it).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.connectors.baselines import BASELINE_FIELDS, agreed_baselines
from sync_pipelines.connectors.dialects import sync_lease
from sync_pipelines.connectors.rowhash import column_of
from sync_pipelines.connectors.sql import norm_key
from sync_pipelines.engine.conflicts import Reconciler

_UPGRADE_LEASE = "_sync_bookkeeping_upgrade"
_PAGE = 20_000


def upgrade_bookkeeping(reconciler: Reconciler, engine: Engine) -> int:
    """Bring the sync's bookkeeping to the current format (see the module docstring); returns the baselines
    converted from format 2 (0 when there was nothing to do). The target table must be known."""
    reconciler.conflicts.upgrade(engine)
    if reconciler.writer.table is None:
        return 0
    old = reconciler.conflicts.baselines
    with engine.connect() as conn:
        if not _pending(conn, old, reconciler.config.name):
            return 0
    with sync_lease(engine, _UPGRADE_LEASE, timeout_s=600.0):
        with engine.begin() as conn:
            reconciler.store.create(conn)
        with engine.begin() as conn:
            if not _pending(conn, old, reconciler.config.name):
                return 0
            return _convert(conn, reconciler, old)


def _pending(conn: Connection, old: sa.Table, sync: str) -> bool:
    if not sa.inspect(conn).has_table(old.name, schema=old.schema):
        return False
    return conn.execute(sa.select(old.c.key_hash).where(old.c.sync == sync).limit(1)).first() is not None


def _convert(conn: Connection, reconciler: Reconciler, old: sa.Table) -> int:
    """Move one sync's format-2 baselines to its format-3 table, in the caller's transaction."""
    sync, key, fields, types = reconciler.config.name, reconciler.key_names, reconciler.fields, reconciler.types
    table = reconciler.writer.table
    assert table is not None
    by_hash: dict[int, tuple[Any, ...]] = {}
    for found in conn.execute(sa.select(*(table.c[k] for k in key))):
        record_key = norm_key(tuple(found))
        by_hash[reconciler.key_hash(record_key)] = record_key
    agreed: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []
    query = sa.select(old.c.key_hash, old.c.source_hash, old.c.target_hash, old.c.target_values).where(
        old.c.sync == sync
    )
    for khash, source_hash, target_hash, text in conn.execute(query):
        record = by_hash.get(int(khash))
        if record is None:
            continue
        values = {**dict(zip(key, record, strict=True)), **json.loads(text)}
        if int(source_hash) == int(target_hash):
            agreed.append(values)
        else:
            legacy.append({**values, "__source": int(source_hash), "__target": int(target_hash)})
    store = reconciler.store
    converted = 0
    for start in range(0, len(agreed), _PAGE):
        part = agreed[start : start + _PAGE]
        rows = _table(part, key, fields, types)
        store.write(conn, agreed_baselines(rows, None, key, fields, types), np.ones(len(part), dtype=bool))
        converted += len(part)
    if legacy:
        rows = _table(legacy, key, fields, types)
        digests = agreed_baselines(rows, None, key, fields, types)
        kept = pa.Table.from_arrays(
            [
                *(digests.column(k) for k in key),
                pa.array([r["__source"] for r in legacy], pa.int64()),
                pa.array([r["__target"] for r in legacy], pa.int64()),
                digests.column("fields"),
                pa.nulls(len(legacy), pa.binary()),
                pa.array([2] * len(legacy), pa.int16()),
            ],
            names=[*key, *BASELINE_FIELDS],
        )
        store.write(conn, kept, np.ones(len(legacy), dtype=bool))
        converted += len(legacy)
    conn.execute(sa.delete(old).where(old.c.sync == sync))
    if conn.execute(sa.select(old.c.key_hash).limit(1)).first() is None:
        old.drop(conn)
    return converted


def _table(rows: list[dict[str, Any]], key: list[str], fields: list[str], types: dict[str, str]) -> pa.Table:
    """Normalised values (format 2's JSON: text for dates, decimals and floats) as Arrow of the declared types."""
    arrays = []
    for name in [*key, *fields]:
        declared = types.get(name, "string")
        arrays.append(column_of(pa.array([_text(r.get(name)) for r in rows], pa.string()), declared).typed)
    return pa.Table.from_arrays(arrays, names=[*key, *fields])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


__all__ = ["upgrade_bookkeeping"]
