"""Load: upsert batch by batch, each batch one transaction with its outcomes and the watermark."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.base import TargetWriter
from sync_pipelines.connectors.conflict_store import NewConflict
from sync_pipelines.connectors.pg_bulk import BulkBatch, with_positions
from sync_pipelines.connectors.sql import SyncState, norm_key, reflect_columns, translate_errors
from sync_pipelines.connectors.sql_reverse import SqlSourceWriter
from sync_pipelines.connectors.values import arrow_type, display, same
from sync_pipelines.engine.bidirectional import finish_bidirectional
from sync_pipelines.engine.conflicts import Reconciler
from sync_pipelines.engine.driver import DrySink, ResumeRecord, Samples, Sink, TargetSink, conclude, drive
from sync_pipelines.engine.guards import check_deletes, refuse
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult
from sync_pipelines.engine.transform import ERROR_COLUMN, KEY_COLUMN
from sync_pipelines.errors import ConcurrentRunError, DeleteGuardError
from sync_pipelines.kinds import target_writer
from sync_pipelines.types import Counts, RecordAction, RecordOutcome, RunStatus, SyncDirection


@dataclass
class _Plan:
    """What one batch does to the target."""

    upserts: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[RecordOutcome] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    seen_keys: list[tuple[Any, ...]] = field(default_factory=list)
    conflicts: list[NewConflict] = field(default_factory=list)
    reverse_rows: list[dict[str, Any]] = field(default_factory=list)
    reverse_deletes: list[dict[str, Any]] = field(default_factory=list)
    bulk: BulkBatch | None = None
    """Records planned set-based (created, unchanged); their rows and outcomes are written by :func:`_apply_bulk`."""
    bulk_samples: list[RecordOutcome] = field(default_factory=list)
    """The first outcomes of the set-based records, for the run's samples (their rows are written in SQL)."""

    @property
    def sampled(self) -> list[RecordOutcome]:
        """Outcomes to offer the run's samples."""
        return self.outcomes + self.bulk_samples if self.bulk_samples else self.outcomes


_BULK_SAMPLES = 1000


def _seen_keys(table: pa.Table, key_names: list[str]) -> list[tuple[Any, ...]]:
    """Keys present in a batch (also those of failed rows whose key itself is fine), as compared with the target."""
    columns = [table.column(k) for k in key_names]
    complete = table.filter(functools.reduce(pc.and_, [pc.is_valid(c) for c in columns])) if len(columns) > 1 else None
    if complete is None:
        values = columns[0].drop_null().to_pylist()
        keys = [(v,) for v in values]
    else:
        keys = list(zip(*[complete.column(k).to_pylist() for k in key_names], strict=True))
    if any(pa.types.is_timestamp(c.type) and c.type.tz is not None for c in columns):
        return [norm_key(k) for k in keys]
    return keys


def _plan_batch(
    writer: TargetWriter,
    conn: Connection | None,
    table: pa.Table,
    columns: list[str],
    reconciler: Reconciler | None = None,
    *,
    keep_unchanged: bool = False,
) -> _Plan:
    """Classify every record of a batch against the current target rows and their baselines (read-only).

    Unchanged records are counted; they get an outcome of their own only with ``keep_unchanged``.
    On a target that allows it, records are first classified set-based (see
    :mod:`~sync_pipelines.connectors.pg_bulk`); only those that need a closer look are judged one by one.
    """
    plan = _Plan()
    key_names = writer.target.key
    ok_mask = pc.is_null(table.column(ERROR_COLUMN))
    plan.counts.processed = table.num_rows
    failed = table.filter(pc.invert(ok_mask))
    for err, raw_key in zip(
        failed.column(ERROR_COLUMN).to_pylist(), failed.column(KEY_COLUMN).to_pylist(), strict=True
    ):
        plan.outcomes.append(RecordOutcome(json.loads(raw_key), RecordAction.FAILED, error=err))
        plan.counts.add(RecordAction.FAILED)
    plan.seen_keys = _seen_keys(table, key_names)
    bulk = reconciler.bulk(conn) if reconciler is not None and conn is not None else None
    if bulk is not None:
        assert conn is not None and reconciler is not None
        staged = bulk.stage(conn, with_positions(table, ok_mask), with_baselines=reconciler.store.exists(conn))
        plan.bulk = staged
        plan.counts.add(RecordAction.CREATED, len(staged.created))
        plan.counts.add(RecordAction.UNCHANGED, staged.unchanged)
        sample_at = [(RecordAction.CREATED, staged.created[:_BULK_SAMPLES])]
        if keep_unchanged and staged.unchanged:
            ok_positions = np.flatnonzero(ok_mask.to_numpy(zero_copy_only=False))
            unchanged = np.setdiff1d(ok_positions, np.concatenate([staged.created, staged.judge]))
            sample_at.append((RecordAction.UNCHANGED, unchanged[:_BULK_SAMPLES]))
        for action, positions in sample_at:
            key_rows = table.take(pa.array(positions, pa.int64())).select(key_names).to_pylist()
            plan.bulk_samples += [RecordOutcome({k: display(r[k]) for k in key_names}, action) for r in key_rows]
        if len(staged.updated):
            updated = table.take(pa.array(staged.updated, pa.int64())).select(columns).to_pylist()
            update_keys = [norm_key([row[k] for k in key_names]) for row in updated]
            current = writer.fetch_existing(conn, update_keys, columns)
            for key, row in zip(update_keys, updated, strict=True):
                key_dict = {k: display(v) for k, v in zip(key_names, key, strict=True)}
                changes = reconciler.changes(row, current.get(key, {}))
                plan.outcomes.append(RecordOutcome(key_dict, RecordAction.UPDATED, changes))
                plan.counts.add(RecordAction.UPDATED)
        good = table.take(pa.array(staged.judge, pa.int64())).select(columns).to_pylist()
    else:
        good = table.filter(ok_mask).select(columns).to_pylist()
    keys = [norm_key([row[k] for k in key_names]) for row in good]
    existing = writer.fetch_existing(conn, keys, columns) if conn is not None and keys else {}
    if reconciler is not None:
        reconciler.start_batch(conn, keys)
    for key, row in zip(keys, good, strict=True):
        key_dict = {k: display(v) for k, v in zip(key_names, key, strict=True)}
        before = existing.get(key)
        gone = reconciler.judge_missing(key, key_dict) if reconciler is not None and before is None else None
        if gone is not None:
            # Counted and logged when the delete is applied, at the end of the run under the delete guard.
            plan.reverse_deletes.append(key_dict)
            continue
        if before is None:
            plan.upserts.append(row)
            plan.outcomes.append(RecordOutcome(key_dict, RecordAction.CREATED))
            plan.counts.add(RecordAction.CREATED)
            if reconciler is not None:
                reconciler.agreed(key, row)
            continue
        verdict = reconciler.judge(key, key_dict, row, before) if reconciler is not None else None
        if verdict is not None:
            if verdict.write:
                plan.upserts.append(row)
            if verdict.conflict is not None:
                plan.conflicts.append(verdict.conflict)
            if verdict.reverse is not None:
                plan.reverse_rows.append(verdict.reverse)
            if verdict.action is not RecordAction.UNCHANGED or keep_unchanged:
                plan.outcomes.append(RecordOutcome(key_dict, verdict.action, verdict.changes))
            plan.counts.add(verdict.action)
            continue
        if reconciler is not None:
            reconciler.agreed(key, row)
        changes = {
            c: [display(before[c]), display(row[c])]
            for c in columns
            if c not in key_names and not same(before[c], row[c])
        }
        if changes:
            plan.upserts.append(row)
            plan.outcomes.append(RecordOutcome(key_dict, RecordAction.UPDATED, changes))
            plan.counts.add(RecordAction.UPDATED)
        else:
            plan.counts.add(RecordAction.UNCHANGED)
            if keep_unchanged:
                plan.outcomes.append(RecordOutcome(key_dict, RecordAction.UNCHANGED))
    return plan


def _apply_bulk(config: SyncConfig, run_id: str, batch: int, conn: Connection, plan: _Plan) -> None:
    """Write the records a batch planned set-based: new rows, their baselines, their outcomes."""
    if plan.bulk is not None:
        entity = config.history_entity
        plan.bulk.apply(
            conn,
            run_id=run_id,
            batch=batch,
            entity=entity,
            now=_utcnow(),
            keep_unchanged=config.history.store_unchanged,
        )


def _outcome_rows(config: SyncConfig, run_id: str, batch: int, outcomes: list[RecordOutcome]) -> list[dict[str, Any]]:
    return bookkeeping.outcome_rows(config.name, config.history_entity, run_id, batch, outcomes)


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
    )
    loader = BatchLoader(
        config, options.run_id, writer, manifest.types, mode, _schema(manifest), options.process_run_id
    )
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
        self.state: SyncState | None = None
        """The sync's state row, moved with every batch when the run commits inline (None in a worker)."""

    @property
    def replayable(self) -> bool:
        return self.source_writer is None  # a batch that wrote back to the source is not replayed here

    def prepare(self) -> None:
        self.writer.prepare(self.schema)
        with translate_errors(self.endpoint, "preparing the bookkeeping tables"):
            self.reconciler.store.upgrade(self.writer.engine)
        with translate_errors(self.endpoint, "preparing the bookkeeping tables"), self.writer.engine.begin() as conn:
            self.reconciler.store.create(conn)
            self.resume.create(conn)

    def lease(self, run_id: str) -> AbstractContextManager[None]:
        return self.writer.lease(run_id)

    def claim(self, manifest: Manifest, options: RunOptions) -> set[int]:
        """Read the state under the lease; a new run claims it, a re-executed one learns its committed batches."""
        config, writer = self.config, self.writer
        with translate_errors(writer.endpoint, "reading the sync state"), writer.engine.connect() as conn:
            state = writer.read_state(conn)
            done = self.resume.done(conn, options.run_id)
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

    def committed_counts(self, batch: BatchFile) -> Counts:
        return _committed_counts(self.writer, self.run_id, batch)

    def write(self, conn: Connection | None, table: pa.Table, batch: BatchFile) -> _Plan:
        """Plan ``batch``; a real sink writes it with its resume record (and the state, inline) in ``conn``."""
        keep_unchanged = self.config.history.store_unchanged and self.sink.writes
        plan = _plan_batch(self.writer, conn, table, self.columns, self.reconciler, keep_unchanged=keep_unchanged)
        if conn is None:
            return plan
        if self.sink.writes:
            self._write(conn, plan, batch)
        elif self.dry_seen is not None:
            self.writer.add_seen(conn, plan.seen_keys, table=self.dry_seen)
        return plan

    def committed(self, written: _Plan) -> Counts:
        self.source_deletes += written.reverse_deletes
        self.samples.add(written.sampled)
        return written.counts

    def sampled(self) -> list[RecordOutcome]:
        return self.samples.items

    def _write(self, conn: Connection, plan: _Plan, batch: BatchFile) -> None:
        config, writer = self.config, self.writer
        if self.source_writer is not None:
            self.source_writer.write(plan.reverse_rows)
        write_plan(config, writer, conn, self.reconciler, self.run_id, batch.index, plan, tracking=self.tracking)
        self.resume.mark(conn, self.run_id, batch)
        state = self.state
        if state is not None:
            # An incremental read moves the watermark with every batch, so a crash resumes from the last one.
            if self.incremental and batch.position is not None:
                state.watermark = batch.position
            state.version += 1
            state.last_run_id, state.last_batch = self.run_id, batch.index
            writer.save_state(conn, state)

    @contextlib.contextmanager
    def planning(self) -> Iterator[None]:
        """The same batches, planned on one read-only connection into a sink that writes nothing.

        Bookkeeping tables of an earlier release are upgraded first (their contents keep their meaning),
        so that the plan reads them as a real run would.
        """
        config, writer = self.config, self.writer
        with translate_errors(writer.endpoint, "upgrading the bookkeeping tables"):
            self.reconciler.store.upgrade(writer.engine)
        with translate_errors(writer.endpoint, "planning the dry run"), writer.engine.connect() as conn:
            exists = sa.inspect(conn).has_table(config.target.table, schema=config.target.db_schema)
            if exists:
                writer.table = reflect_columns(conn, config.target.table, config.target.db_schema)
                writer.prepare_seen_definition()
            self.dry_seen = writer.temp_seen_table(conn) if exists and self.tracking else None
            self.sink = DrySink(conn if exists else None)
            yield
            conn.rollback()

    def finish(self, manifest: Manifest, options: RunOptions, result: SyncResult, samples: Samples) -> None:
        """Bidirectional one-sided records and deletes; written, then the watermark and state (a real run)."""
        writer = self.writer
        if isinstance(self.sink, DrySink):
            if self.sink.conn is not None and self.dry_seen is not None:
                conn = self.sink.conn
                _finish(self.config, manifest, options, self, conn, self.dry_seen, result, samples, write=False)
            return
        with translate_errors(writer.endpoint, "finishing the run"), writer.engine.begin() as conn:
            if self.tracking and not manifest.batches:
                writer.reset_seen(conn)
            if not _finish(self.config, manifest, options, self, conn, writer.seen_table, result, samples, write=True):
                return
        assert self.state is not None
        result.watermark_after = self.state.watermark

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
    return BatchLoader(config, run_id, writer, types, mode, schema, attempt)


def _finish(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    loader: BatchLoader,
    conn: Connection,
    seen: sa.Table | None,
    result: SyncResult,
    samples: Samples,
    *,
    write: bool,
) -> bool:
    """The end of a run, written (``write``) or planned: one-sided records of a bidirectional sync, deletes of
    records the source no longer has, then (written) the watermark and state. False when a guard refused."""
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
        result.counts.merge(finish.counts)
        samples.add(finish.outcomes)
        if finish.error:
            result.status, result.error = RunStatus.FAILED, finish.error
            return False
        deleting = False
    if not write:
        return not (
            deleting
            and seen is not None
            and _delete_missing(config, options, writer, conn, seen, result, samples, write=False)
        )
    assert loader.state is not None
    return finish_run(
        config, manifest, options, writer, conn, loader.state, result, samples, loader.reconciler, deleting=deleting
    )


def write_plan(
    config: SyncConfig,
    writer: TargetWriter,
    conn: Connection,
    reconciler: Reconciler,
    run_id: str,
    batch: int,
    plan: _Plan,
    *,
    tracking: bool,
) -> None:
    """Write one planned batch inside the caller's transaction: rows, baselines, outcomes and seen keys."""
    _apply_bulk(config, run_id, batch, conn, plan)
    writer.upsert(conn, plan.upserts)
    reconciler.flush(conn, run_id, plan.conflicts)
    writer.record_outcomes(conn, _outcome_rows(config, run_id, batch, plan.outcomes))
    if tracking:
        writer.add_seen(conn, plan.seen_keys)


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
) -> bool:
    """Delete what the source no longer has (``deleting``), then move the watermark and the state version.

    Runs in the caller's last transaction. Returns False when the delete guard refused (nothing more written).
    """
    if deleting:
        assert writer.seen_table is not None
        refused = _delete_missing(
            config, options, writer, conn, writer.seen_table, result, samples, write=True, reconciler=reconciler
        )
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
    with writer.engine.connect() as conn:
        rows = conn.execute(
            sa.select(records.c.action, sa.func.count())
            .where(records.c.run_id == run_id, records.c.batch == batch.index)
            .group_by(records.c.action)
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
    *,
    write: bool,
    reconciler: Reconciler | None = None,
) -> bool:
    """Delete (or plan to delete) target rows gone from the source. Returns True if the guard refused."""
    missing, total = writer.count_missing(conn, seen)
    try:
        check_deletes(config, missing, total)
    except DeleteGuardError as exc:
        refuse(result, exc)
        return True
    if not missing:
        return False
    if not write:
        keys = writer.missing_keys(conn, seen, limit=options.sample_size)
        samples.add([_deleted(writer, k) for k in keys])
        result.counts.add(RecordAction.DELETED, missing)
        return False
    while True:
        keys = writer.missing_keys(conn, seen, limit=1000)
        if not keys:
            return False
        outcomes = [_deleted(writer, k) for k in keys]
        writer.delete_keys(conn, keys)
        if reconciler is not None:
            reconciler.store.delete_baselines(conn, [reconciler.key_hash(k) for k in keys])
        writer.record_outcomes(conn, _outcome_rows(config, options.run_id, -1, outcomes))
        result.counts.add(RecordAction.DELETED, len(keys))
        samples.add(outcomes)


def _deleted(writer: TargetWriter, key: tuple[Any, ...]) -> RecordOutcome:
    return RecordOutcome({k: display(v) for k, v in zip(writer.target.key, key, strict=True)}, RecordAction.DELETED)


__all__ = ["BatchLoader", "SyncState", "load"]
