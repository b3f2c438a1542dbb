"""Load: upsert batch by batch, each batch one transaction with its outcomes and the watermark."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping, record_sets
from sync_pipelines.connectors.base import TargetWriter
from sync_pipelines.connectors.baselines import agreed_baselines, baseline_schema
from sync_pipelines.connectors.dialects import sync_lease
from sync_pipelines.connectors.rowhash import column_of
from sync_pipelines.connectors.sql import add_missing_columns, reflect_columns, translate_errors
from sync_pipelines.connectors.sql_reverse import SqlSourceWriter
from sync_pipelines.connectors.sql_target import SyncState
from sync_pipelines.connectors.values import arrow_type
from sync_pipelines.engine.bidirectional import finish_bidirectional
from sync_pipelines.engine.classify import Plan, batch_keys, classify
from sync_pipelines.engine.conflicts import Reconciler
from sync_pipelines.engine.deletes import (
    KeyScan,
    comparable,
    deleted_outcomes,
    missing_keys,
    sample_outcomes,
    scan_due,
    scan_source_keys,
)
from sync_pipelines.engine.driver import DrySink, ResumeRecord, Samples, Sink, TargetSink, conclude, drive
from sync_pipelines.engine.guards import check_deletes, refuse
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult
from sync_pipelines.engine.overlap import (
    PARTITION_LEASE_WAIT_S,
    PLAIN_LEASE_WAIT_S,
    cursor_column,
    newer_in_target,
    partition_slots,
)
from sync_pipelines.engine.read_ahead import ReadAhead, Sides
from sync_pipelines.engine.upgrade import upgrade_bookkeeping
from sync_pipelines.errors import ConcurrentRunError, DeleteGuardError, TransientConnectorError
from sync_pipelines.kinds import target_writer
from sync_pipelines.types import Counts, RecordAction, RecordOutcome, RunStatus, SyncDirection


def _empty(schema: dict[str, pa.DataType], columns: list[str]) -> pa.Table:
    return pa.schema([(c, schema[c]) for c in columns]).empty_table()


def _outcome_table(config: SyncConfig, run_id: str, batch: int, outcomes: pa.Table, now: Any) -> pa.Table:
    """A plan's outcomes as ``_sync_records`` rows."""
    n = outcomes.num_rows
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "sync": pa.array([config.name] * n, pa.string()),
            "batch": pa.array(np.full(n, batch, dtype=np.int32)),
            "record_key": outcomes.column("record_key"),
            "entity": pa.array([config.history_entity] * n, pa.string()),
            "action": outcomes.column("action"),
            "changes": outcomes.column("changes"),
            "error": outcomes.column("error"),
            "recorded_at": pa.array([now] * n, pa.timestamp("us")),
        }
    )


def _as_stored(
    reconciler: Reconciler, conn: Connection, baselines: pa.Table, written: np.ndarray[Any, np.dtype[np.bool_]]
) -> pa.Table:
    """``baselines`` (in the same order) with the target side of the written records taken from their rows as
    the target stored them: a column that stores less than its declared type, a trigger or a default make
    what is read back the baseline's target side."""
    key = reconciler.key_names
    where = np.flatnonzero(written)
    keys = baselines.take(pa.array(where)).select(key)
    stored = reconciler.read_target(conn, keys)
    hashes = agreed_baselines(stored, None, key, reconciler.fields, reconciler.types)
    left = keys.append_column("__i", pa.array(np.arange(len(where))))
    right = hashes.select(key).append_column("__j", pa.array(np.arange(hashes.num_rows)))
    joined = left.join(right, keys=key, join_type="inner")
    found_i = np.asarray(joined.column("__i").to_numpy())
    found_j = np.asarray(joined.column("__j").to_numpy())
    rows = where[found_i]
    stored_hash = np.asarray(hashes.column("source_hash").to_numpy())[found_j]
    source_hash = np.asarray(baselines.column("source_hash").to_numpy())
    target_hash = baselines.column("target_hash").to_pylist()
    target_fields = baselines.column("target_fields").to_pylist()
    stored_fields = hashes.column("fields").take(pa.array(found_j)).to_pylist()
    for row, value, digests in zip(rows.tolist(), stored_hash.tolist(), stored_fields, strict=True):
        same = value == source_hash[row]
        target_hash[row] = None if same else value
        target_fields[row] = None if same else digests
    out = baselines.set_column(
        baselines.schema.get_field_index("target_hash"), "target_hash", pa.array(target_hash, pa.int64())
    )
    return out.set_column(
        out.schema.get_field_index("target_fields"), "target_fields", pa.array(target_fields, pa.binary())
    )


def _outcome_rows(config: SyncConfig, run_id: str, batch: int, outcomes: list[RecordOutcome]) -> list[dict[str, Any]]:
    return bookkeeping.outcome_rows(config.name, config.history_entity, run_id, batch, outcomes)


class DryPlan:
    """A dry run's plan, kept as a real run records its outcomes, and written to the ledger tables at the end.

    Created records become ``_sync_record_sets`` rows (one zstd Parquet blob of keys per batch, see
    :mod:`~sync_pipelines.connectors.record_sets`); every other outcome (updated, deleted, failed, conflict,
    target edit, a bidirectional finish) a ``_sync_records`` row with its field-level changes. Both are filed
    under the dry run's id, whose ledger row says ``dry_run``: the history view lists them as the run's plan,
    and nothing that reads the records of real runs sees them.

    The plan is held here while the run plans on its read-only connection, then written by :meth:`write` in a
    transaction of its own, once that connection is closed (SQLite allows one writer, and the target and its
    baselines are never written by a dry run).
    """

    def __init__(self, config: SyncConfig, run_id: str):
        self.config, self.run_id = config, run_id
        self.sets: list[dict[str, Any]] = []
        self.outcomes: list[pa.Table] = []
        self.rows: list[dict[str, Any]] = []

    def add(self, plan: Plan, batch: int) -> None:
        """A planned batch: its sets of keys (created; unchanged when kept) and its per-record outcomes."""
        now, config = _utcnow(), self.config
        self.sets += [
            record_sets.record_set_row(config.name, config.history_entity, self.run_id, batch, action, keys, now)
            for action, keys in plan.sets.items()
            if keys.num_rows
        ]
        self.add_outcomes(plan.outcomes, batch)

    def add_outcomes(self, outcomes: pa.Table, batch: int) -> None:
        """Outcome columns (``record_key``, ``action``, ``changes``, ``error``) of one batch (-1: after the last)."""
        if outcomes.num_rows:
            self.outcomes.append(_outcome_table(self.config, self.run_id, batch, outcomes, _utcnow()))

    def add_records(self, outcomes: list[RecordOutcome], batch: int) -> None:
        """Outcomes as :class:`RecordOutcome` (a bidirectional finish), of ``batch``."""
        self.rows += _outcome_rows(self.config, self.run_id, batch, outcomes)

    def write(self, writer: TargetWriter) -> None:
        """Write the plan in one transaction of its own, creating the two ledger tables when missing."""
        if not self.sets and not self.outcomes and not self.rows:
            return
        sets_table = record_sets.record_sets_table(writer.metadata)
        with translate_errors(writer.endpoint, "recording the dry run's plan"), writer.engine.begin() as conn:
            writer.metadata.create_all(conn, tables=[writer.records_table, sets_table])
            add_missing_columns(conn, sa.inspect(conn), writer.records_table)
            bookkeeping.upgrade_records(conn, writer.records_table)
            if self.sets:
                conn.execute(sa.insert(sets_table), self.sets)
            for table in self.outcomes:
                writer.backend.insert_arrow(conn, writer.records_table, table)
            writer.record_outcomes(conn, self.rows)
        self.sets, self.outcomes, self.rows = [], [], []


def _utcnow() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _schema(manifest: Manifest) -> dict[str, pa.DataType]:
    return {name: arrow_type(t) for name, t in manifest.types.items()}


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Upsert each batch in its own transaction (rows, outcomes and watermark together).

    A dry run plans the same work read-only. Returns a result whose status is completed, partial or
    failed (too many failed records, or a delete the guard refused); connector errors raise.
    The batches go through the load driver (:func:`~sync_pipelines.engine.driver.drive`): those of a
    parallel read are committed by worker processes, one chunk each; every other run commits them
    inline, in order.
    """
    started = time.monotonic()
    writer = target_writer(config)
    result = SyncResult.begin(config.name, options, full_sync=manifest.full_sync, watermark=manifest.watermark_before)
    samples = Samples(options.sample_size)
    mode = LoadMode(
        tracking=(config.delete_missing and manifest.full_sync) or config.direction is SyncDirection.BIDIRECTIONAL,
        incremental=not manifest.full_sync,
        sample_size=options.sample_size,
        key_scan=config.delete_missing and not manifest.full_sync and options.window is None,
        slots=partition_slots(config) if options.window is not None else 0,
        cursor=cursor_column(config) if partition_slots(config) else None,
    )
    loader = BatchLoader(
        config, options.run_id, writer, manifest.types, mode, _schema(manifest), options.process_run_id
    )
    loader.on_wait = options.logger.info
    drive(config, manifest, options, loader, result, samples)
    result.samples = samples.items
    return conclude(config, options, result, started, unit="records")


def resuming_run(config: SyncConfig, state: SyncState, manifest: Manifest, run_id: str) -> bool:
    """Whether this load resumes batches an earlier attempt of the same run committed.

    Resume only when the manifest predates those batches: a manifest extracted after them already
    starts past them, so nothing of it may be skipped. Any other write since the extract read the
    source is another run's, and the load is refused rather than overwrite newer data with a stale read.

    Raises:
        ConcurrentRunError: another run wrote the target after this run read its source.
    """
    if state.version == manifest.state_version:
        return False
    if state.last_run_id == run_id:
        return True
    raise ConcurrentRunError(
        f"sync {config.name}: run {state.last_run_id} wrote the target after this run read its source; start a new run"
    )


@dataclass(frozen=True)
class LoadMode:
    """How a run's batches are committed (passed to worker processes as is)."""

    tracking: bool
    """Record the keys read, for deletes by key difference or a bidirectional finish."""
    incremental: bool
    """Move the watermark with every batch."""
    sample_size: int
    key_scan: bool = False
    """Scan the source's keys at the end for deletes, when ``delete_scan`` says one is due (an incremental run
    with ``delete_missing``; never a partition run)."""
    slots: int = 0
    """A partition run sharing the sync's lease with at most ``slots - 1`` others; 0: a run that loads alone."""
    cursor: str | None = None
    """The target's cursor column when records whose target row is newer are left alone (see
    :mod:`~sync_pipelines.engine.overlap`); None: every planned write is made."""


class BatchLoader:
    """The SQL table's :class:`~sync_pipelines.engine.driver.BatchWriter`: commits batches of one run, each in
    one transaction with its rows, baselines, outcomes and resume record.

    The same object serves the inline executor (built once by :func:`load`) and each worker process of a
    parallel load (built once per chunk from :meth:`worker`).
    """

    def __init__(
        self,
        config: SyncConfig,
        run_id: str,
        writer: TargetWriter,
        types: dict[str, str],
        mode: LoadMode,
        schema: dict[str, pa.DataType],
        attempt: str | None = None,
    ):
        self.config, self.run_id, self.writer, self.attempt = config, run_id, writer, attempt
        self.endpoint = writer.endpoint
        self.types, self.schema = types, schema
        self.columns = list(types)
        self.reconciler = Reconciler(config, writer, types, self.columns)
        self.resume = ResumeRecord(config.name, writer.target.db_schema, attempt)
        self.mode = mode
        self.tracking, self.incremental = mode.tracking, mode.incremental
        self.source_writer = SqlSourceWriter(config) if self.reconciler.bidirectional else None
        self.source_deletes: list[dict[str, Any]] = []
        self.samples = Samples(mode.sample_size)
        self.sink: Sink = TargetSink(writer.engine)
        self.dry_seen: sa.Table | None = None
        """A dry run's keys read (a temporary table), to plan the deletes at the end."""
        self.dry_plan: DryPlan | None = None
        """A dry run's plan, written to the ledger tables when the planning connection is closed."""
        self.state: SyncState | None = None
        """The sync's state row, moved with every batch when the run commits inline (None in a worker)."""
        self.has_baselines = False
        """Whether the sync's baselines table exists (a dry run before the first run finds none)."""
        self.exact = False
        """Whether every written column stores its declared type exactly (no read-back of written rows)."""
        self.empty_target = False
        """Whether the target table and the baselines held no row when this run claimed the sync (under its
        lease), and no insert of the run has found a row there since. Its batches then read nothing before
        classifying: every record is new, as the run's keys are unique (a key repeated across batches fails
        as a duplicate). A row someone else inserts meanwhile makes the batch's insert fail as a duplicate,
        and the batch is planned again with a read, as are the batches after it."""
        self.on_wait: Callable[[str], None] | None = None
        """Told why the run waits for the lease, if it does."""
        self._ahead: ReadAhead | None = None
        if mode.cursor is not None and writer.backend.row_lock_isolation is not None:
            # Row locks taken before reading a batch's rows must not extend to the gaps between keys.
            self.sink = TargetSink(writer.engine.execution_options(isolation_level=writer.backend.row_lock_isolation))

    @property
    def replayable(self) -> bool:
        return self.source_writer is None  # a batch that wrote back to the source is not replayed here

    def prepare(self) -> None:
        # Partition runs start side by side, before the lease: one at a time creates the tables they find missing.
        with self._preparing():
            self._prepare()

    @contextlib.contextmanager
    def _preparing(self) -> Iterator[None]:
        if not self.mode.slots:
            yield
            return
        name = f"{self.config.name}:prepare"
        with (
            translate_errors(self.endpoint, "taking the lease of the table preparation"),
            sync_lease(self.writer.engine, name, PARTITION_LEASE_WAIT_S),
        ):
            yield

    def _prepare(self) -> None:
        self.writer.prepare(self.schema)
        with translate_errors(self.endpoint, "preparing the bookkeeping tables"):
            upgrade_bookkeeping(self.reconciler, self.writer.engine)
        with translate_errors(self.endpoint, "preparing the bookkeeping tables"), self.writer.engine.begin() as conn:
            self.reconciler.create(conn)
            self.resume.create(conn)
            record_sets.record_sets_table(self.writer.metadata).create(conn, checkfirst=True)
        self._bind(True)

    def _bind(self, has_baselines: bool) -> None:
        """The target table is known: what the batches need to know of it."""
        table = self.writer.table
        assert table is not None
        self.has_baselines = has_baselines
        db = self.writer.backend
        self.exact = all(db.stores_exactly(self.types.get(c, "string"), table.c[c].type) for c in self.columns)

    def lease(self, run_id: str) -> AbstractContextManager[None]:
        """The sync's lease: shared by partition runs (``mode.slots``), else held alone."""
        slots = self.mode.slots
        wait = PARTITION_LEASE_WAIT_S if slots else PLAIN_LEASE_WAIT_S
        # A plain run behind partition runs waits for them (no new one starts meanwhile), as long as they
        # may wait for each other; behind another plain run it gives up after PLAIN_LEASE_WAIT_S.
        return self.writer.lease(
            run_id, wait, slots=slots, on_wait=self.on_wait, behind_shared_s=PARTITION_LEASE_WAIT_S
        )

    def claim(self, manifest: Manifest, options: RunOptions) -> set[int]:
        """Read the state under the lease; a new run claims it, a re-executed one learns its committed batches.

        A partition run sharing the lease claims nothing: it leaves the state row (watermark and version) to
        the plain runs and resumes from its own resume record only. Its writes are kept in order by the
        older-over-newer guard of :meth:`plan` instead of the stale-read guard.
        """
        config, writer = self.config, self.writer
        with translate_errors(writer.endpoint, "reading the sync state"), writer.engine.connect() as conn:
            state = writer.read_state(conn)
            done = self.resume.done(conn, options.run_id)
            # A partition run shares the target with others; a run that locks its rows before reading reads them.
            self.empty_target = not self.mode.slots and self.mode.cursor is None and self._empty_target(conn)
        if self.mode.slots:
            self.state = None
            if done:
                options.logger.info(
                    "%s: resuming partition run %s, %d batches already committed",
                    config.name,
                    options.run_id,
                    len(done),
                )
            return done
        self.state = state
        if resuming_run(config, state, manifest, options.run_id):
            if not done and state.last_batch >= 0:
                # Committed before batches had resume records: the state row names the last one.
                done = {b.index for b in manifest.batches if b.index <= state.last_batch}
            if done:
                options.logger.info(
                    "%s: resuming run %s, %d batches already committed", config.name, options.run_id, len(done)
                )
            return done
        with translate_errors(writer.endpoint, "starting the load"), writer.engine.begin() as conn:
            self.resume.reset(conn)
            if self.tracking:
                writer.reset_seen(conn)
            state.version += 1
            state.last_run_id, state.last_batch = options.run_id, -1
            writer.save_state(conn, state)
        return set()

    def _empty_target(self, conn: Connection) -> bool:
        """Whether the target table and the sync's baselines hold no row."""
        target = self.writer.table
        assert target is not None
        tables = [target, *([self.reconciler.store.table] if self.has_baselines else [])]
        return all(conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is None for t in tables)

    def committed_counts(self, batch: BatchFile) -> Counts:
        return _committed_counts(self.writer, self.run_id, batch)

    def plan(self, conn: Connection | None, table: pa.Table, batch: BatchFile | None = None) -> Plan:
        """Classify ``table`` (the rows of ``batch``) against the target rows and baselines of its keys, read in
        bulk, or read ahead (:meth:`read_ahead`)."""
        reconciler = self.reconciler
        keys = batch_keys(table, reconciler.rules.key)
        ahead = self._ahead.take(batch, keys) if self._ahead is not None and batch is not None else None
        if conn is not None and self.writer.table is not None:
            if self.mode.cursor is not None and self.sink.writes and keys.num_rows:
                self._lock_rows(conn, keys)
            if ahead is not None:
                current, baselines = ahead
            elif self.empty_target:
                current, baselines = _empty(self.schema, self.columns), None
            elif self.has_baselines:
                current, baselines = reconciler.read_both(conn, keys)
            else:
                current, baselines = reconciler.read_target(conn, keys), None
        else:
            current, baselines = _empty(self.schema, self.columns), None
        if baselines is None:
            baselines = baseline_schema({k: self.schema[k] for k in reconciler.key_names}).empty_table()
        rules = reconciler.rules
        if not self.sink.writes and rules.keep_unchanged:
            rules = dataclasses.replace(rules, keep_unchanged=False)
        kept = 0
        if self.mode.cursor is not None:
            # Older over newer: a record whose target row holds a later cursor than the one read here was
            # written by a run that read it after this one did (its cursor moved into another partition's
            # window meanwhile). The batch leaves it out before classifying, so the classifier plans
            # nothing for it; it counts as unchanged (the target already holds a newer version).
            newer = newer_in_target(table, current, list(reconciler.key_names), self.mode.cursor)
            kept = int(newer.sum())
            if kept:
                table = table.filter(pa.array(~newer))
        plan = classify(rules, table, current, baselines, sample_size=self.mode.sample_size)
        if kept:
            plan.counts.processed += kept
            plan.counts.unchanged += kept
        return plan

    def _lock_rows(self, conn: Connection, keys: pa.Table) -> None:
        """Lock the target rows of ``keys`` until the batch commits, before they are read for the guard.

        Another run's batch writing one of them waits for this one (or this one for it), so the cursor the
        guard compares is the latest committed one. A key missing from the target takes no lock: a row
        inserted meanwhile makes the insert fail as a duplicate, and the batch is planned again.
        """
        table = self.writer.table
        assert table is not None
        columns = [table.c[k] for k in self.reconciler.key_names]
        for condition in self.writer.backend.key_conditions(table, keys):
            conn.execute(sa.select(*columns).where(condition).order_by(*columns).with_for_update()).all()

    def write(self, conn: Connection | None, table: pa.Table, batch: BatchFile) -> Plan:
        """Plan ``batch``; a real sink writes it with its resume record (and the state, inline) in ``conn``."""
        plan = self.plan(conn, table, batch)
        if self.dry_plan is not None:
            self.dry_plan.add(plan, batch.index)
        if conn is None:
            return plan
        if self.sink.writes:
            self._write(conn, plan, batch)
        elif self.dry_seen is not None and plan.seen.num_rows:
            self.writer.backend.insert_arrow(conn, self.dry_seen, plan.seen)
        return plan

    @property
    def reads_ahead(self) -> bool:
        """Whether this run reads batches' target rows and baselines ahead (see
        :mod:`~sync_pipelines.engine.read_ahead`): a real run of a full read, with baselines, a one-column
        integer key and a backend that declares ``reads_ahead``; never a partition run (other runs write the
        target meanwhile) nor a run whose batches lock their rows before reading."""
        key = self.reconciler.key_names
        return (
            self.sink.writes
            and self.has_baselines
            and not self.empty_target
            and self.writer.table is not None
            and not self.mode.incremental
            and not self.mode.slots
            and self.mode.cursor is None
            and len(key) == 1
            and pa.types.is_integer(self.schema.get(key[0], pa.null()))
            and self.writer.backend.reads_ahead
        )

    def read_ahead(self, following: tuple[BatchFile, pa.Table] | None) -> None:
        """Start reading the target rows and baselines of the batch committed after the current one, given
        with its staged rows, if this run :attr:`reads_ahead`; None: the run's batches are done."""
        if following is None:
            if self._ahead is not None:
                self._ahead.close()
                self._ahead = None
            return
        if self._ahead is None:
            if not self.reads_ahead:
                return
            self._ahead = ReadAhead(self.reconciler.rules.key, self._read_sides)
        self._ahead.start(*following)

    def _read_sides(self, keys: pa.Table) -> Sides:
        with self.writer.engine.connect() as conn:
            return self.reconciler.read_both(conn, keys)

    def committed(self, written: Plan) -> Counts:
        self.source_deletes += written.reverse_deletes
        self.samples.add(written.samples)
        return written.counts

    def sampled(self) -> list[RecordOutcome]:
        return self.samples.items

    def _write(self, conn: Connection, plan: Plan, batch: BatchFile) -> None:
        writer = self.writer
        if self.source_writer is not None:
            self.source_writer.write(plan.reverse_rows)
        self.write_plan(conn, plan, batch.index)
        self.resume.mark(conn, self.run_id, batch)
        state = self.state
        if state is not None:
            # An incremental read moves the watermark with every batch, so a crash resumes from the last one.
            if self.incremental and batch.position is not None:
                state.watermark = batch.position
            state.version += 1
            state.last_run_id, state.last_batch = self.run_id, batch.index
            writer.save_state(conn, state)

    def write_plan(self, conn: Connection, plan: Plan, batch: int) -> None:
        """Write one planned batch inside the caller's transaction: rows, baselines, conflicts, outcomes, seen keys."""
        writer, reconciler, db = self.writer, self.reconciler, self.writer.backend
        target = writer.table
        assert target is not None
        if plan.inserts.num_rows:
            try:
                db.insert_arrow(conn, target, plan.inserts)
            except sa_exc.DBAPIError as exc:
                if exc.orig is not None and db.is_unique_violation(exc.orig):
                    self.empty_target = False
                    raise TransientConnectorError(
                        f"a record of batch {batch} was inserted by another writer since the batch was read; "
                        "planning the batch again",
                        endpoint=self.endpoint,
                    ) from None
                raise
        db.upsert_arrow(conn, target, plan.updates, reconciler.key_names)
        baselines = plan.baselines
        if not self.exact and plan.written_baselines.any():
            baselines = _as_stored(reconciler, conn, baselines, plan.written_baselines)
        reconciler.store.write(conn, baselines, plan.replaced)
        reconciler.record_conflicts(conn, self.run_id, plan.conflicts)
        reconciler.close_settled(conn, self.run_id, plan.agreed)
        now = _utcnow()
        config = self.config
        sets = [
            record_sets.record_set_row(config.name, config.history_entity, self.run_id, batch, action, keys, now)
            for action, keys in plan.sets.items()
        ]
        if sets:
            conn.execute(sa.insert(record_sets.record_sets_table(writer.metadata)), sets)
        if plan.outcomes.num_rows:
            db.insert_arrow(conn, writer.records_table, _outcome_table(config, self.run_id, batch, plan.outcomes, now))
        if self.tracking and plan.seen.num_rows:
            assert writer.seen_table is not None
            db.insert_arrow(conn, writer.seen_table, plan.seen)

    @contextlib.contextmanager
    def planning(self) -> Iterator[None]:
        """The same batches, planned on one read-only connection into a sink that writes nothing to the target.

        The plan (:class:`DryPlan`) is recorded in the ledger tables under the dry run's id once that connection
        is closed, in a transaction of its own.

        Bookkeeping tables of an earlier release are upgraded first (their contents keep their meaning),
        so that the plan reads them as a real run would.
        """
        config, writer = self.config, self.writer
        with translate_errors(writer.endpoint, "planning the dry run"), writer.engine.connect() as conn:
            exists = sa.inspect(conn).has_table(config.target.table, schema=config.target.db_schema)
            if exists:
                writer.table = reflect_columns(conn, config.target.table, config.target.db_schema)
                writer.prepare_seen_definition()
        with translate_errors(writer.endpoint, "upgrading the bookkeeping tables"):
            upgrade_bookkeeping(self.reconciler, writer.engine)
        with translate_errors(writer.endpoint, "planning the dry run"), writer.engine.connect() as conn:
            if exists:
                self._bind(self.reconciler.store.exists(conn))
            self.dry_seen = writer.temp_seen_table(conn) if exists and self.tracking else None
            self.sink = DrySink(conn if exists else None)
            self.dry_plan = DryPlan(config, self.run_id)
            yield
            conn.rollback()
        self.dry_plan.write(writer)

    def finish(self, manifest: Manifest, options: RunOptions, result: SyncResult, samples: Samples) -> None:
        """Bidirectional one-sided records and deletes; written, then the watermark and state (a real run)."""
        writer = self.writer
        if isinstance(self.sink, DrySink):
            conn = self.sink.conn
            if conn is not None and (self.dry_seen is not None or self.mode.key_scan):
                scan = self._key_scan(conn, options)
                _finish(self.config, manifest, options, self, conn, self.dry_seen, result, samples, False, scan)
            return
        if self.state is None:
            return  # a partition run sharing the lease: no deletes, and the state row is the plain runs'
        scan = None
        if self.mode.key_scan:
            with translate_errors(writer.endpoint, "reading the last key scan"), writer.engine.connect() as conn:
                scan = self._key_scan(conn, options)
        with translate_errors(writer.endpoint, "finishing the run"), writer.engine.begin() as conn:
            if self.tracking and not manifest.batches:
                writer.reset_seen(conn)
            if not _finish(self.config, manifest, options, self, conn, writer.seen_table, result, samples, True, scan):
                return
        assert self.state is not None
        result.watermark_after = self.state.watermark

    def _key_scan(self, conn: Connection, options: RunOptions) -> KeyScan | None:
        """The source's keys, when this run scans them (``delete_scan`` says when; None otherwise)."""
        if not self.mode.key_scan:
            return None
        now = _utcnow()
        last = self.writer.last_key_scan(conn)
        if not scan_due(self.config, last, now):
            options.logger.info(
                "%s: no key scan this run (delete_scan %s, last scan at %s UTC)",
                self.config.name,
                self.config.delete_scan.value,
                last,
            )
            return None
        started = time.monotonic()
        keys = scan_source_keys(self.config, self.types)
        return KeyScan(keys, now, time.monotonic() - started)

    def worker(self) -> Callable[[], BatchLoader]:
        return functools.partial(
            _worker_loader, self.config, self.run_id, self.schema, self.types, self.mode, self.attempt
        )


def _worker_loader(
    config: SyncConfig,
    run_id: str,
    schema: dict[str, pa.DataType],
    types: dict[str, str],
    mode: LoadMode,
    attempt: str | None,
) -> BatchLoader:
    """The loader of one chunk in a worker process (its own engine; the state row stays with the driver)."""
    writer = target_writer(config)
    writer.prepare(schema)
    loader = BatchLoader(config, run_id, writer, types, mode, schema, attempt)
    loader._bind(True)
    return loader


def _finish(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    loader: BatchLoader,
    conn: Connection,
    seen: sa.Table | None,
    result: SyncResult,
    samples: Samples,
    write: bool,
    scan: KeyScan | None = None,
) -> bool:
    """The end of a run, written (``write``) or planned: one-sided records of a bidirectional sync, deletes of
    records the source no longer has (by the seen keys of a full read, or the keys of ``scan``), then
    (written) the watermark and state. False when a guard refused."""
    writer = loader.writer
    deleting = config.delete_missing and manifest.full_sync
    if loader.reconciler.bidirectional and seen is not None:
        finish = finish_bidirectional(
            config,
            writer,
            conn,
            seen,
            loader.reconciler,
            loader.source_writer or SqlSourceWriter(config),
            loader.source_deletes,
            run_id=options.run_id,
            write=write,
        )
        if write:
            writer.record_outcomes(conn, _outcome_rows(config, options.run_id, -1, finish.outcomes))
        elif loader.dry_plan is not None:
            loader.dry_plan.add_records(finish.outcomes, -1)
        result.counts.merge(finish.counts)
        samples.add(finish.outcomes)
        if finish.error:
            result.status, result.error = RunStatus.FAILED, finish.error
            return False
        deleting = False
    reconciler = loader.reconciler
    if not write:
        plan = loader.dry_plan
        if deleting and seen is not None:
            return not _delete_missing(
                config, options, writer, conn, seen, result, samples, reconciler, write=False, plan=plan
            )
        if scan is not None:
            return not _delete_scanned(
                config, options, writer, conn, scan, result, samples, reconciler, write=False, plan=plan
            )
        return True
    assert loader.state is not None
    return finish_run(
        config, manifest, options, writer, conn, loader.state, result, samples, reconciler, deleting=deleting, scan=scan
    )


def finish_run(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    writer: TargetWriter,
    conn: Connection,
    state: SyncState,
    result: SyncResult,
    samples: Samples,
    reconciler: Reconciler,
    *,
    deleting: bool,
    scan: KeyScan | None = None,
) -> bool:
    """Delete what the source no longer has (``deleting``: the keys a full read saw; ``scan``: the source's keys
    an incremental run scanned), then move the watermark and the state version.

    Runs in the caller's last transaction. Returns False when the delete guard refused (nothing more written).
    """
    refused = False
    if deleting:
        assert writer.seen_table is not None
        refused = _delete_missing(
            config, options, writer, conn, writer.seen_table, result, samples, reconciler, write=True
        )
    elif scan is not None:
        refused = _delete_scanned(config, options, writer, conn, scan, result, samples, reconciler, write=True)
    if refused:
        return False
    if manifest.full_sync and manifest.final_position is not None:
        state.watermark = manifest.final_position
    state.version += 1
    state.last_run_id, state.last_batch = options.run_id, len(manifest.batches)
    writer.save_state(conn, state)
    return True


def _committed_counts(writer: TargetWriter, run_id: str, batch: BatchFile) -> Counts:
    """Counts of a batch committed by an earlier attempt of this run (re-execution from failure)."""
    records = writer.records_table
    sets = record_sets.record_sets_table(writer.metadata)
    with writer.engine.connect() as conn:
        rows = list(
            conn.execute(
                sa.select(records.c.action, sa.func.count())
                .where(records.c.run_id == run_id, records.c.batch == batch.index)
                .group_by(records.c.action)
            ).all()
        )
        rows += conn.execute(
            sa.select(sets.c.action, sa.func.sum(sets.c["count"]))
            .where(sets.c.run_id == run_id, sets.c.batch == batch.index, sets.c.action != RecordAction.UNCHANGED.value)
            .group_by(sets.c.action)
        ).all()
    counts = Counts(processed=batch.rows)
    for action, n in rows:
        counts.add(RecordAction(action), int(n))
    counts.unchanged = max(
        0,
        batch.rows - counts.created - counts.updated - counts.failed - counts.conflicted - counts.target_modified,
    )
    return counts


def _delete_missing(
    config: SyncConfig,
    options: RunOptions,
    writer: TargetWriter,
    conn: Connection,
    seen: sa.Table,
    result: SyncResult,
    samples: Samples,
    reconciler: Reconciler,
    *,
    write: bool,
    plan: DryPlan | None = None,
) -> bool:
    """Delete (or plan to delete) target rows whose key a full read did not see. Returns True if the guard refused.

    A dry run's ``plan`` gets a ``deleted`` outcome, with its last values, for each row it would delete."""
    missing, total = writer.count_missing(conn, seen)
    try:
        check_deletes(config, missing, total)
    except DeleteGuardError as exc:
        refuse(result, exc)
        return True
    if not missing:
        return False
    if not write:
        assert plan is not None  # a dry run plans inside BatchLoader.planning
        _plan_deletes(options, conn, reconciler.keys_table(writer.missing_keys(conn, seen)), samples, reconciler, plan)
        result.counts.add(RecordAction.DELETED, missing)
        return False
    while True:
        keys = writer.missing_keys(conn, seen, limit=_DELETE_CHUNK)
        if not keys:
            return False
        _write_deletes(config, options, writer, conn, reconciler.keys_table(keys), result, samples, reconciler)


def _delete_scanned(
    config: SyncConfig,
    options: RunOptions,
    writer: TargetWriter,
    conn: Connection,
    scan: KeyScan,
    result: SyncResult,
    samples: Samples,
    reconciler: Reconciler,
    *,
    write: bool,
    plan: DryPlan | None = None,
) -> bool:
    """Delete (or plan to delete, into a dry run's ``plan``) target rows whose key the source's scanned keys lack.
    Returns True if the guard refused. The target's keys are read in bulk and compared with the scan's in Arrow;
    a real run records the scan (``_sync_key_scans``) beside its deletes."""
    started = time.monotonic()
    declared = reconciler.key_schema()
    stored = writer.read_all_keys(conn, declared)
    target = pa.Table.from_arrays(
        [
            comparable(column_of(stored.column(k), t))
            for k, t in zip(reconciler.key_names, reconciler.key_types, strict=True)
        ],
        names=reconciler.key_names,
    )
    gone = missing_keys(target, scan.keys)
    result.details["key_scan"] = {
        "source_keys": scan.keys.num_rows,
        "target_keys": target.num_rows,
        "missing": gone.num_rows,
        "scan_s": round(scan.seconds, 3),
        "compare_s": round(time.monotonic() - started, 3),
    }
    try:
        check_deletes(config, gone.num_rows, target.num_rows)
    except DeleteGuardError as exc:
        refuse(result, exc)
        return True
    if not write:
        assert plan is not None  # a dry run plans inside BatchLoader.planning
        _plan_deletes(options, conn, gone, samples, reconciler, plan)
        if gone.num_rows:
            result.counts.add(RecordAction.DELETED, gone.num_rows)
        return False
    for start in range(0, gone.num_rows, _DELETE_CHUNK):
        _write_deletes(config, options, writer, conn, gone.slice(start, _DELETE_CHUNK), result, samples, reconciler)
    writer.record_key_scan(
        conn, options.run_id, scan.at, source=scan.keys.num_rows, target=target.num_rows, deleted=gone.num_rows
    )
    return False


_DELETE_CHUNK = 20_000
"""Deleted records written per round (their last values are read, then the rows, baselines and outcomes)."""


def _write_deletes(
    config: SyncConfig,
    options: RunOptions,
    writer: TargetWriter,
    conn: Connection,
    keys: pa.Table,
    result: SyncResult,
    samples: Samples,
    reconciler: Reconciler,
) -> None:
    """Delete the target rows of ``keys`` and their baselines, each with a ``deleted`` outcome holding its key and
    last values, in bulk through the backend (in the caller's transaction)."""
    if not keys.num_rows:
        return
    db, target = writer.backend, writer.table
    assert target is not None
    rows = reconciler.read_target(conn, keys)
    outcomes = deleted_outcomes(rows, reconciler.key_names, reconciler.types)
    db.delete_arrow(conn, target, keys.select(reconciler.key_names))
    reconciler.store.delete(conn, keys.select(reconciler.key_names))
    db.insert_arrow(conn, writer.records_table, _outcome_table(config, options.run_id, -1, outcomes, _utcnow()))
    result.counts.add(RecordAction.DELETED, rows.num_rows)
    samples.add(sample_outcomes(outcomes, options.sample_size))


def _plan_deletes(
    options: RunOptions, conn: Connection, keys: pa.Table, samples: Samples, reconciler: Reconciler, plan: DryPlan
) -> None:
    """A dry run's ``deleted`` outcomes of the target rows of ``keys``: each key with its last values, as a real
    run records them (:func:`_write_deletes`, by :data:`_DELETE_CHUNK`), into ``plan``; nothing is deleted."""
    for start in range(0, keys.num_rows, _DELETE_CHUNK):
        rows = reconciler.read_target(conn, keys.slice(start, _DELETE_CHUNK))
        outcomes = deleted_outcomes(rows, reconciler.key_names, reconciler.types)
        plan.add_outcomes(outcomes, -1)
        samples.add(sample_outcomes(outcomes, options.sample_size))


__all__ = ["BatchLoader", "SyncState", "load"]
