"""Load: upsert batch by batch, each batch one transaction with its outcomes and the watermark."""

from __future__ import annotations

import contextlib
import functools
import json
import time
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
from sync_pipelines.connectors.conflict_store import NewConflict
from sync_pipelines.connectors.pg_bulk import BulkBatch, with_positions
from sync_pipelines.connectors.registry import target_writer
from sync_pipelines.connectors.sql import SqlTargetWriter, SyncState, norm_key, reflect_columns, translate_errors
from sync_pipelines.connectors.sql_reverse import SqlSourceWriter
from sync_pipelines.connectors.values import arrow_type, display, dumps, same
from sync_pipelines.engine.bidirectional import finish_bidirectional
from sync_pipelines.engine.conflicts import Reconciler
from sync_pipelines.engine.guards import check_deletes, refuse, settle_status
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult, by_chunk, is_chunked
from sync_pipelines.engine.pool import check_stop, run_inline, run_pool
from sync_pipelines.engine.progress import Progress
from sync_pipelines.engine.staging import read_batch, remove_sync_staging
from sync_pipelines.engine.transform import ERROR_COLUMN, KEY_COLUMN
from sync_pipelines.errors import ConcurrentRunError, DeleteGuardError, TransientConnectorError
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
    writer: SqlTargetWriter,
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
                reconciler.agreed(key, key_dict, row)
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
            reconciler.agreed(key, key_dict, row)
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
        entity = config.history.entity or config.target.table
        plan.bulk.apply(
            conn,
            run_id=run_id,
            batch=batch,
            entity=entity,
            now=_utcnow(),
            keep_unchanged=config.history.store_unchanged,
        )


def _outcome_rows(config: SyncConfig, run_id: str, batch: int, outcomes: list[RecordOutcome]) -> list[dict[str, Any]]:
    now = _utcnow()
    return [
        {
            "run_id": run_id,
            "sync": config.name,
            "batch": batch,
            "record_key": dumps(o.key),
            "entity": config.history.entity or config.target.table,
            "action": o.action.value,
            "changes": dumps(o.changes) if o.changes else None,
            "error": o.error,
            "recorded_at": now,
        }
        for o in outcomes
    ]


def _utcnow() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _Samples:
    """The first few outcomes of every action, so that rare failures are not crowded out."""

    def __init__(self, size: int):
        self.size = size
        self.by_action: dict[RecordAction, list[RecordOutcome]] = {}

    def add(self, outcomes: list[RecordOutcome]) -> None:
        for outcome in outcomes:
            bucket = self.by_action.setdefault(outcome.action, [])
            if len(bucket) < self.size:
                bucket.append(outcome)

    @property
    def items(self) -> list[RecordOutcome]:
        """Up to ``size`` outcomes, taken in turn from each action (failures first)."""
        order = sorted(self.by_action, key=lambda a: (a is not RecordAction.FAILED, list(RecordAction).index(a)))
        picked: list[RecordOutcome] = []
        for i in range(self.size):
            for action in order:
                if len(picked) < self.size and i < len(self.by_action[action]):
                    picked.append(self.by_action[action][i])
        return picked


def _schema(manifest: Manifest) -> dict[str, pa.DataType]:
    return {name: arrow_type(t) for name, t in manifest.types.items()}


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Upsert each batch in its own transaction (rows, outcomes and watermark together).

    A dry run plans the same work read-only. Returns a result whose status is completed, partial or
    failed (too many failed records, or a delete the guard refused); connector errors raise.
    The batches of a parallel read are committed by worker processes, one chunk each; every other
    run commits them inline, in order (see :func:`_commit`).
    """
    started = time.monotonic()
    writer = target_writer(config)
    result = SyncResult(
        sync=config.name,
        run_id=options.run_id,
        status=RunStatus.COMPLETED,
        counts=Counts(),
        dry_run=options.dry_run,
        full_sync=manifest.full_sync,
        watermark_before=manifest.watermark_before,
        watermark_after=manifest.watermark_before,
    )
    samples = _Samples(options.sample_size)
    if options.dry_run:
        _dry_run(config, manifest, options, writer, result, samples)
    else:
        _commit(config, manifest, options, writer, result, samples)
    result.samples = samples.items
    settle_status(config, result)
    result.duration_s = time.monotonic() - started
    remove_sync_staging(options.staging_dir(config.name))
    options.logger.info("%s: %s %s", config.name, result.status.value, result.counts.as_dict())
    return result


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


@dataclass
class _Committed:
    """What committing some batches produced: counts, sample outcomes, source rows to delete (bidirectional)."""

    counts: Counts = field(default_factory=Counts)
    samples: list[RecordOutcome] = field(default_factory=list)
    source_deletes: list[dict[str, Any]] = field(default_factory=list)


_ATTEMPTS = 3
"""Tries of one batch transaction: a transient error (a deadlock between chunks, a dropped connection)
rolls the batch back whole, and it is tried again."""


class _TargetSink:
    """Where a real run's batches go: one transaction each, with the batch's resume record and state."""

    keep_unchanged_outcomes = True
    attempts = _ATTEMPTS

    def __init__(self, writer: SqlTargetWriter):
        self.writer = writer

    def transaction(self) -> AbstractContextManager[Connection | None]:
        return self.writer.engine.begin()

    def write(self, conn: Connection | None, loader: BatchLoader, plan: _Plan, batch: BatchFile) -> None:
        assert conn is not None
        loader.write(conn, plan, batch)


class _DrySink:
    """Where a dry run's batches go: nowhere. Planned on one read-only connection (None: no target table
    yet); only the keys read are kept, in a temporary table, to plan the deletes at the end."""

    keep_unchanged_outcomes = False
    attempts = 1

    def __init__(self, conn: Connection | None, seen: sa.Table | None):
        self.conn, self.seen = conn, seen

    def transaction(self) -> AbstractContextManager[Connection | None]:
        return contextlib.nullcontext(self.conn)

    def write(self, conn: Connection | None, loader: BatchLoader, plan: _Plan, batch: BatchFile) -> None:
        if conn is not None and self.seen is not None:
            loader.writer.add_seen(conn, plan.seen_keys, table=self.seen)


@dataclass(frozen=True)
class LoadMode:
    """How a run's batches are committed (passed to worker processes as is)."""

    tracking: bool
    """Record the keys read, for deletes by key difference or a bidirectional finish."""
    incremental: bool
    """Move the watermark with every batch."""
    sample_size: int


class BatchLoader:
    """Commits batches of one run, each in one transaction: rows, baselines, outcomes and its resume record.

    The same object serves the inline executor (built once by the driver) and each worker process of a
    parallel load (built once per chunk by :func:`_load_chunk`).
    """

    def __init__(
        self,
        config: SyncConfig,
        run_id: str,
        writer: SqlTargetWriter,
        types: dict[str, str],
        mode: LoadMode,
        sink: _TargetSink | _DrySink | None = None,
    ):
        self.config, self.run_id, self.writer = config, run_id, writer
        self.columns = list(types)
        self.reconciler = Reconciler(config, writer, types, self.columns)
        self.committed = bookkeeping.batches_table(sa.MetaData(schema=writer.target.db_schema))
        self.mode = mode
        self.tracking, self.incremental = mode.tracking, mode.incremental
        self.source_writer = SqlSourceWriter(config) if self.reconciler.bidirectional else None
        self.source_deletes: list[dict[str, Any]] = []
        self.samples = _Samples(mode.sample_size)
        self.sink = sink if sink is not None else _TargetSink(writer)
        self.state: SyncState | None = None
        """The sync's state row, moved with every batch when the run commits inline (None in a worker)."""

    def commit(self, batch: BatchFile) -> Counts:
        """Plan ``batch`` and hand it to the sink; a transient error retries the batch whole (real runs)."""
        table = read_batch(batch.path)
        keep_unchanged = self.config.history.store_unchanged and self.sink.keep_unchanged_outcomes
        for attempt in range(1, self.sink.attempts + 1):
            try:
                with (
                    translate_errors(self.writer.endpoint, f"loading batch {batch.index}"),
                    self.sink.transaction() as conn,
                ):
                    plan = _plan_batch(
                        self.writer, conn, table, self.columns, self.reconciler, keep_unchanged=keep_unchanged
                    )
                    self.sink.write(conn, self, plan, batch)
                break
            except TransientConnectorError:
                if attempt == self.sink.attempts or self.source_writer is not None:
                    raise  # a batch that wrote back to the source is not replayed here
                time.sleep(0.2 * attempt)
        self.source_deletes += plan.reverse_deletes
        self.samples.add(plan.sampled)
        return plan.counts

    def write(self, conn: Connection, plan: _Plan, batch: BatchFile) -> None:
        """Write one planned batch with its resume record (and the state, inline) in the caller's transaction."""
        config, writer = self.config, self.writer
        if self.source_writer is not None:
            self.source_writer.write(plan.reverse_rows)
        write_plan(config, writer, conn, self.reconciler, self.run_id, batch.index, plan, tracking=self.tracking)
        conn.execute(
            sa.insert(self.committed).values(
                sync=config.name, run_id=self.run_id, batch=batch.index, chunk=batch.chunk or 0, committed_at=_utcnow()
            )
        )
        state = self.state
        if state is not None:
            # An incremental read moves the watermark with every batch, so a crash resumes from the last one.
            if self.incremental and batch.position is not None:
                state.watermark = batch.position
            state.version += 1
            state.last_run_id, state.last_batch = self.run_id, batch.index
            writer.save_state(conn, state)


def _load_chunk(
    config: SyncConfig,
    run_id: str,
    schema: dict[str, Any],
    types: dict[str, str],
    mode: LoadMode,
    batches: list[BatchFile],
) -> _Committed:
    """Worker of a parallel load: commit the batches of one chunk, in order, stopping at a batch boundary."""
    writer = target_writer(config)
    writer.prepare(schema)
    loader = BatchLoader(config, run_id, writer, types, mode)
    counts = Counts()
    for batch in batches:
        check_stop(config, f"before batch {batch.index}")
        counts.merge(loader.commit(batch))
    return _Committed(counts, loader.samples.items)


def _commit(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    writer: SqlTargetWriter,
    result: SyncResult,
    samples: _Samples,
) -> None:
    """The load driver: claim the run under the lease, commit the batches not committed yet, finish the run.

    Batches run through the worker pool, one job per chunk, for a parallel read; otherwise inline, one
    job per batch, by the same :class:`BatchLoader`. Whatever ran them, ``_sync_batches`` names each
    committed batch, so a re-execution of the run skips exactly those.
    """
    schema = _schema(manifest)
    writer.prepare(schema)
    loader = BatchLoader(
        config,
        options.run_id,
        writer,
        manifest.types,
        LoadMode(
            tracking=(config.delete_missing and manifest.full_sync) or config.direction is SyncDirection.BIDIRECTIONAL,
            incremental=not manifest.full_sync,
            sample_size=options.sample_size,
        ),
    )
    committed = loader.committed
    with translate_errors(writer.endpoint, "preparing the bookkeeping tables"), writer.engine.begin() as conn:
        loader.reconciler.store.create(conn)
        committed.create(conn, checkfirst=True)
    with writer.lease(options.run_id):
        state, done = _claim(config, manifest, options, writer, loader)
        for batch in manifest.batches:
            if batch.index in done:
                result.counts.merge(_committed_counts(writer, options.run_id, batch))
        loader.state = state
        todo = [b for b in manifest.batches if b.index not in done]
        committed_here = _run_batches(config, manifest, options, loader, schema, todo, parallel=is_chunked(manifest))
        result.counts.merge(committed_here.counts)
        samples.add(committed_here.samples)
        with translate_errors(writer.endpoint, "finishing the run"), writer.engine.begin() as conn:
            if loader.tracking and not manifest.batches:
                writer.reset_seen(conn)
            if not _finish(config, manifest, options, loader, conn, writer.seen_table, result, samples, write=True):
                return
    result.watermark_after = state.watermark


def _finish(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    loader: BatchLoader,
    conn: Connection,
    seen: sa.Table | None,
    result: SyncResult,
    samples: _Samples,
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


def _claim(
    config: SyncConfig, manifest: Manifest, options: RunOptions, writer: SqlTargetWriter, loader: BatchLoader
) -> tuple[SyncState, set[int]]:
    """Read the state under the lease; a new run claims it, a re-executed one learns its committed batches."""
    committed = loader.committed
    with translate_errors(writer.endpoint, "reading the sync state"), writer.engine.connect() as conn:
        state = writer.read_state(conn)
        done = {
            int(b)
            for (b,) in conn.execute(
                sa.select(committed.c.batch).where(
                    committed.c.sync == config.name, committed.c.run_id == options.run_id
                )
            )
        }
    if resuming_run(config, state, manifest, options.run_id):
        if not done and state.last_batch >= 0:
            # Committed before batches had resume records: the state row names the last one.
            done = {b.index for b in manifest.batches if b.index <= state.last_batch}
        if done:
            options.logger.info(
                "%s: resuming run %s, %d batches already committed", config.name, options.run_id, len(done)
            )
        return state, done
    with translate_errors(writer.endpoint, "starting the load"), writer.engine.begin() as conn:
        conn.execute(sa.delete(committed).where(committed.c.sync == config.name))
        if loader.tracking:
            writer.reset_seen(conn)
        state.version += 1
        state.last_run_id, state.last_batch = options.run_id, -1
        writer.save_state(conn, state)
    return state, set()


def _run_batches(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    loader: BatchLoader,
    schema: dict[str, Any],
    batches: list[BatchFile],
    *,
    parallel: bool,
) -> _Committed:
    """Commit ``batches``: one job per chunk in worker processes (``parallel``), else one per batch inline."""
    out = _Committed()
    progress = Progress(config.name, "load", options.logger, total=sum(b.rows for b in batches))
    if parallel:
        jobs = [b for b in by_chunk(batches).values() if b]
        parts = run_pool(
            config,
            options,
            int(manifest.details.get("workers", 2)),
            _load_chunk,
            [(config, options.run_id, schema, manifest.types, loader.mode, part) for part in jobs],
            on_done=lambda i, _: progress.batches_done([b.rows for b in jobs[i]]),
        )
        for part in parts:
            out.counts.merge(part.counts)
            out.samples += part.samples
        return out

    def one(batch: BatchFile) -> Counts:
        check_stop(config, f"before batch {batch.index}")
        return loader.commit(batch)

    for counts in run_inline(options, one, [(b,) for b in batches], lambda i, _: progress.batch_done(batches[i].rows)):
        out.counts.merge(counts)
    out.samples = loader.samples.items
    out.source_deletes = loader.source_deletes
    return out


def write_plan(
    config: SyncConfig,
    writer: SqlTargetWriter,
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
    writer: SqlTargetWriter,
    conn: Connection,
    state: SyncState,
    result: SyncResult,
    samples: _Samples,
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


def _committed_counts(writer: SqlTargetWriter, run_id: str, batch: BatchFile) -> Counts:
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
    writer: SqlTargetWriter,
    conn: Connection,
    seen: sa.Table,
    result: SyncResult,
    samples: _Samples,
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


def _deleted(writer: SqlTargetWriter, key: tuple[Any, ...]) -> RecordOutcome:
    return RecordOutcome({k: display(v) for k, v in zip(writer.target.key, key, strict=True)}, RecordAction.DELETED)


def _dry_run(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    writer: SqlTargetWriter,
    result: SyncResult,
    samples: _Samples,
) -> None:
    """The same batches, planned on one read-only connection into a sink that writes nothing."""
    with translate_errors(writer.endpoint, "planning the dry run"), writer.engine.connect() as conn:
        exists = sa.inspect(conn).has_table(config.target.table, schema=config.target.db_schema)
        if exists:
            writer.table = reflect_columns(conn, config.target.table, config.target.db_schema)
            writer.prepare_seen_definition()
        mode = LoadMode(
            tracking=(config.delete_missing and manifest.full_sync) or config.direction is SyncDirection.BIDIRECTIONAL,
            incremental=not manifest.full_sync,
            sample_size=options.sample_size,
        )
        seen = writer.temp_seen_table(conn) if exists and mode.tracking else None
        sink = _DrySink(conn if exists else None, seen)
        loader = BatchLoader(config, options.run_id, writer, manifest.types, mode, sink)
        planned = _run_batches(config, manifest, options, loader, _schema(manifest), manifest.batches, parallel=False)
        result.counts.merge(planned.counts)
        samples.add(planned.samples)
        if seen is not None:
            _finish(config, manifest, options, loader, conn, seen, result, samples, write=False)
        conn.rollback()


__all__ = ["SyncState", "load"]
