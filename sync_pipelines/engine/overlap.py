"""Which runs of a sync load side by side, and the guard that keeps their writes in cursor order.

Plain runs (the schedule, the sensor, a manual or full run) move the watermark: each loads alone, and
one whose extract read the source before another plain run committed is refused (the stale-read
guard, :func:`~sync_pipelines.engine.load.resuming_run`). Partition runs read a window of the cursor
and never move the watermark: up to ``partitions.max_parallel`` of them load at once, sharing the
sync's lease. Two of them write the same record only when its cursor moved from one window into
the other between their reads, so instead of refusing the later load, every run of a partitioned
sync skips the records whose target row holds a newer cursor than the one it read
(:func:`newer_in_target`): a record is never written older over newer, whichever run loads first.

The guard needs the cursor in the target: a sync whose mapping leaves it out runs its partitions
one at a time, with the stale-read guard, as its plain runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.config.models import SyncConfig

PLAIN_LEASE_WAIT_S = 60.0
"""How long a plain run waits for the lease before it fails (another plain run is loading); behind partition
runs it waits as long as they may (:data:`PARTITION_LEASE_WAIT_S`)."""
PARTITION_LEASE_WAIT_S = 3600.0
"""How long a partition run waits for a slot of the lease: partition runs queue behind each other."""


def cursor_column(config: SyncConfig) -> str | None:
    """The target column the sync's cursor fills; None when the target does not keep it (or no cursor)."""
    if config.cursor is None:
        return None
    if not config.mapping:
        return config.cursor
    return next((c for c in config.mapping if config.source_column(c) == config.cursor), None)


def partition_slots(config: SyncConfig) -> int:
    """How many partition runs of ``config`` may load at once (``partitions.max_parallel``).

    0 when its partition runs load alone, as plain runs do: the sync has no partitions, or its target
    does not keep the cursor, which the older-over-newer guard compares. The target's database may
    still take one writer at a time (SQLite): its lease then lets one partition run in at a time.
    """
    if config.partitions is None or cursor_column(config) is None:
        return 0
    return config.partitions.max_parallel


def newer_in_target(batch: pa.Table, current: pa.Table, key: list[str], cursor: str) -> np.ndarray[Any, Any]:
    """A mask over ``batch``: the rows whose target row (in ``current``, same key) holds a later cursor.

    Vectorised: one hash join on the key, one comparison. A NULL cursor on either side never counts as
    newer (the row is written as usual); the target's cursor is cast to the batch's type first (a database
    that reads it back as text).
    """
    newer = np.zeros(batch.num_rows, dtype=bool)
    if not batch.num_rows or not current.num_rows:
        return newer
    incoming = batch.column(cursor)
    stored = current.column(cursor)
    if stored.type != incoming.type:
        stored = pc.cast(stored, incoming.type)
    left = (
        batch.select(key).append_column("__row", pa.array(np.arange(batch.num_rows))).append_column("__new", incoming)
    )
    right = current.select(key).append_column("__old", stored)
    joined = left.join(right, keys=key, join_type="inner")
    later = pc.fill_null(pc.greater(joined.column("__old"), joined.column("__new")), False)
    rows = np.asarray(joined.column("__row").filter(later).to_numpy(), dtype=np.int64)
    newer[rows] = True
    return newer


__all__ = [
    "PARTITION_LEASE_WAIT_S",
    "PLAIN_LEASE_WAIT_S",
    "cursor_column",
    "newer_in_target",
    "partition_slots",
]
