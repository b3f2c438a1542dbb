"""Reading the next batch's target rows and baselines while the current batch is classified and written.

A full sync reads back every target row and baseline (it reconciles). On a database server the read is
the server's work, and the client waits for it; classifying a batch is the client's work, and the server
idles meanwhile. :class:`ReadAhead` starts the read of batch n + 1 on a connection of its own, in one
background thread, when the driver starts committing batch n, so that on two cores the two overlap.

What was read ahead is used only where it is what the batch's own transaction would have read:

- the keys read are the batch's keys, one column of integers (texts that differ in Python may be one row
  to a case-insensitive collation);
- their span does not meet the span of the batch committed while they were read: the read could not see
  that batch's writes (a full read's batches are consecutive key ranges, so they never meet; an
  incremental read's batches are ordered by their cursor, and their spans do);
- the read ended without an error.

Anything else is read again in the batch's transaction, as without reading ahead: reading ahead moves the
read earlier by at most one batch, never past the batch before it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.engine.classify import batch_keys
from sync_pipelines.engine.manifest import BatchFile

Sides = tuple[pa.Table, pa.Table]
"""The target rows and the baselines of a batch's keys."""


def key_span(keys: pa.Table) -> tuple[Any, Any] | None:
    """The least and greatest key of a one-column key table; None when it holds none."""
    if not keys.num_rows:
        return None
    bounds = pc.min_max(keys.column(0))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return None if low is None else (low, high)


class ReadAhead:
    """Reads of the batches the driver commits next, one at a time, in order, on a background thread."""

    def __init__(self, key: tuple[str, ...], read: Callable[[pa.Table], Sides]):
        self.key = key
        self.read = read
        """Reads the target rows and baselines of some keys, on a connection of its own."""
        self._reader: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[tuple[pa.Table, Sides]]] = {}
        self._written: tuple[Any, Any] | None = None

    def start(self, batch: BatchFile, rows: pa.Table) -> None:
        """Start reading for ``batch`` (its staged ``rows``) behind the reads already started."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="sync-read-ahead")
        self._pending[batch.index] = self._reader.submit(self._read_for, rows)

    def _read_for(self, rows: pa.Table) -> tuple[pa.Table, Sides]:
        keys = batch_keys(rows, self.key)
        return keys, self.read(keys)

    def take(self, batch: BatchFile, keys: pa.Table) -> Sides | None:
        """What was read for ``batch`` if it may stand for the batch's own read of ``keys`` (see the module's
        notes), else None; either way, ``batch`` becomes the batch whose writes later reads may miss."""
        for index in [i for i in self._pending if i < batch.index]:
            self._pending.pop(index).cancel()
        pending = self._pending.pop(batch.index, None)
        written, self._written = self._written, key_span(keys)
        if pending is None:
            return None
        try:
            read_keys, sides = pending.result()
        except Exception:  # the batch's own read, in its transaction, reports what fails
            return None
        if not read_keys.equals(keys) or not pa.types.is_integer(keys.schema.field(0).type):
            # Integer keys only: texts that differ here may be one row to a case-insensitive collation.
            return None
        span = key_span(keys)
        if written is not None and (span is None or not (span[0] > written[1] or span[1] < written[0])):
            return None
        return sides

    def close(self) -> None:
        """Drop what was read and stop the thread (waiting for a read under way to end)."""
        self._pending.clear()
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None
