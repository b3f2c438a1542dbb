"""Edits made on the target: judging records against their baselines, and resolving conflicts.

For a record that exists on both sides and has a baseline (the last state both sides agreed on:
a hash of the source's values and the target row as stored), each side is compared with its own
part of the baseline:

- target as baseline, source changed: an ordinary update;
- target changed, source as baseline: ``target_modified``, left alone (one way) or written back to
  the source (bidirectional);
- both changed to different values: a conflict, handled by the sync's ``on_conflict`` policy;
- both changed to the same values: unchanged (the baseline follows).

A record without a baseline (written before baselines existed, or by someone else) is compared
value by value as before, and gets its baseline when written or found equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.base import TargetWriter
from sync_pipelines.connectors.conflict_store import (
    Baseline,
    BaselineRow,
    Conflict,
    ConflictStore,
    ConflictSummary,
    NewConflict,
    utcnow,
)
from sync_pipelines.connectors.fingerprint import key_hash, row_normaliser, values_hash
from sync_pipelines.connectors.pg_bulk import BulkSpec, bulk_spec
from sync_pipelines.connectors.sql import norm_key, translate_errors
from sync_pipelines.connectors.sql_reverse import SqlSourceWriter
from sync_pipelines.connectors.values import display
from sync_pipelines.errors import ConflictResolutionError
from sync_pipelines.kinds import target_writer
from sync_pipelines.types import ConflictChoice, ConflictPolicy, ConflictStatus, RecordAction, SyncDirection

_POLICY_ACTION = {
    ConflictPolicy.MANUAL: RecordAction.CONFLICT,
    ConflictPolicy.SOURCE_WINS: RecordAction.SOURCE_WON,
    ConflictPolicy.TARGET_WINS: RecordAction.TARGET_WON,
}


@dataclass
class Verdict:
    """What to do with one record that exists on both sides."""

    action: RecordAction
    write: bool
    changes: dict[str, list[Any]] = field(default_factory=dict)
    conflict: NewConflict | None = None
    reverse: dict[str, Any] | None = None
    """Bidirectional: the target row to write back to the source."""
    reverse_delete: bool = False
    """Bidirectional: the record was deleted from the target; delete it from the source."""


class Reconciler:
    """Judges the records of one batch against their baselines and collects the baselines to save.

    Args:
        config: the sync.
        types: declared type of every written column (the manifest's types).
        columns: the written columns, key columns included.
    """

    def __init__(self, config: SyncConfig, writer: TargetWriter, types: dict[str, str], columns: list[str]):
        self.config = config
        self.writer = writer
        self.store = conflict_store(writer)
        self.types = types
        self.columns = list(columns)
        self.key_names = list(config.target.key)
        self.key_types = [types.get(k, "string") for k in self.key_names]
        self.fields = [c for c in columns if c not in self.key_names]
        self.normalise = row_normaliser(types, self.fields)
        """Normalised field values of a row (see :func:`~sync_pipelines.connectors.fingerprint.normalise_row`)."""
        self.baselines: dict[int, Baseline] = {}
        self._key_hashes: dict[tuple[Any, ...], int] = {}
        self.to_save: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.settled: list[int] = []
        self.bidirectional = config.direction is SyncDirection.BIDIRECTIONAL
        self.propagate_deletes = self.bidirectional and config.delete_missing
        self._bulk: BulkSpec | None = None
        self._bulk_checked = False

    def bulk(self, conn: Connection) -> BulkSpec | None:
        """The set-based path for this sync's batches (see :mod:`~sync_pipelines.connectors.pg_bulk`), if its
        target allows it; checked once per run. Bidirectional syncs always judge record by record."""
        if not self._bulk_checked:
            self._bulk_checked = True
            if not self.bidirectional:
                self._bulk = bulk_spec(
                    conn, self.writer.table, self.config.name, self.types, self.columns, self.key_names
                )
        return self._bulk

    def key_hash(self, key: Sequence[Any]) -> int:
        """The key hash of a record (see :func:`~sync_pipelines.connectors.fingerprint.key_hash`)."""
        cached = self._key_hashes.get(tuple(key))
        return cached if cached is not None else key_hash(key, self.key_types)

    def start_batch(self, conn: Connection | None, keys: Sequence[Sequence[Any]]) -> None:
        """Read the baselines of a batch's keys (none when the tables do not exist yet)."""
        self.to_save, self.settled = [], []
        self.baselines = {}
        self._key_hashes = {}
        self._key_hashes = {tuple(k): self.key_hash(k) for k in keys}
        if conn is not None and keys and self.store.exists(conn):
            self.baselines = self.store.fetch_baselines(conn, list(self._key_hashes.values()))

    def agreed(self, key: Sequence[Any], row: dict[str, Any]) -> None:
        """Remember that both sides now agree on a record, the source holding ``row``: a new baseline.

        The target's side of the baseline is read back when it is saved (see :meth:`save`).
        """
        self.to_save.append((norm_key(key), self.normalise(row)))

    def save(self, conn: Connection, run_id: str) -> list[int]:
        """Save the baselines remembered by :meth:`agreed`, reading the target rows as now stored.

        Returns the key hashes saved.
        """
        if not self.to_save:
            return []
        current = self.writer.fetch_existing(conn, [key for key, _ in self.to_save], self.columns)
        rows = []
        for key, source_values in self.to_save:
            stored = current.get(key)
            if stored is None:
                continue
            target_values = self.normalise(stored)
            source_hash = values_hash(source_values)
            # Equal values hash alike: the usual case (the target stored what was sent) hashes once.
            target_hash = source_hash if target_values == source_values else values_hash(target_values)
            baseline = Baseline(source_hash, target_hash, target_values)
            rows.append(BaselineRow(self.key_hash(key), baseline))
        self.store.save_baselines(conn, run_id, rows)
        self.to_save = []
        return [row.key_hash for row in rows]

    def judge(
        self, key: Sequence[Any], record_key: dict[str, Any], row: dict[str, Any], before: dict[str, Any]
    ) -> Verdict | None:
        """The verdict on a record present on both sides, or None when it has no baseline."""
        khash = self.key_hash(key)
        baseline = self.baselines.get(khash)
        if baseline is None:
            return None
        source = self.normalise(row)
        target = self.normalise(before)
        source_changed = values_hash(source) != baseline.source_hash
        target_changed = values_hash(target) != baseline.target_hash
        if not target_changed and not source_changed:
            return Verdict(RecordAction.UNCHANGED, write=False)
        differing = [f for f in self.fields if source[f] != target[f]]
        if not target_changed:
            self.agreed(key, row)
            return Verdict(RecordAction.UPDATED, write=True, changes=_changes(differing, before, row))
        if not source_changed:
            edited = [f for f in self.fields if target[f] != baseline.values.get(f)]
            changes = {f: [baseline.values.get(f), target[f]] for f in edited}
            if self.bidirectional:
                self.agreed(key, before)
                return Verdict(RecordAction.SOURCE_UPDATED, write=False, changes=changes, reverse=before)
            return Verdict(RecordAction.TARGET_MODIFIED, write=False, changes=changes)
        if not differing:
            self.agreed(key, row)
            self.settled.append(khash)
            return Verdict(RecordAction.UNCHANGED, write=False)
        policy = self.config.on_conflict
        changes = _changes(differing, before, row)
        if policy is ConflictPolicy.MANUAL:
            conflict = NewConflict(khash, record_key, dict(row), target, baseline.values, differing, self.types)
            return Verdict(RecordAction.CONFLICT, write=False, changes=changes, conflict=conflict)
        if policy is ConflictPolicy.TARGET_WINS and self.bidirectional:
            self.agreed(key, before)
            return Verdict(RecordAction.TARGET_WON, write=False, changes=changes, reverse=before)
        # The kept (or overwritten) target row becomes the target side of the baseline: later runs
        # leave the record alone until one side changes again.
        self.agreed(key, row)
        return Verdict(_POLICY_ACTION[policy], write=policy is ConflictPolicy.SOURCE_WINS, changes=changes)

    def changes(self, row: dict[str, Any], before: dict[str, Any]) -> dict[str, list[Any]]:
        """``field -> [target value, source value]`` of the fields whose normalised values differ."""
        source, target = self.normalise(row), self.normalise(before)
        return _changes([f for f in self.fields if source[f] != target[f]], before, row)

    def judge_missing(self, key: Sequence[Any], record_key: dict[str, Any]) -> Verdict | None:
        """Bidirectional: the verdict on a source record missing from the target, or None to create it there.

        A record with a baseline was deleted from the target; with ``delete_missing`` the delete
        reaches the source (at the end of the run, under the delete guard).
        """
        if not self.propagate_deletes or self.key_hash(key) not in self.baselines:
            return None
        return Verdict(RecordAction.SOURCE_DELETED, write=False, reverse_delete=True)

    def flush(self, conn: Connection, run_id: str, conflicts: Sequence[NewConflict]) -> None:
        """Save the batch's baselines and conflicts, and close conflicts whose sides now agree."""
        saved = self.save(conn, run_id)
        self.store.record_conflicts(conn, run_id, conflicts)
        self.store.close_settled(conn, run_id, saved)


def _changes(fields: Sequence[str], before: dict[str, Any], row: dict[str, Any]) -> dict[str, list[Any]]:
    """``field -> [target value, source value]`` for the given fields."""
    return {f: [display(before.get(f)), display(row.get(f))] for f in fields}


def conflict_store(writer: TargetWriter) -> ConflictStore:
    """The baselines and conflicts of the writer's sync, in its target database."""
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
    with translate_errors(writer.endpoint, "upgrading the bookkeeping tables"):
        store.upgrade(writer.engine)
    with writer.lease(run_id), translate_errors(writer.endpoint, "resolving conflicts"), writer.engine.begin() as conn:
        if not store.exists(conn):
            raise ConflictResolutionError(f"sync {config.name}: has no conflicts (it has not run yet)")
        conflicts = _chosen(config, store, conn, conflict_ids)
        writer.table = sa.Table(config.target.table, sa.MetaData(schema=config.target.db_schema), autoload_with=conn)
        at = utcnow()
        write_back: list[dict[str, Any]] = []
        for conflict in conflicts:
            if not store.mark_resolved(conn, conflict.id, choice=choice, resolved_by=resolved_by, at=at):
                raise ConflictResolutionError(f"sync {config.name}: conflict {conflict.id} was resolved meanwhile")
            row = conflict.source_row
            key = norm_key([row[k] for k in config.target.key])
            reconciler = Reconciler(config, writer, conflict.field_types, list(conflict.field_types))
            kept = None
            if choice is ConflictChoice.KEEP_SOURCE:
                writer.upsert(conn, [row])
            elif reconciler.bidirectional:
                kept = writer.fetch_existing(conn, [key], reconciler.columns).get(key)
            if kept is not None:
                write_back.append(kept)
            reconciler.agreed(key, kept or row)
            reconciler.save(conn, run_id)
        # A bidirectional sync gives the kept target values to the source too; that commits before
        # the target transaction, whose failure would leave two sides that agree.
        if write_back:
            SqlSourceWriter(config).write(write_back, "writing the kept target values back to the source")
        remaining = store.summary(conn, 0).open_count
    return Resolution(config.name, [c.id for c in conflicts], choice, resolved_by, remaining)


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
