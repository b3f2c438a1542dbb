"""The load driver: one loop for every target, every run shape (serial, parallel chunks, dry run).

A target plugs in as a :class:`BatchWriter`: it prepares its tables, claims the run, writes one
planned batch inside the transaction the driver opens, and finishes the run. The driver owns what
every target shares:

- the sync's lease, held from the claim to the finish;
- the resume record (``_sync_batches``, see :class:`ResumeRecord`): a batch's row commits in the same
  transaction as its data, so a re-executed run skips exactly the batches committed before;
- one retry policy: a :class:`~sync_pipelines.errors.TransientConnectorError` replays the whole batch,
  up to :data:`ATTEMPTS` times (:func:`commit_batch`);
- a stop check before every batch (:func:`~sync_pipelines.engine.pool.check_stop`);
- the dry run: the same loop into a :class:`DrySink`, whose transaction is one read-only connection.

Serial runs go through :func:`~sync_pipelines.engine.pool.run_inline`, one job per batch; the chunks of
a parallel read through :func:`~sync_pipelines.engine.pool.run_pool`, one job per chunk, each worker
building its own writer from :meth:`BatchWriter.worker`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.sql import add_missing_columns, translate_errors
from sync_pipelines.engine.guards import settle_status
from sync_pipelines.engine.manifest import (
    BatchFile,
    Manifest,
    RunOptions,
    SyncResult,
    by_chunk,
    chunk_workers,
    is_chunked,
)
from sync_pipelines.engine.pool import check_stop, run_inline, run_pool
from sync_pipelines.engine.progress import Progress
from sync_pipelines.engine.staging import StagingError, read_batch, remove_sync_staging
from sync_pipelines.errors import TransientConnectorError
from sync_pipelines.types import Counts, RecordAction, RecordOutcome

ATTEMPTS = 3
"""Tries of one batch's transaction when the target fails transiently (a dropped connection, a race)."""

W = TypeVar("W")
"""What a writer's :meth:`BatchWriter.write` returns, handed back to :meth:`BatchWriter.committed`."""


class Samples:
    """The first few outcomes of every action, so that rare failures are not crowded out."""

    def __init__(self, size: int):
        self.size = size
        self.by_action: dict[RecordAction, list[RecordOutcome]] = {}

    def add(self, outcomes: Iterable[RecordOutcome]) -> None:
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


class TargetSink:
    """Where a real run's batches go: one transaction each on the target's engine."""

    writes = True
    attempts = ATTEMPTS

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def transaction(self) -> AbstractContextManager[Connection | None]:
        return self.engine.begin()


class DrySink:
    """Where a dry run's batches go: nowhere. Each is planned on one read-only connection (None when the
    target has no tables yet), rolled back at the end of the run."""

    writes = False
    attempts = 1

    def __init__(self, conn: Connection | None):
        self.conn = conn

    def transaction(self) -> AbstractContextManager[Connection | None]:
        return contextlib.nullcontext(self.conn)


Sink = TargetSink | DrySink


class ResumeRecord:
    """``_sync_batches`` in the target database: the batches of a run committed so far.

    A batch's row is written in the batch's own transaction (:meth:`mark`), so after a failure or a stop
    the record names exactly the batches whose data is committed. The rows of the last run are kept
    until the next run of the sync starts (:meth:`reset`).
    """

    def __init__(self, sync: str, db_schema: str | None, attempt: str | None = None):
        self.sync = sync
        self.attempt = attempt
        """The run whose process commits the batches (a re-execution's own id); None: the sync run's."""
        self.table = bookkeeping.batches_table(sa.MetaData(schema=db_schema))

    def create(self, conn: Connection) -> None:
        self.table.create(conn, checkfirst=True)
        add_missing_columns(conn, sa.inspect(conn), self.table)

    def done(self, conn: Connection, run_id: str) -> set[int]:
        """The batches of ``run_id`` committed so far."""
        t = self.table
        query = sa.select(t.c.batch).where(t.c.sync == self.sync, t.c.run_id == run_id)
        return {int(b) for (b,) in conn.execute(query)}

    def reset(self, conn: Connection) -> None:
        """Forget the record of the sync's earlier runs (a new run starts)."""
        conn.execute(sa.delete(self.table).where(self.table.c.sync == self.sync))

    def mark(self, conn: Connection, run_id: str, batch: BatchFile) -> None:
        """Record ``batch`` as committed, in the caller's transaction (the one writing its data)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        conn.execute(
            sa.insert(self.table).values(
                sync=self.sync,
                run_id=run_id,
                batch=batch.index,
                chunk=batch.chunk or 0,
                committed_at=now,
                attempt=self.attempt or run_id,
            )
        )


class BatchWriter(Protocol[W]):
    """A target's side of the load driver (the SQL table loader, the CMDB host writer).

    Every batch is planned and written by :meth:`write` inside the transaction of :attr:`sink`, its
    resume record (:class:`ResumeRecord`) included; :meth:`committed` runs once that transaction has
    committed, and returns the batch's counts.
    """

    endpoint: str
    """The target named in errors."""
    sink: Sink
    """Where batches go; :meth:`planning` swaps in a :class:`DrySink`."""

    @property
    def replayable(self) -> bool:
        """Whether a batch may be replayed after a transient error (not once it wrote outside the target)."""
        ...

    def prepare(self) -> None:
        """Create or check the target's tables and the resume record (a real run, before the lease)."""
        ...

    def lease(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the sync's lease: no other run writes the target meanwhile."""
        ...

    def claim(self, manifest: Manifest, options: RunOptions) -> set[int]:
        """Start the run under the lease: the batches an earlier attempt of it committed (resume), else none."""
        ...

    def committed_counts(self, batch: BatchFile) -> Counts:
        """The counts of a batch an earlier attempt of this run committed (it is not written again)."""
        ...

    def write(self, conn: Connection | None, table: pa.Table, batch: BatchFile) -> W:
        """Plan one batch and, for a real sink, write it with its resume record in ``conn``'s transaction."""
        ...

    @property
    def reads_ahead(self) -> bool:
        """Whether this run's writer reads a batch's target rows ahead (:meth:`read_ahead`); the driver then
        reads the next batch's staged rows before committing the current one, to hand them over."""
        ...

    def read_ahead(self, following: tuple[BatchFile, pa.Table] | None) -> None:
        """``following`` (a batch and its staged rows) is committed after the batch about to be: the writer
        may start reading the target for it on a connection of its own (a hint; :meth:`write` reads
        whatever was not read ahead). None: the run's batches are done, or it stopped."""
        ...

    def committed(self, written: W) -> Counts:
        """Keep what a batch produced (samples, results) once its transaction committed; its counts."""
        ...

    def sampled(self) -> list[RecordOutcome]:
        """Sample outcomes of the batches written by this writer."""
        ...

    def planning(self) -> AbstractContextManager[None]:
        """A dry run: set a :class:`DrySink` on a read-only connection, rolled back on exit."""
        ...

    def finish(self, manifest: Manifest, options: RunOptions, result: SyncResult, samples: Samples) -> None:
        """The end of the run after its last batch (written, or planned in a dry run)."""
        ...

    def worker(self) -> Callable[[], BatchWriter[W]]:
        """A picklable factory of the same writer in a worker process (one chunk of a parallel load)."""
        ...


@dataclass
class Committed:
    """What committing some batches produced: counts and sample outcomes."""

    counts: Counts = field(default_factory=Counts)
    samples: list[RecordOutcome] = field(default_factory=list)


def commit_batch(writer: BatchWriter[Any], batch: BatchFile, table: pa.Table | None = None) -> Counts:
    """Write one batch (its staged rows, ``table`` if already read) in one transaction; a transient error
    replays it whole (the one retry policy)."""
    if table is None:
        table = read_batch(batch.path)
    attempts = writer.sink.attempts if writer.replayable else 1
    for attempt in range(1, attempts + 1):
        try:
            with translate_errors(writer.endpoint, f"loading batch {batch.index}"), writer.sink.transaction() as conn:
                written = writer.write(conn, table, batch)
            break
        except TransientConnectorError:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
    return writer.committed(written)


def commit_chunk(
    open_writer: Callable[[], BatchWriter[Any]], config: SyncConfig, batches: list[BatchFile]
) -> Committed:
    """Worker of a parallel load: commit the batches of one chunk, in order, stopping at a batch boundary."""
    writer = open_writer()
    counts = Counts()
    for batch in batches:
        check_stop(config, f"before batch {batch.index}")
        counts.merge(commit_batch(writer, batch))
    return Committed(counts, writer.sampled())


def run_batches(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    writer: BatchWriter[Any],
    batches: list[BatchFile],
    *,
    parallel: bool,
) -> Committed:
    """Commit ``batches``: one job per chunk in worker processes (``parallel``), else one per batch inline."""
    out = Committed()
    progress = Progress(config.name, "load", options.logger, total=sum(b.rows for b in batches))
    if parallel:
        jobs = [b for b in by_chunk(batches).values() if b]
        open_writer = writer.worker()
        parts = run_pool(
            config,
            options,
            chunk_workers(manifest),
            commit_chunk,
            [(open_writer, config, part) for part in jobs],
            on_done=lambda i, _: progress.batches_done([b.rows for b in jobs[i]]),
        )
        for part in parts:
            out.counts.merge(part.counts)
            out.samples += part.samples
        return out

    following = dict(zip((b.index for b in batches), batches[1:], strict=False))
    staged: dict[int, pa.Table] = {}
    """The next batch's rows, read early for the writer to read its target rows ahead."""

    def one(batch: BatchFile) -> Counts:
        check_stop(config, f"before batch {batch.index}")
        table = staged.pop(batch.index, None)
        after = following.get(batch.index)
        if after is not None and writer.reads_ahead:
            with contextlib.suppress(StagingError):  # reported by that batch's own commit, after this one's
                staged[after.index] = read_batch(after.path)
                writer.read_ahead((after, staged[after.index]))
        return commit_batch(writer, batch, table)

    try:
        done = run_inline(options, one, [(b,) for b in batches], lambda i, _: progress.batch_done(batches[i].rows))
    finally:
        writer.read_ahead(None)
    for counts in done:
        out.counts.merge(counts)
    out.samples = writer.sampled()
    return out


def drive(
    config: SyncConfig,
    manifest: Manifest,
    options: RunOptions,
    writer: BatchWriter[Any],
    result: SyncResult,
    samples: Samples,
) -> None:
    """The load driver: commit the run's batches through ``writer`` (or plan them, in a dry run).

    A real run prepares the target, then under the lease claims the run, counts the batches an earlier
    attempt committed (named by the resume record) without writing them again, commits the others and
    finishes the run. A dry run plans every batch on one read-only connection and writes nothing.
    """
    if options.dry_run:
        with writer.planning():
            planned = run_batches(config, manifest, options, writer, manifest.batches, parallel=False)
            result.counts.merge(planned.counts)
            samples.add(planned.samples)
            writer.finish(manifest, options, result, samples)
        return
    writer.prepare()
    with writer.lease(options.run_id):
        done = writer.claim(manifest, options)
        for batch in manifest.batches:
            if batch.index in done:
                result.counts.merge(writer.committed_counts(batch))
        todo = [b for b in manifest.batches if b.index not in done]
        committed = run_batches(config, manifest, options, writer, todo, parallel=is_chunked(manifest))
        result.counts.merge(committed.counts)
        samples.add(committed.samples)
        writer.finish(manifest, options, result, samples)


def conclude(config: SyncConfig, options: RunOptions, result: SyncResult, started: float, *, unit: str) -> SyncResult:
    """The end of every load: the status by the failure ratio (of ``unit``), the duration, the staged
    batches removed, one log line."""
    settle_status(config, result, unit=unit)
    result.duration_s = time.monotonic() - started
    remove_sync_staging(options.staging_dir(config.name))
    options.logger.info("%s: %s %s", config.name, result.status.value, result.counts.as_dict())
    return result


__all__ = [
    "ATTEMPTS",
    "BatchWriter",
    "Committed",
    "DrySink",
    "ResumeRecord",
    "Samples",
    "TargetSink",
    "commit_batch",
    "conclude",
    "drive",
    "run_batches",
]
