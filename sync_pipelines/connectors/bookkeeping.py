"""Every ``_sync_*`` bookkeeping table, defined once.

They live in the target database beside the synced table (under the target's schema), so that a
batch's rows and its bookkeeping commit in one transaction:

========================  =================================================================
``_sync_state``           one row per sync: watermark, state version, last run and batch
``_sync_runs``            the run ledger: one row per run with its status and counts
``_sync_records``         per-record outcomes of each run, with field-level changes
``_sync_baselines``       the last state both sides agreed on, per record (conflict detection)
``_sync_conflicts``       records both sides changed, until a person resolves them
``_sync_batches``         the batches a parallel load has committed (resume of a re-execution)
``_sync_seen_<sync>``     keys a full sync read from the source (deletes by key difference)
``_sync_host_results``    per-host outcomes of host-metrics runs (in the CMDB)
========================  =================================================================

Each function adds its table to the caller's ``MetaData`` (whose schema is the target's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from sync_pipelines.connectors.column_types import LONG_TEXT, timestamp_type
from sync_pipelines.types import COUNT_KEYS

STATE_TABLE = "_sync_state"
RUNS_TABLE = "_sync_runs"
RECORDS_TABLE = "_sync_records"
BASELINES_TABLE = "_sync_baselines"
CONFLICTS_TABLE = "_sync_conflicts"
BATCHES_TABLE = "_sync_batches"
SEEN_PREFIX = "_sync_seen_"
HOST_RESULTS_TABLE = "_sync_host_results"

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
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("sync", sa.String(128), nullable=False, index=True),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("entity", sa.String(128)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("changes", LONG_TEXT),
        sa.Column("error", sa.Text),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        extend_existing=True,
    )


def baselines_table(metadata: sa.MetaData) -> sa.Table:
    """``_sync_baselines``: per record, the hashes of both sides and the target's values at the last agreement."""
    return sa.Table(
        BASELINES_TABLE,
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("target_hash", sa.String(64), nullable=False),
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
        sa.Column("key_hash", sa.String(64), nullable=False),
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
    """``_sync_batches``: the batches of a parallel load already committed, one row each (kept for the last run)."""
    return sa.Table(
        BATCHES_TABLE,
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("batch", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("committed_at", sa.DateTime, nullable=False),
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


def seen_table(metadata: sa.MetaData, name: str, key: Sequence[tuple[str, sa.types.TypeEngine[Any]]]) -> sa.Table:
    """``_sync_seen_<sync>`` (``name``): the keys a full sync read, typed like the target's key columns."""
    columns = [sa.Column(k, kind, primary_key=True, autoincrement=False) for k, kind in key]
    return sa.Table(name, metadata, *columns, extend_existing=True)


__all__ = [
    "BASELINES_TABLE",
    "BATCHES_TABLE",
    "CONFLICTS_TABLE",
    "HOST_RESULTS_TABLE",
    "RECORDS_TABLE",
    "RUNS_TABLE",
    "SEEN_PREFIX",
    "STATE_TABLE",
    "baselines_table",
    "batches_table",
    "conflicts_table",
    "host_results_table",
    "records_table",
    "runs_table",
    "seen_table",
    "state_table",
]
