"""Extract: stream the source into run-scoped staged batches (Arrow IPC files) and describe them in a manifest."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.base import RangeSourceReader, SourceReader
from sync_pipelines.connectors.compat import check_drift
from sync_pipelines.connectors.values import encode, type_name
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions
from sync_pipelines.engine.progress import Progress
from sync_pipelines.engine.staging import batch_name, prepare_dir, write_batch
from sync_pipelines.errors import ConnectorError, RunCancelled
from sync_pipelines.kinds import source_reader, target_writer
from sync_pipelines.types import SyncMode


def is_incremental(config: SyncConfig, options: RunOptions) -> bool:
    """Whether this run reads after the watermark (an incremental sync not forced to full)."""
    return config.mode is SyncMode.INCREMENTAL and not options.full_sync


def extract(config: SyncConfig, options: RunOptions) -> Manifest:
    """Stream the source in batches of ``config.batch_size`` into run-scoped staged files."""
    window = options.window
    reader = source_reader(config)
    state = target_writer(config).current_state()
    incremental = is_incremental(config, options) or window is not None
    watermark = state.watermark if incremental and window is None else None
    folder = prepare_dir(options.staging_dir(config.name) / "extract")
    types = reader.arrow_schema()
    check_drift(config, types, reader.endpoint)
    progress = Progress(config.name, "extract", options.logger, total=_count(reader, watermark, incremental, options))
    manifest = Manifest(
        sync=config.name,
        run_id=options.run_id,
        stage="extract",
        full_sync=not incremental,
        watermark_before=state.watermark,
        state_version=state.version,
        types={name: type_name(t) for name, t in types.items()},
    )
    best: tuple[Any, ...] | None = None
    if window is not None:
        options.logger.info("%s: reading the cursor window [%s, %s)", config.name, *window)
    batches = (
        reader.read(watermark, incremental=incremental)
        if window is None
        else _windowed(reader).read(watermark, incremental=incremental, window=window)
    )
    for index, batch in enumerate(batches):
        if options.stop_requested.is_set():
            raise RunCancelled(f"sync {config.name}: stopped while extracting (batch {index})")
        path = folder / batch_name(index)
        write_batch(batch.table, path)
        # A window's rows may lie before the watermark: a partitioned run never moves it.
        position = None if window is not None else batch.last_position
        manifest.batches.append(BatchFile(index, str(path), batch.table.num_rows, position=position))
        manifest.rows += batch.table.num_rows
        if not incremental and config.cursor:
            best = _max_position(config, batch.table, best)
        progress.batch_done(batch.table.num_rows)
    if incremental and manifest.batches:
        manifest.final_position = manifest.batches[-1].position
    elif best is not None:
        manifest.final_position = {"cursor": encode(best[0]), "key": [encode(v) for v in best[1:]]}
    return manifest


def _count(
    reader: SourceReader, watermark: dict[str, Any] | None, incremental: bool, options: RunOptions
) -> int | None:
    """The number of rows the run will read; None when the source cannot count them now."""
    try:
        if options.window is not None:
            return _windowed(reader).count(watermark, incremental=incremental, window=options.window)
        return reader.count(watermark, incremental=incremental)  # None: the source cannot tell
    except ConnectorError as exc:
        options.logger.warning("cannot count the source rows, progress shows no total: %s", exc)
        return None


def _windowed(reader: SourceReader) -> RangeSourceReader:
    """A reader of a partitioned run: only sources that read cursor windows take partitions (config rule)."""
    assert isinstance(reader, RangeSourceReader), "partitions need a source that reads cursor windows"
    return reader


def _max_position(config: SyncConfig, table: pa.Table, best: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """The greatest ``(cursor, key...)`` seen so far, so a full read can still set the watermark.

    Arrow finds the batch's greatest cursor; only the rows holding it (usually one) are compared as Python
    tuples, key included. A cursor type Arrow cannot order is compared row by row.
    """
    assert config.cursor is not None
    cursor = table.column(config.cursor)
    try:
        top = pc.max(cursor)
    except pa.ArrowNotImplementedError:
        return _max_row(config, table, best)
    if not top.is_valid:
        return best  # every cursor of the batch is NULL
    return _max_row(config, table.filter(pc.equal(cursor, top)), best)


def _max_row(config: SyncConfig, table: pa.Table, best: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    assert config.cursor is not None
    columns = [table.column(config.cursor).to_pylist()] + [table.column(k).to_pylist() for k in config.source_key]
    for row in zip(*columns, strict=True):
        if row[0] is None:
            continue
        try:
            if best is None or row > best:
                best = row
        except TypeError:
            continue
    return best


__all__ = ["extract", "is_incremental"]
