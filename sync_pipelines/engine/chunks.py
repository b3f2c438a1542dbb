"""Parallel full reads: the source split into key-range chunks, each extracted, transformed and loaded by a worker.

A sync with ``parallel: {workers: N}`` whose run reads the whole source (mode ``full``, or a forced
full sync) splits its single-column key into ``chunks`` ranges of about equal row counts (one
``NTILE`` query). Each stage then runs one task per chunk in a pool of worker processes:

- extract and transform stage each chunk's batches in a sub-folder of their own; the manifest lists
  every batch once, numbered in key order across the chunks, with its chunk;
- load keeps the guarantees of the serial path. This process holds the per-sync lease for the whole
  stage, checks the state version against the one the source was read at, and claims the run in the
  state row (resetting the seen-keys table once). Each worker then commits its chunk one batch per
  transaction: rows, baselines, outcomes, seen keys and a row in ``_sync_batches`` naming the batch.
  A re-execution of the same run skips exactly the batches listed there. Once every chunk is in,
  this process deletes what the source no longer has (over the seen keys of all chunks), moves the
  watermark and the state version, as the serial path does.

Dry runs, incremental and partitioned reads, bidirectional and host-metrics syncs stay serial.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from sync_pipelines.config.models import SqlSource, SqlTarget, SyncConfig
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.compat import check_drift
from sync_pipelines.connectors.registry import source_reader, target_writer
from sync_pipelines.connectors.sql import KeyRange, SqlTargetWriter, key_ranges, translate_errors
from sync_pipelines.connectors.values import encode, type_name
from sync_pipelines.engine import host_metrics
from sync_pipelines.engine.conflicts import Reconciler
from sync_pipelines.engine.extract import RunCancelled, _max_position, is_incremental
from sync_pipelines.engine.load import (
    _committed_counts,
    _plan_batch,
    _Samples,
    _schema,
    finish_run,
    resuming_run,
    write_plan,
)
from sync_pipelines.engine.load import load as load_rows
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult
from sync_pipelines.engine.progress import Progress
from sync_pipelines.engine.staging import prepare_dir, read_batch, write_batch
from sync_pipelines.engine.transform import _DuplicateTracker, map_batch, target_types, transformed_manifest
from sync_pipelines.errors import SyncError, TransientConnectorError
from sync_pipelines.types import Counts, RecordOutcome, SyncDirection

BATCHES_TABLE = bookkeeping.BATCHES_TABLE
_ATTEMPTS = 3
"""Tries of one batch transaction in a worker: a deadlock between chunks rolls the batch back, whole."""

T = TypeVar("T")


def workers_for(config: SyncConfig, options: RunOptions) -> int:
    """How many worker processes this run's extract uses: 1 (the serial path) unless it is a parallel full read."""
    parallel = config.parallel
    if (
        parallel is None
        or parallel.workers < 2
        or options.dry_run
        or options.window is not None
        or is_incremental(config, options)
        or host_metrics.is_host_metrics(config)
        or config.direction is SyncDirection.BIDIRECTIONAL
        or not isinstance(config.source, SqlSource)
        or not isinstance(config.target, SqlTarget)
        or len(config.target.key) != 1
    ):
        return 1
    return parallel.workers


def is_chunked(manifest: Manifest) -> bool:
    """Whether a manifest comes from a parallel extract (its later stages then run per chunk too)."""
    return bool(manifest.details.get("chunks"))


# --------------------------------------------------------------------------- worker pool


class _StopFlag(Protocol):
    def is_set(self) -> bool: ...


_stop: _StopFlag | None = None


def _init_worker(stop: Event, environ: dict[str, str]) -> None:
    """Runs first in every worker: the stop flag, and the parent's environment (``${VAR}`` secrets)."""
    global _stop
    _stop = stop
    os.environ.clear()
    os.environ.update(environ)


def _check_stop(config: SyncConfig, where: str) -> None:
    if _stop is not None and _stop.is_set():
        raise RunCancelled(f"sync {config.name}: stopped {where}; earlier batches are committed")


def _context() -> BaseContext:
    """A fork server with this module preloaded (fast worker starts), else spawn; never a bare fork."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def start_workers_early() -> None:
    """Start the fork server in the background (about a second of imports), while this process plans the chunks."""
    context = _context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        threading.Thread(target=forkserver.ensure_running, name="sync-forkserver", daemon=True).start()


def run_pool(
    config: SyncConfig,
    options: RunOptions,
    workers: int,
    task: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    on_done: Callable[[int, T], None] | None = None,
) -> list[T]:
    """Run ``task(*job)`` for every job in up to ``workers`` processes; results in job order.

    ``options.stop_requested`` and the first failure both ask every worker to stop at its next
    batch boundary; the first failure is raised once all of them have ended.
    """
    if not jobs:
        return []
    if multiprocessing.current_process().daemon:
        # A daemonic process (e.g. a prefork pool's worker) may not start processes: same tasks, one by one.
        options.logger.warning("%s: running the chunks one by one (this process may not start workers)", config.name)
        return _run_inline(options, task, jobs, on_done)
    context = _context()
    stop = context.Event()
    if options.stop_requested.is_set():
        stop.set()
    results: dict[int, T] = {}
    first_error: BaseException | None = None
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(stop, dict(os.environ)),
    ) as pool:
        try:
            futures: dict[Future[T], int] = {pool.submit(task, *job): i for i, job in enumerate(jobs)}
            pending: set[Future[T]] = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is None:
                        results[futures[future]] = future.result()
                        if on_done is not None:
                            on_done(futures[future], results[futures[future]])
                    elif first_error is None:
                        first_error = error
                        stop.set()
                if options.stop_requested.is_set():
                    stop.set()
        except BaseException:
            # Interrupted here (e.g. the run is terminated): the workers stop at their next batch boundary.
            stop.set()
            raise
    if isinstance(first_error, BrokenProcessPool):
        raise SyncError(f"sync {config.name}: a worker process ended abruptly ({first_error}); re-run to resume")
    if first_error is not None:
        raise first_error
    return [results[i] for i in range(len(jobs))]


def _run_inline(
    options: RunOptions,
    task: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    on_done: Callable[[int, T], None] | None,
) -> list[T]:
    global _stop
    _stop = options.stop_requested
    try:
        results = []
        for i, job in enumerate(jobs):
            results.append(task(*job))
            if on_done is not None:
                on_done(i, results[-1])
        return results
    finally:
        _stop = None


# --------------------------------------------------------------------------- extract


@dataclass
class _ChunkRead:
    files: list[tuple[str, int]]
    best: tuple[Any, ...] | None


def extract(config: SyncConfig, options: RunOptions, workers: int) -> Manifest:
    """Split the source into key ranges and stage each range's batches in a worker of its own."""
    assert config.parallel is not None
    start_workers_early()
    reader = source_reader(config)
    state = target_writer(config).current_state()
    staging = options.staging_dir(config.name)
    prepare_dir(staging / "extract")
    types = reader.arrow_schema()
    check_drift(config, types, reader.endpoint)
    boundaries = reader.key_boundaries(config.parallel.chunk_count)
    ranges = key_ranges(boundaries)
    options.logger.info(
        "%s: reading %d key ranges with %d worker processes", config.name, len(ranges), min(workers, len(ranges))
    )
    manifest = Manifest(
        sync=config.name,
        run_id=options.run_id,
        stage="extract",
        full_sync=True,
        watermark_before=state.watermark,
        state_version=state.version,
        types={name: type_name(t) for name, t in types.items()},
        details={"chunks": len(ranges), "workers": workers, "key_boundaries": [encode(b) for b in boundaries]},
    )
    progress = Progress(config.name, "extract", options.logger)
    reads = run_pool(
        config,
        options,
        workers,
        _extract_chunk,
        [(config, staging, chunk, key_range) for chunk, key_range in enumerate(ranges)],
        on_done=lambda _, read: _chunk_done(progress, [rows for _, rows in read.files]),
    )
    best: tuple[Any, ...] | None = None
    for chunk, read in enumerate(reads):
        for path, rows in read.files:
            manifest.batches.append(BatchFile(len(manifest.batches), path, rows, chunk=chunk))
            manifest.rows += rows
        best = _greater(best, read.best)
    if best is not None:
        manifest.final_position = {"cursor": encode(best[0]), "key": [encode(v) for v in best[1:]]}
    return manifest


def _extract_chunk(config: SyncConfig, staging: Path, chunk: int, key_range: KeyRange) -> _ChunkRead:
    """Worker: stage the batches of one key range, in key order."""
    folder = prepare_dir(staging / "extract" / f"chunk-{chunk:04d}")
    read = _ChunkRead([], None)
    for index, batch in enumerate(source_reader(config).read(None, incremental=False, key_range=key_range)):
        _check_stop(config, f"while extracting chunk {chunk}")
        path = folder / f"batch-{index:06d}.parquet"
        write_batch(batch.table, path)
        read.files.append((str(path), batch.table.num_rows))
        if config.cursor:
            read.best = _max_position(config, batch.table, read.best)
    return read


def _greater(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    if a is None or b is None:
        return a if b is None else b
    try:
        return max(a, b)
    except TypeError:
        return a


def _chunk_done(progress: Progress, batch_rows: list[int]) -> None:
    """One progress line per finished chunk, counting its batches and rows."""
    progress.batches += max(len(batch_rows) - 1, 0)
    progress.batch_done(sum(batch_rows))


def _by_chunk(batches: list[BatchFile]) -> dict[int, list[BatchFile]]:
    chunks: dict[int, list[BatchFile]] = {}
    for batch in sorted(batches, key=lambda b: b.index):
        chunks.setdefault(batch.chunk or 0, []).append(batch)
    return chunks


# --------------------------------------------------------------------------- transform


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Map each chunk's batches in a worker (duplicate keys are found within a chunk, where equal keys meet)."""
    staging = options.staging_dir(config.name)
    prepare_dir(staging / "transform")
    types = target_types(config, manifest.types)
    out = transformed_manifest(manifest, types)
    chunks = _by_chunk(manifest.batches)
    progress = Progress(config.name, "transform", options.logger, total=manifest.rows)
    mapped = run_pool(
        config,
        options,
        int(manifest.details.get("workers", 2)),
        _transform_chunk,
        [(config, staging, chunk, batches, types) for chunk, batches in chunks.items()],
        on_done=lambda _, files: _chunk_done(progress, [b.rows for b in files]),
    )
    for files in mapped:
        for batch in files:
            out.batches.append(batch)
            out.rows += batch.rows
            out.failed += batch.failed
    out.batches.sort(key=lambda b: b.index)
    options.logger.info("%s: transformed %d rows, %d failed", config.name, out.rows, out.failed)
    return out


def _transform_chunk(
    config: SyncConfig, staging: Path, chunk: int, batches: list[BatchFile], types: dict[str, str]
) -> list[BatchFile]:
    """Worker: map the batches of one chunk to the target schema, in key order."""
    folder = prepare_dir(staging / "transform" / f"chunk-{chunk:04d}")
    duplicates = _DuplicateTracker(ordered_by_key=True)
    out: list[BatchFile] = []
    for batch in batches:
        _check_stop(config, f"while transforming chunk {chunk}")
        table, failed = map_batch(config, read_batch(batch.path), types, duplicates)
        path = folder / f"batch-{batch.index:06d}.parquet"
        write_batch(table, path)
        out.append(BatchFile(batch.index, str(path), table.num_rows, failed, batch.position, chunk))
    return out


# --------------------------------------------------------------------------- load


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Load a chunked manifest: chunks in parallel workers, the run claimed and finished here (see module doc)."""
    return load_rows(config, manifest, options, commit=_commit_chunks)


def batches_table(writer: SqlTargetWriter) -> sa.Table:
    """``_sync_batches`` in the target's schema (see :mod:`~sync_pipelines.connectors.bookkeeping`)."""
    return bookkeeping.batches_table(sa.MetaData(schema=writer.target.db_schema))


def _commit_chunks(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    writer: SqlTargetWriter,
    result: SyncResult,
    samples: _Samples,
) -> None:
    schema = _schema(manifest)
    writer.prepare(schema)
    columns = list(manifest.types)
    reconciler = Reconciler(config, writer, manifest.types, columns)
    committed = batches_table(writer)
    with translate_errors(writer.endpoint, "preparing the parallel load"), writer.engine.begin() as conn:
        reconciler.store.create(conn)
        committed.create(conn, checkfirst=True)
    tracking = config.delete_missing and manifest.full_sync
    with writer.lease(options.run_id):
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
        if not resuming_run(config, state, manifest, options.run_id):
            done = set()
            with translate_errors(writer.endpoint, "starting the parallel load"), writer.engine.begin() as conn:
                conn.execute(sa.delete(committed).where(committed.c.sync == config.name))
                if tracking:
                    writer.reset_seen(conn)
                state.version += 1
                state.last_run_id, state.last_batch = options.run_id, -1
                writer.save_state(conn, state)
        for batch in manifest.batches:
            if batch.index in done:
                result.counts.merge(_committed_counts(writer, options.run_id, batch))
        chunks = {c: [b for b in bs if b.index not in done] for c, bs in _by_chunk(manifest.batches).items()}
        chunks = {c: bs for c, bs in chunks.items() if bs}
        if done:
            options.logger.info(
                "%s: resuming run %s, %d batches already committed", config.name, options.run_id, len(done)
            )
        progress = Progress(
            config.name, "load", options.logger, total=sum(b.rows for bs in chunks.values() for b in bs)
        )
        loaded = run_pool(
            config,
            options,
            int(manifest.details.get("workers", 2)),
            _load_chunk,
            [
                (config, options.run_id, schema, manifest.types, batches, tracking, options.sample_size)
                for batches in chunks.values()
            ],
            on_done=lambda i, _: _chunk_done(progress, [b.rows for b in list(chunks.values())[i]]),
        )
        for counts, outcomes in loaded:
            result.counts.merge(counts)
            samples.add(outcomes)
        with translate_errors(writer.endpoint, "finishing the run"), writer.engine.begin() as conn:
            if not finish_run(
                config, manifest, options, writer, conn, state, result, samples, reconciler, deleting=tracking
            ):
                return
    result.watermark_after = state.watermark


def _load_chunk(
    config: SyncConfig,
    run_id: str,
    schema: dict[str, Any],
    types: dict[str, str],
    batches: list[BatchFile],
    tracking: bool,
    sample_size: int,
) -> tuple[Counts, list[RecordOutcome]]:
    """Worker: commit the batches of one chunk, each in one transaction with its ``_sync_batches`` row."""
    writer = target_writer(config)
    writer.prepare(schema)
    columns = list(types)
    reconciler = Reconciler(config, writer, types, columns)
    committed = batches_table(writer)
    counts = Counts()
    samples = _Samples(sample_size)
    for batch in batches:
        _check_stop(config, f"before batch {batch.index}")
        table = read_batch(batch.path)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with (
                    translate_errors(writer.endpoint, f"loading batch {batch.index}"),
                    writer.engine.begin() as conn,
                ):
                    plan = _plan_batch(
                        writer, conn, table, columns, reconciler, keep_unchanged=config.history.store_unchanged
                    )
                    write_plan(config, writer, conn, reconciler, run_id, batch.index, plan, tracking=tracking)
                    conn.execute(
                        sa.insert(committed).values(
                            sync=config.name,
                            run_id=run_id,
                            batch=batch.index,
                            chunk=batch.chunk or 0,
                            committed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        )
                    )
                break
            except TransientConnectorError:
                if attempt == _ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)
        counts.merge(plan.counts)
        samples.add(plan.sampled)
    return counts, samples.items


__all__ = ["BATCHES_TABLE", "batches_table", "extract", "is_chunked", "load", "run_pool", "transform", "workers_for"]
