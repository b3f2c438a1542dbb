"""Every ``_sync_*`` bookkeeping table, defined once.

They live in the target database beside the synced table (under the target's schema), so that a
batch's rows and its bookkeeping commit in one transaction:

========================  =================================================================
``_sync_state``           one row per sync: watermark, state version, last run and batch
``_sync_runs``            the run ledger: one row per run with its status and counts
``_sync_records``         per-record outcomes of each run, with field-level changes
``_sync_record_sets``     per batch and action, the keys of records without field-level change
                          (created, unchanged) as one compressed blob (:mod:`.record_sets`)
``_sync_baselines``       the last state both sides agreed on, per record (conflict detection)
``_sync_conflicts``       records both sides changed, until a person resolves them
``_sync_batches``         the batches a run has committed (resume of a re-execution)
``_sync_seen_<sync>``     keys a full sync read from the source (deletes by key difference)
``_sync_key_scans``       per sync, the last scan of the source's keys (deletes of incremental syncs)
``_sync_host_results``    per-host outcomes of host-metrics runs (in the CMDB)
========================  =================================================================

Each function adds its table to the caller's ``MetaData`` (whose schema is the target's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.connectors.column_types import LONG_TEXT, timestamp_type
from sync_pipelines.connectors.dialects import backend
from sync_pipelines.connectors.fingerprint import hash_from_hex
from sync_pipelines.connectors.values import dumps
from sync_pipelines.types import COUNT_KEYS, RecordOutcome

STATE_TABLE = "_sync_state"
RUNS_TABLE = "_sync_runs"
RECORDS_TABLE = "_sync_records"
BASELINES_TABLE = "_sync_baselines"
CONFLICTS_TABLE = "_sync_conflicts"
BATCHES_TABLE = "_sync_batches"
SEEN_PREFIX = "_sync_seen_"
KEY_SCANS_TABLE = "_sync_key_scans"
HOST_RESULTS_TABLE = "_sync_host_results"

RECORDS_RUN_INDEX = "ix__sync_records_run_action_entity"
"""The index of ``_sync_records`` by run, action and entity (in id order)."""

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
"""An autoincrement id (SQLite autoincrements only ``INTEGER PRIMARY KEY``)."""


def state_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_state``: the committed watermark and the version every batch commit bumps."""
    return sa.Table(
        STATE_TABLE,
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("watermark", sa.Text),
        sa.Column("version", sa.BigInteger, nullable=False, default=0),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("last_batch", sa.Integer, nullable=False, default=-1),
        sa.Column("updated_at", sa.DateTime),
        extend_existing=True,
    )


def runs_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_runs``: the run ledger."""
    counts = [sa.Column(key, sa.BigInteger, nullable=False, default=0) for key in COUNT_KEYS]
    return sa.Table(
        RUNS_TABLE,
        metadata,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("sync", sa.String(128), nullable=False, index=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("user", sa.String(128)),
        sa.Column("parent_run_id", sa.String(64)),
        sa.Column("records_run_id", sa.String(64)),
        sa.Column("backfill_id", sa.String(64), index=True),
        sa.Column("mode", sa.String(128), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        *counts,
        sa.Column("started_at", timestamp_type(), nullable=False, index=True),
        sa.Column("finished_at", timestamp_type()),
        sa.Column("duration_s", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("error_details", sa.Text),
        extend_existing=True,
    )


def records_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_records``: one outcome per record a run created, changed, deleted, failed or held back."""
    return sa.Table(
        RECORDS_TABLE,
        metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("entity", sa.String(128)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("changes", LONG_TEXT),
        sa.Column("error", sa.Text),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        # Every reader asks for one run's records (by action and entity, in id order): this one index
        # serves them all, and is the only one each written outcome has to maintain besides the key.
        sa.Index(RECORDS_RUN_INDEX, "run_id", "action", "entity", "id"),
        extend_existing=True,
    )


def outcome_rows(
    sync: str, entity: str, run_id: str, batch: int, outcomes: Iterable[RecordOutcome]
) -> list[dict[str, Any]]:
    """The ``_sync_records`` rows of ``outcomes`` of one batch (``-1``: written after the last batch)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return [
        {
            "run_id": run_id,
            "sync": sync,
            "batch": batch,
            "record_key": dumps(o.key),
            "entity": entity,
            "action": o.action.value,
            "changes": dumps(o.changes) if o.changes else None,
            "error": o.error,
            "recorded_at": now,
        }
        for o in outcomes
    ]


def baselines_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_baselines``: per record, the hashes of both sides and the target's values at the last agreement.

    Hashes are 64-bit integers (:mod:`~sync_pipelines.connectors.fingerprint`); the record is named by
    its key hash alone (its key is on the target row, and in the run's outcomes).
    """
    return sa.Table(
        BASELINES_TABLE,
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("key_hash", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("source_hash", sa.BigInteger, nullable=False),
        sa.Column("target_hash", sa.BigInteger, nullable=False),
        sa.Column("target_values", LONG_TEXT, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        extend_existing=True,
    )


def conflicts_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_conflicts``: records changed on both sides, with the three versions, until resolved."""
    return sa.Table(
        CONFLICTS_TABLE,
        metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("sync", sa.String(128), nullable=False, index=True),
        sa.Column("key_hash", sa.BigInteger, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("source_values", LONG_TEXT, nullable=False),
        sa.Column("target_values", LONG_TEXT, nullable=False),
        sa.Column("baseline_values", LONG_TEXT, nullable=False),
        sa.Column("changed_fields", sa.Text, nullable=False),
        sa.Column("field_types", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detected_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("resolved_at", sa.DateTime),
        sa.Column("resolution", sa.String(16)),
        extend_existing=True,
    )


def batches_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_batches``: the batches a run has committed, one row each (kept for the last run): its resume record."""
    return sa.Table(
        BATCHES_TABLE,
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("batch", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("committed_at", sa.DateTime, nullable=False),
        # The run whose process committed the batch: ``run_id`` itself, or the re-execution that resumed it.
        sa.Column("attempt", sa.String(64)),
        extend_existing=True,
    )


def host_results_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_host_results``: one row per host and run of a host-metrics sync, with its figures."""
    figures = [sa.Column(f"{kind}_{m}", sa.Float) for m in ("cpu", "memory", "disk") for kind in ("max", "avg")]
    return sa.Table(
        HOST_RESULTS_TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("host_ip", sa.String(64), nullable=False),
        sa.Column("host_name", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("registered", sa.Boolean, nullable=False),
        sa.Column("pool_id", sa.Integer),
        sa.Column("error", sa.Text),
        *figures,
        sa.Column("data_points", sa.BigInteger, nullable=False),
        sa.Column("query_time_range", sa.String(16)),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        extend_existing=True,
    )


def seen_table(
    metadata: sa.MetaData,
    name: str,
    key: Sequence[tuple[str, sa.types.TypeEngine[Any]]],
    *,
    temporary: bool = False,
) -> sa.Table:
    """``_sync_seen_<sync>`` (``name``): the keys a full sync read, typed like the target's key columns (a
    ``temporary`` one: a dry run's, in its session).

    A key may be written twice in one run (a record failed for a bad value, then read again with the same key
    in a later row), so the index on the key is not unique: the table is only ever asked which target keys it
    lacks.
    """
    columns = [sa.Column(k, kind, nullable=False, autoincrement=False) for k, kind in key]
    index = sa.Index(f"ix{name}", *[c.name for c in columns])
    prefixes = ["TEMPORARY"] if temporary else []
    return sa.Table(name, metadata, *columns, index, prefixes=prefixes, extend_existing=True)


def upgrade_seen(conn: Connection, table: sa.Table) -> bool:
    """Whether the seen-keys table exists in this release's form; one of an earlier release (its key a primary
    key, which refused a key seen twice in a run) is dropped, as a new run is about to empty it anyway."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(table.name, schema=table.schema):
        return False
    if inspector.get_pk_constraint(table.name, schema=table.schema).get("constrained_columns"):
        table.drop(conn)
        return False
    return True


def key_scans_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_key_scans``: per sync, the run that last compared every source key with the target's, when, and
    what it found (``delete_scan`` of an incremental sync with ``delete_missing`` schedules the next one)."""
    return sa.Table(
        KEY_SCANS_TABLE,
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("scanned_at", sa.DateTime, nullable=False),
        sa.Column("source_keys", sa.BigInteger, nullable=False),
        sa.Column("target_keys", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.BigInteger, nullable=False),
        extend_existing=True,
    )


# --------------------------------------------------------------------------- upgrades of earlier formats
#
# Tables written by an earlier release are brought to the format above the first time a run (or a
# conflict resolution) opens them. Each upgrade is idempotent and resumable: an interrupted one is
# finished by the next run, and no run reads a table in the earlier format.

_OLD_RECORD_INDEXES = ("ix__sync_records_run_id", "ix__sync_records_sync")
"""Indexes of ``_sync_records`` that :data:`RECORDS_RUN_INDEX` replaced (its prefix serves lookups by run)."""

_COPY_ROWS = 5000


def upgrade_records(conn: Connection, table: sa.Table) -> None:
    """Give an existing ``_sync_records`` the run index and drop the indexes it replaced."""
    known = {ix["name"] for ix in sa.inspect(conn).get_indexes(table.name, schema=table.schema)}
    if RECORDS_RUN_INDEX not in known:
        c = table.c
        sa.Index(RECORDS_RUN_INDEX, c.run_id, c.action, c.entity, c.id).create(conn)
    for name in _OLD_RECORD_INDEXES:
        if name in known:
            sa.Index(name, table.c.run_id).drop(conn)


def _upgrade_pending(conn: Connection, table: sa.Table) -> bool:
    """Whether ``table`` holds hex-text hashes (the format before 64-bit hashes), or an upgrade of it was cut short."""
    inspector = sa.inspect(conn)
    if inspector.has_table(f"{table.name}_v1", schema=table.schema):
        return True
    if not inspector.has_table(table.name, schema=table.schema):
        return False
    kinds = {c["name"]: c["type"] for c in inspector.get_columns(table.name, schema=table.schema)}
    return not isinstance(kinds.get("key_hash"), sa.Integer)


def baselines_need_upgrade(conn: Connection, baselines: sa.Table, conflicts: sa.Table) -> bool:
    """Whether :func:`upgrade_baselines` has work to do."""
    return _upgrade_pending(conn, baselines) or _upgrade_pending(conn, conflicts)


def _rebuild(conn: Connection, table: sa.Table, convert: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Rebuild ``table`` in the current format from its earlier-format rows, converted by ``convert``.

    The earlier table is renamed ``<name>_v1``, the new one created, the rows copied page by page (in
    the order of the old primary key), and the old table dropped. A rebuild interrupted at any point
    resumes from the ``_v1`` table (the new table is emptied first). Returns the rows copied.
    """
    old_name = f"{table.name}_v1"
    if not sa.inspect(conn).has_table(old_name, schema=table.schema):
        backend(conn).rename_table(conn, table, old_name)
    old = sa.Table(old_name, sa.MetaData(schema=table.schema), autoload_with=conn)
    # Index names are unique per schema on some databases: the old table's would block the new table's.
    for index in list(old.indexes):
        index.drop(conn)
    table.create(conn, checkfirst=True)
    conn.execute(sa.delete(table))
    names = [c.name for c in table.columns if c.name in old.c]
    order = list(old.primary_key.columns)
    copied, last = 0, None
    while True:
        page = sa.select(*(old.c[n] for n in names), *order).order_by(*order).limit(_COPY_ROWS)
        if last is not None:
            page = page.where(sa.tuple_(*order) > sa.tuple_(*last))
        rows = [dict(r) for r in conn.execute(page).mappings()]
        if not rows:
            break
        last = [rows[-1][c.name] for c in order]
        conn.execute(sa.insert(table), [convert({n: r[n] for n in names}) for r in rows])
        copied += len(rows)
    for column in table.primary_key.columns:
        if column.autoincrement is True:
            backend(conn).ids_inserted(conn, column)
    old.drop(conn)
    return copied


def _baseline_v2(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "key_hash": hash_from_hex(row["key_hash"]),
        "source_hash": hash_from_hex(row["source_hash"]),
        "target_hash": hash_from_hex(row["target_hash"]),
    }


def _conflict_v2(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "key_hash": hash_from_hex(row["key_hash"])}


def upgrade_baselines(conn: Connection, baselines: sa.Table, conflicts: sa.Table) -> dict[str, int]:
    """Bring ``_sync_baselines`` and ``_sync_conflicts`` written with hex SHA-256 hashes to 64-bit hashes.

    The new hashes are the prefixes of the old ones (see
    :func:`~sync_pipelines.connectors.fingerprint.hash_from_hex`), so every baseline keeps judging its
    record exactly as before: no false conflict, no lost conflict. Returns the rows converted per table.
    """
    done: dict[str, int] = {}
    for table, convert in ((baselines, _baseline_v2), (conflicts, _conflict_v2)):
        if _upgrade_pending(conn, table):
            done[table.name] = _rebuild(conn, table, convert)
    return done


__all__ = [
    "BASELINES_TABLE",
    "BATCHES_TABLE",
    "CONFLICTS_TABLE",
    "HOST_RESULTS_TABLE",
    "KEY_SCANS_TABLE",
    "RECORDS_RUN_INDEX",
    "RECORDS_TABLE",
    "RUNS_TABLE",
    "SEEN_PREFIX",
    "STATE_TABLE",
    "baselines_need_upgrade",
    "baselines_table",
    "batches_table",
    "conflicts_table",
    "host_results_table",
    "key_scans_table",
    "outcome_rows",
    "records_table",
    "runs_table",
    "seen_table",
    "state_table",
    "upgrade_baselines",
    "upgrade_records",
    "upgrade_seen",
]
