"""The `_sync_conflicts` table kept beside a sync's target table.

A conflict is a record that both the source and the target changed since its baseline (see
:mod:`~sync_pipelines.connectors.baselines`), held with the source and target values, the baseline values
one side still holds and the fields that differ, until a person resolves it. Records are named by their
key's 64-bit hash (:func:`~sync_pipelines.connectors.fingerprint.key_hash`) and its JSON text.

The store also knows the shared baselines table of formats 1 and 2 (``_sync_baselines``), which only the
upgrade of earlier bookkeeping reads.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.dialects import sync_lease
from sync_pipelines.connectors.fingerprint import hash_from_hex
from sync_pipelines.connectors.values import decode, display, encode
from sync_pipelines.types import ConflictChoice, ConflictStatus

_CHUNK = 500


def utcnow() -> dt.datetime:
    """The current UTC time, naive (as every `_sync_*` table stores it)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def encode_row(row: dict[str, Any]) -> str:
    """A staged row as JSON that :func:`decode_row` turns back into writable values."""
    return _json({k: encode(v) for k, v in row.items()})


def decode_row(text: str) -> dict[str, Any]:
    """The inverse of :func:`encode_row`."""
    return {k: decode(v) for k, v in json.loads(text).items()}


@dataclass
class NewConflict:
    """A conflict found by a run, before it is stored."""

    key_hash: int
    record_key: dict[str, Any]
    source_row: dict[str, Any]
    target_values: dict[str, Any]
    baseline_values: dict[str, Any]
    changed_fields: list[str]
    field_types: dict[str, str]


@dataclass
class Conflict:
    """A stored conflict."""

    id: int
    sync: str
    key_hash: int
    record_key: dict[str, Any]
    source_row: dict[str, Any]
    target_values: dict[str, Any]
    baseline_values: dict[str, Any]
    changed_fields: list[str]
    field_types: dict[str, str]
    run_id: str
    status: ConflictStatus
    detected_at: dt.datetime
    updated_at: dt.datetime
    resolved_by: str | None = None
    resolved_at: dt.datetime | None = None
    resolution: ConflictChoice | None = None

    @property
    def source_values(self) -> dict[str, Any]:
        """The source's values of the record, readable (dates and decimals as text)."""
        return {k: display(v) for k, v in self.source_row.items()}

    def differences(self) -> dict[str, dict[str, Any]]:
        """Each changed field with its ``source``, ``target`` and ``baseline`` value.

        Baselines keep 2-byte digests of each field, not its value: the baseline value of a field is the value
        of the side that left it as it was, and unknown (``baseline_known`` False) for a field both sides changed.
        """
        source = self.source_values
        return {
            f: {
                "source": source.get(f),
                "target": self.target_values.get(f),
                "baseline": self.baseline_values.get(f),
                "baseline_known": f in self.baseline_values,
            }
            for f in self.changed_fields
        }


@dataclass
class ConflictSummary:
    """Open conflicts of one sync: how many, since when, and a few of them."""

    open_count: int
    oldest_detected_at: dt.datetime | None
    samples: list[Conflict] = field(default_factory=list)


class ConflictStore:
    """Reads and writes the conflicts of one sync, inside the caller's transactions (and upgrades the tables of
    earlier releases)."""

    def __init__(self, metadata: sa.MetaData, sync: str):
        self.sync = sync
        self.baselines = bookkeeping.baselines_table(metadata)
        self.conflicts = bookkeeping.conflicts_table(metadata)

    # -- schema

    def create(self, conn: Connection) -> None:
        """Create the conflicts table when missing."""
        self.conflicts.create(conn, checkfirst=True)

    def upgrade(self, engine: Engine) -> dict[str, int]:
        """Bring tables of an earlier release to the current format (see
        :func:`~sync_pipelines.connectors.bookkeeping.upgrade_baselines`); returns the rows converted.

        The tables are shared by every sync of the target database, so the upgrade holds a lease of
        its own: two runs starting together upgrade once.
        """
        with engine.connect() as conn:
            if not bookkeeping.baselines_need_upgrade(conn, self.baselines, self.conflicts):
                return {}
        with sync_lease(engine, _UPGRADE_LEASE, timeout_s=600.0), engine.begin() as conn:
            return bookkeeping.upgrade_baselines(conn, self.baselines, self.conflicts)

    def exists(self, conn: Connection) -> bool:
        """Whether the conflicts table exists (a dry run against a target never synced has none)."""
        return sa.inspect(conn).has_table(self.conflicts.name, schema=self.conflicts.schema)

    def any_open(self, conn: Connection) -> bool:
        """Whether the sync has an open conflict (one indexed probe)."""
        table = self.conflicts
        query = sa.select(table.c.id).where(table.c.sync == self.sync, table.c.status == ConflictStatus.OPEN.value)
        return conn.execute(query.limit(1)).first() is not None

    # -- conflicts

    def record_conflicts(self, conn: Connection, run_id: str, found: Sequence[NewConflict]) -> None:
        """Store conflicts found by ``run_id``; a record already in an open conflict has it refreshed."""
        if not found:
            return
        table, now = self.conflicts, utcnow()
        open_ids = self._open_ids(conn, [c.key_hash for c in found])
        inserts = []
        for item in found:
            values = {
                "source_values": encode_row(item.source_row),
                "target_values": _json(item.target_values),
                "baseline_values": _json(item.baseline_values),
                "changed_fields": _json(item.changed_fields),
                "field_types": _json(item.field_types),
                "run_id": run_id,
                "updated_at": now,
            }
            if item.key_hash in open_ids:
                conn.execute(sa.update(table).where(table.c.id == open_ids[item.key_hash]).values(**values))
            else:
                inserts.append(
                    {
                        "sync": self.sync,
                        "key_hash": item.key_hash,
                        "record_key": _json(item.record_key),
                        "status": ConflictStatus.OPEN.value,
                        "detected_at": now,
                        **values,
                    }
                )
        if inserts:
            conn.execute(sa.insert(table), inserts)

    def _open_ids(self, conn: Connection, key_hashes: Sequence[int]) -> dict[int, int]:
        table, found = self.conflicts, {}
        for start in range(0, len(key_hashes), _CHUNK):
            part = list(key_hashes[start : start + _CHUNK])
            query = sa.select(table.c.key_hash, table.c.id).where(
                table.c.sync == self.sync, table.c.status == ConflictStatus.OPEN.value, table.c.key_hash.in_(part)
            )
            found.update({int(key_hash): int(conflict_id) for key_hash, conflict_id in conn.execute(query)})
        return found

    def open_record_keys(self, conn: Connection) -> dict[str, int]:
        """The record keys (their JSON text) of the sync's open conflicts, with each conflict's id."""
        table = self.conflicts
        query = sa.select(table.c.record_key, table.c.id).where(
            table.c.sync == self.sync, table.c.status == ConflictStatus.OPEN.value
        )
        return {str(record_key): int(conflict_id) for record_key, conflict_id in conn.execute(query)}

    def close(self, conn: Connection, run_id: str, ids: Sequence[int]) -> int:
        """Close open conflicts ``ids`` whose records' two sides came to agree; returns how many were closed."""
        if not ids:
            return 0
        table, now = self.conflicts, utcnow()
        conn.execute(
            sa.update(table)
            .where(table.c.id.in_(list(ids)), table.c.status == ConflictStatus.OPEN.value)
            .values(
                status=ConflictStatus.RESOLVED.value,
                resolved_by=f"run {run_id} (source and target agree)",
                resolved_at=now,
                updated_at=now,
            )
        )
        return len(ids)

    def find(
        self, conn: Connection, *, status: ConflictStatus | None = None, ids: Sequence[int] | None = None
    ) -> list[Conflict]:
        """Conflicts of this sync, oldest first, optionally only those with ``status`` or ``ids``."""
        table = self.conflicts
        query = sa.select(table).where(table.c.sync == self.sync).order_by(table.c.id)
        if status is not None:
            query = query.where(table.c.status == status.value)
        if ids is not None:
            query = query.where(table.c.id.in_(list(ids)))
        return [_conflict(row) for row in conn.execute(query).mappings()]

    def summary(self, conn: Connection, sample_size: int = 10) -> ConflictSummary:
        """Open count, oldest detection time and the first ``sample_size`` open conflicts."""
        table = self.conflicts
        where = sa.and_(table.c.sync == self.sync, table.c.status == ConflictStatus.OPEN.value)
        count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(table.c.detected_at)).where(where)).one()
        rows = conn.execute(sa.select(table).where(where).order_by(table.c.id).limit(sample_size)).mappings()
        return ConflictSummary(int(count), oldest, [_conflict(r) for r in rows])

    def mark_resolved(
        self, conn: Connection, conflict_id: int, *, choice: ConflictChoice, resolved_by: str, at: dt.datetime
    ) -> bool:
        """Mark one open conflict resolved; False when it was no longer open (a concurrent resolution)."""
        table = self.conflicts
        updated = conn.execute(
            sa.update(table)
            .where(table.c.id == conflict_id, table.c.status == ConflictStatus.OPEN.value)
            .values(
                status=ConflictStatus.RESOLVED.value,
                resolution=choice.value,
                resolved_by=resolved_by,
                resolved_at=at,
                updated_at=at,
            )
        )
        return bool(updated.rowcount)


_UPGRADE_LEASE = "_sync_bookkeeping_upgrade"


def _as_hash(value: Any) -> int:
    """A stored key hash as an integer (a conflict read before its table was upgraded holds hex text)."""
    return hash_from_hex(value) if isinstance(value, str) else int(value)


def _conflict(row: Any) -> Conflict:
    return Conflict(
        id=int(row["id"]),
        sync=row["sync"],
        key_hash=_as_hash(row["key_hash"]),
        record_key=json.loads(row["record_key"]),
        source_row=decode_row(row["source_values"]),
        target_values=json.loads(row["target_values"]),
        baseline_values=json.loads(row["baseline_values"]),
        changed_fields=json.loads(row["changed_fields"]),
        field_types=json.loads(row["field_types"]),
        run_id=row["run_id"],
        status=ConflictStatus(row["status"]),
        detected_at=row["detected_at"],
        updated_at=row["updated_at"],
        resolved_by=row["resolved_by"],
        resolved_at=row["resolved_at"],
        resolution=ConflictChoice(row["resolution"]) if row["resolution"] else None,
    )
