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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.compat import check_drift
from sync_pipelines.connectors.sql_source import KeyRange, key_ranges
from sync_pipelines.connectors.values import encode, type_name
from sync_pipelines.engine.extract import _max_position, is_incremental
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, by_chunk, chunk_workers, is_chunked
from sync_pipelines.engine.plan import ChunkPlan
from sync_pipelines.engine.pool import check_stop, run_pool, start_workers_early
from sync_pipelines.engine.progress import Progress
from sync_pipelines.engine.staging import batch_name, prepare_dir, read_batch, write_batch
from sync_pipelines.engine.transform import _DuplicateTracker, map_batch, target_types, transformed_manifest
from sync_pipelines.kinds import kind_of, range_reader, target_writer
from sync_pipelines.types import SyncDirection

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
        or not kind_of(config).supports_parallel_read
        or config.direction is SyncDirection.BIDIRECTIONAL
        or len(config.target.key) != 1
    ):
        return 1
    return parallel.workers


# --------------------------------------------------------------------------- extract


@dataclass
class _ChunkRead:
    files: list[tuple[str, int]]
    best: tuple[Any, ...] | None


def extract(config: SyncConfig, options: RunOptions, workers: int) -> Manifest:
    """Split the source into key ranges and stage each range's batches in a worker of its own."""
    assert config.parallel is not None
    start_workers_early()
    reader = range_reader(config)
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
        plan=ChunkPlan(len(ranges), workers, tuple(encode(b) for b in boundaries)),
    )
    progress = Progress(config.name, "extract", options.logger)
    reads = run_pool(
        config,
        options,
        workers,
        _extract_chunk,
        [(config, staging, chunk, key_range) for chunk, key_range in enumerate(ranges)],
        on_done=lambda _, read: progress.batches_done([rows for _, rows in read.files]),
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
    for index, batch in enumerate(range_reader(config).read(None, incremental=False, key_range=key_range)):
        check_stop(config, f"while extracting chunk {chunk}")
        path = folder / batch_name(index)
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


# --------------------------------------------------------------------------- transform


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Map each chunk's batches in a worker (duplicate keys are found within a chunk, where equal keys meet)."""
    staging = options.staging_dir(config.name)
    prepare_dir(staging / "transform")
    types = target_types(config, manifest.types)
    out = transformed_manifest(manifest, types)
    chunks = by_chunk(manifest.batches)
    progress = Progress(config.name, "transform", options.logger, total=manifest.rows)
    mapped = run_pool(
        config,
        options,
        chunk_workers(manifest),
        _transform_chunk,
        [(config, staging, chunk, batches, types) for chunk, batches in chunks.items()],
        on_done=lambda _, files: progress.batches_done([b.rows for b in files]),
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
        check_stop(config, f"while transforming chunk {chunk}")
        table, failed = map_batch(config, read_batch(batch.path), types, duplicates)
        path = folder / batch_name(batch.index)
        write_batch(table, path)
        out.append(BatchFile(batch.index, str(path), table.num_rows, failed, batch.position, chunk))
    return out


__all__ = ["extract", "is_chunked", "transform", "workers_for"]
