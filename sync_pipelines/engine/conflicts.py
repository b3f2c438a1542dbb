"""Edits made on the target: the baselines and conflicts of a sync's records, and resolving conflicts.

Records are judged by :func:`~sync_pipelines.engine.classify.classify`, a batch at a time. A
:class:`Reconciler` holds what that judgement reads and writes besides the target rows: the sync's
baselines (:class:`~sync_pipelines.connectors.baselines.BaselineStore`, the last state both sides
agreed on, as hashes) and its conflicts (records both sides changed, until a person resolves them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import render
from sync_pipelines.connectors.base import TargetWriter
from sync_pipelines.connectors.baselines import BaselineStore, agreed_baselines
from sync_pipelines.connectors.conflict_store import Conflict, ConflictStore, ConflictSummary, NewConflict, utcnow
from sync_pipelines.connectors.dialects import backend
from sync_pipelines.connectors.fingerprint import key_hash
from sync_pipelines.connectors.rowhash import column_of
from sync_pipelines.connectors.sql import reflect_columns, translate_errors
from sync_pipelines.connectors.sql_reverse import SqlSourceWriter
from sync_pipelines.connectors.values import arrow_type, dumps
from sync_pipelines.engine.classify import Rules
from sync_pipelines.errors import ConflictResolutionError
from sync_pipelines.kinds import target_writer
from sync_pipelines.types import ConflictChoice, ConflictStatus, SyncDirection


class Reconciler:
    """The baselines and conflicts of one sync's records, and the rules that judge them.

    Args:
        config: the sync.
        writer: its target.
        types: declared type of every written column (the manifest's types).
        columns: the written columns, key columns included.
    """

    def __init__(self, config: SyncConfig, writer: TargetWriter, types: dict[str, str], columns: list[str]):
        self.config = config
        self.writer = writer
        self.conflicts = conflict_store(writer)
        self.types = dict(types)
        self.columns = list(columns)
        self.key_names = list(config.target.key)
        self.key_types = [types.get(k, "string") for k in self.key_names]
        self.fields = [c for c in columns if c not in self.key_names]
        self.bidirectional = config.direction is SyncDirection.BIDIRECTIONAL
        self.propagate_deletes = self.bidirectional and config.delete_missing
        self.rules = Rules(
            key=tuple(self.key_names),
            fields=tuple(self.fields),
            types=self.types,
            policy=config.on_conflict,
            bidirectional=self.bidirectional,
            propagate_deletes=self.propagate_deletes,
            keep_unchanged=config.history.store_unchanged,
        )
        self._store: BaselineStore | None = None

    @property
    def store(self) -> BaselineStore:
        """The sync's baselines, keyed like the target's key columns (known once the target is reflected)."""
        table = self.writer.table
        assert table is not None, "the target table is not known yet"
        if self._store is None or self._store.table.metadata is not self.writer.metadata:
            key = [(k, table.c[k].type) for k in self.key_names]
            self._store = BaselineStore(self.writer.metadata, self.config.name, key, self.types, self.fields)
        return self._store

    def key_schema(self) -> pa.Schema:
        return pa.schema([(k, arrow_type(t)) for k, t in zip(self.key_names, self.key_types, strict=True)])

    def keys_table(self, keys: Sequence[Sequence[Any]]) -> pa.Table:
        """Key tuples (driver values, or their display forms) as an Arrow table of the declared key types."""
        columns = list(zip(*keys, strict=True)) if keys else [() for _ in self.key_names]
        arrays = []
        for values, declared in zip(columns, self.key_types, strict=True):
            try:
                raw = pa.array(list(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raw = pa.array([None if v is None else str(v) for v in values], pa.string())
            arrays.append(column_of(raw, declared).typed if len(raw) else pa.array([], arrow_type(declared)))
        return pa.Table.from_arrays(arrays, schema=self.key_schema())

    def key_hash(self, key: Sequence[Any]) -> int:
        """The key hash naming a record in ``_sync_conflicts``."""
        return key_hash(key, self.key_types)

    def create(self, conn: Connection) -> None:
        """Create the baselines and conflicts tables when missing."""
        self.store.create(conn)
        self.conflicts.create(conn)

    def agree(self, conn: Connection, run_id: str, rows: pa.Table, stored: pa.Table | None = None) -> None:
        """Both sides now agree on ``rows`` (the source's values; the target holds ``stored``, or the same):
        replace their baselines, and close open conflicts on them."""
        if not rows.num_rows:
            return
        store = self.store
        baselines = agreed_baselines(rows, stored, self.key_names, self.fields, self.types)
        store.write(conn, baselines, np.ones(rows.num_rows, dtype=bool))
        self.close_settled(conn, run_id, rows.select(self.key_names))

    def close_settled(self, conn: Connection, run_id: str, keys: pa.Table) -> int:
        """Close the open conflicts of records whose two sides came to agree (``keys``).

        Records are matched by their key's JSON text (rendered for the whole batch at once), so a batch costs
        one query when the sync has no open conflict and one more when it has some.
        """
        if not keys.num_rows or not self.conflicts.any_open(conn):
            return 0
        wanted: dict[str, int] = {}
        for text, conflict_id in self.conflicts.open_record_keys(conn).items():
            stored = json.loads(text)
            if all(k in stored for k in self.key_names):
                wanted[dumps({k: stored[k] for k in self.key_names})] = conflict_id
        columns = [column_of(keys.column(k), t) for k, t in zip(self.key_names, self.key_types, strict=True)]
        rendered = render.record_keys(self.key_names, columns, keys.num_rows)
        hits = rendered.filter(pc.is_in(rendered, value_set=pa.array(list(wanted), pa.string())))
        return self.conflicts.close(conn, run_id, sorted({wanted[t] for t in hits.to_pylist()}))

    def record_conflicts(self, conn: Connection, run_id: str, conflicts: Sequence[NewConflict]) -> None:
        self.conflicts.record_conflicts(conn, run_id, conflicts)

    def read_both(self, conn: Connection, keys: pa.Table) -> tuple[pa.Table, pa.Table]:
        """The target rows of ``keys`` and their baselines, read together (one statement where the backend can)."""
        table = self.writer.table
        assert table is not None
        store = self.store
        schema = pa.schema([(c, arrow_type(self.types.get(c, "string"))) for c in self.columns])
        current, baselines = backend(conn).read_arrow_sides(
            conn,
            [(table, self.columns, schema), (store.table, store.columns, store.schema)],
            keys.select(self.key_names),
        )
        return current, store.as_read(baselines)

    def read_target(self, conn: Connection, keys: pa.Table) -> pa.Table:
        """The target rows of ``keys`` (any order), their written columns read in bulk."""
        table = self.writer.table
        assert table is not None
        schema = pa.schema([(c, arrow_type(self.types.get(c, "string"))) for c in self.columns])
        return backend(conn).read_arrow(conn, table, self.columns, keys.select(self.key_names), schema)


def rows_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], types: dict[str, str]) -> pa.Table:
    """Rows (dicts of Python values) as an Arrow table of the declared types."""
    return pa.table({c: pa.array([r.get(c) for r in rows], arrow_type(types.get(c, "string"))) for c in columns})


def conflict_store(writer: TargetWriter) -> ConflictStore:
    """The conflicts of the writer's sync, in its target database."""
    return ConflictStore(writer.metadata, writer.config.name)


# --------------------------------------------------------------------------- reading and resolving


def list_conflicts(config: SyncConfig, status: ConflictStatus | None = ConflictStatus.OPEN) -> list[Conflict]:
    """The conflicts of a sync (open ones by default), oldest first; none when it never ran."""
    writer = target_writer(config)
    store = conflict_store(writer)
    with translate_errors(writer.endpoint, "reading the conflicts"), writer.engine.connect() as conn:
        if not store.exists(conn):
            return []
        return store.find(conn, status=status)


def get_conflict(config: SyncConfig, conflict_id: int) -> Conflict:
    """One conflict of a sync, whatever its status.

    Raises:
        ConflictResolutionError: if the sync has no conflict ``conflict_id``.
    """
    writer = target_writer(config)
    store = conflict_store(writer)
    with translate_errors(writer.endpoint, "reading the conflicts"), writer.engine.connect() as conn:
        found = store.find(conn, ids=[conflict_id]) if store.exists(conn) else []
    if not found:
        raise ConflictResolutionError(f"sync {config.name}: no conflict {conflict_id}")
    return found[0]


def conflict_summary(config: SyncConfig, sample_size: int = 10) -> ConflictSummary:
    """Open conflicts of a sync: count, oldest detection time and samples."""
    writer = target_writer(config)
    store = conflict_store(writer)
    with translate_errors(writer.endpoint, "reading the conflicts"), writer.engine.connect() as conn:
        if not store.exists(conn):
            return ConflictSummary(0, None)
        return store.summary(conn, sample_size)


@dataclass
class Resolution:
    """What a resolution did."""

    sync: str
    resolved: list[int]
    choice: ConflictChoice
    resolved_by: str
    remaining_open: int


def resolve_conflicts(
    config: SyncConfig,
    conflict_ids: Sequence[int] | None,
    choice: ConflictChoice,
    resolved_by: str,
    *,
    run_id: str,
) -> Resolution:
    """Resolve conflicts of a sync (``conflict_ids``, or every open one when None) in one transaction.

    ``keep_source`` writes the source values the conflict holds; ``keep_target`` leaves the target
    (and, in a bidirectional sync, writes its values to the source).
    Either way the baseline becomes those source values and the target row as it now is, so later
    runs leave the record alone until one side changes again, and the conflicts are marked resolved
    by ``resolved_by``. The sync's lease is held, so no run of the sync loads at the same time.

    Raises:
        ConflictResolutionError: if an id is unknown or already resolved, if no conflict is open (with
            None), or if ``resolved_by`` is empty; nothing is changed then.
    """
    if not resolved_by.strip():
        raise ConflictResolutionError(f"sync {config.name}: say who resolves the conflicts (resolved_by)")
    writer = target_writer(config)
    store = conflict_store(writer)
    from sync_pipelines.engine.upgrade import upgrade_bookkeeping

    with translate_errors(writer.endpoint, "upgrading the bookkeeping tables"):
        store.upgrade(writer.engine)
    with writer.lease(run_id), translate_errors(writer.endpoint, "resolving conflicts"):
        with writer.engine.connect() as conn:
            if not store.exists(conn):
                raise ConflictResolutionError(f"sync {config.name}: has no conflicts (it has not run yet)")
            chosen = _chosen(config, store, conn, conflict_ids)
            writer.table = reflect_columns(conn, config.target.table, config.target.db_schema)
        # Baselines of an earlier format are converted first (with the written columns the conflicts name).
        types = chosen[0].field_types
        upgrade_bookkeeping(Reconciler(config, writer, types, list(types)), writer.engine)
        with writer.engine.begin() as conn:
            conflicts = _chosen(config, store, conn, [c.id for c in chosen])
            remaining = _resolve(config, writer, store, conn, conflicts, choice, resolved_by, run_id)
    return Resolution(config.name, [c.id for c in conflicts], choice, resolved_by, remaining)


def _resolve(
    config: SyncConfig,
    writer: TargetWriter,
    store: ConflictStore,
    conn: Connection,
    conflicts: list[Conflict],
    choice: ConflictChoice,
    resolved_by: str,
    run_id: str,
) -> int:
    """Resolve ``conflicts`` in the caller's transaction; returns how many stay open."""
    at = utcnow()
    write_back: list[dict[str, Any]] = []
    for conflict in conflicts:
        if not store.mark_resolved(conn, conflict.id, choice=choice, resolved_by=resolved_by, at=at):
            raise ConflictResolutionError(f"sync {config.name}: conflict {conflict.id} was resolved meanwhile")
        row = conflict.source_row
        reconciler = Reconciler(config, writer, conflict.field_types, list(conflict.field_types))
        kept = None
        written = rows_table([row], reconciler.columns, reconciler.types)
        if choice is ConflictChoice.KEEP_SOURCE:
            assert writer.table is not None
            backend(conn).upsert_arrow(conn, writer.table, written, reconciler.key_names)
        elif reconciler.bidirectional:
            kept = next(iter(reconciler.read_target(conn, written).to_pylist()), None)
        if kept is not None:
            write_back.append(kept)
        agreed = rows_table([kept or row], reconciler.columns, reconciler.types)
        reconciler.agree(conn, run_id, agreed, reconciler.read_target(conn, agreed))
    # A bidirectional sync gives the kept target values to the source too; that commits before
    # the target transaction, whose failure would leave two sides that agree.
    if write_back:
        SqlSourceWriter(config).write(write_back, "writing the kept target values back to the source")
    return store.summary(conn, 0).open_count


def _chosen(
    config: SyncConfig, store: ConflictStore, conn: Connection, conflict_ids: Sequence[int] | None
) -> list[Conflict]:
    if conflict_ids is None:
        conflicts = store.find(conn, status=ConflictStatus.OPEN)
        if not conflicts:
            raise ConflictResolutionError(f"sync {config.name}: no open conflicts to resolve")
        return conflicts
    if not conflict_ids:
        raise ConflictResolutionError(f"sync {config.name}: give conflict ids, or resolve all open conflicts")
    wanted = sorted(set(conflict_ids))
    found = {c.id: c for c in store.find(conn, ids=wanted)}
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise ConflictResolutionError(
            f"sync {config.name}: no conflict {', '.join(map(str, unknown))}; nothing was resolved"
        )
    closed = [
        f"{i} (by {found[i].resolved_by} at {found[i].resolved_at:%Y-%m-%d %H:%M:%S} UTC)"
        for i in wanted
        if found[i].status is ConflictStatus.RESOLVED
    ]
    if closed:
        raise ConflictResolutionError(
            f"sync {config.name}: conflict {', '.join(closed)} already resolved; nothing was resolved"
        )
    return [found[i] for i in wanted]


def describe(conflict: Conflict) -> dict[str, Any]:
    """A JSON-ready description of a conflict (the CLI's ``show --json``)."""
    return {
        "id": conflict.id,
        "sync": conflict.sync,
        "key": conflict.record_key,
        "status": conflict.status.value,
        "changed_fields": conflict.changed_fields,
        "differences": conflict.differences(),
        "source_values": conflict.source_values,
        "target_values": conflict.target_values,
        "baseline_values": conflict.baseline_values,
        "run_id": conflict.run_id,
        "detected_at": conflict.detected_at.isoformat(),
        "resolved_by": conflict.resolved_by,
        "resolved_at": conflict.resolved_at.isoformat() if conflict.resolved_at else None,
        "resolution": conflict.resolution.value if conflict.resolution else None,
    }


__all__ = [
    "Reconciler",
    "Resolution",
    "conflict_store",
    "conflict_summary",
    "describe",
    "get_conflict",
    "list_conflicts",
    "resolve_conflicts",
]
