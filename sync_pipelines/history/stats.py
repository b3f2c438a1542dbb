"""Per-sync statistics over the runs of a time window, computed from ledger rows."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sync_pipelines.history.ledger import RunEntry
from sync_pipelines.types import RunStatus

ACTION_COUNTS: tuple[str, ...] = ("created", "updated", "unchanged", "deleted", "failed", "skipped", "conflicted")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` percentile (0-100) of ``values`` by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class SyncStats:
    """Runs of one sync in a window: how many, how they ended, the records they touched, how long they took."""

    sync: str
    runs: int = 0
    by_status: dict[RunStatus, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTION_COUNTS, 0))
    processed: int = 0
    durations: list[float] = field(default_factory=list)

    @property
    def finished(self) -> int:
        """Runs that ended (not ``running``)."""
        return self.runs - self.by_status.get(RunStatus.RUNNING, 0)

    @property
    def succeeded(self) -> int:
        """Runs that ended ``completed`` or ``partial``."""
        return self.by_status.get(RunStatus.COMPLETED, 0) + self.by_status.get(RunStatus.PARTIAL, 0)

    @property
    def success_rate(self) -> float | None:
        """Share of finished runs that succeeded (completed or partial); None without finished runs."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def p50_s(self) -> float | None:
        return percentile(self.durations, 50)

    @property
    def p95_s(self) -> float | None:
        return percentile(self.durations, 95)

    def add(self, entry: RunEntry) -> None:
        """Count one run."""
        self.runs += 1
        self.by_status[entry.status] = self.by_status.get(entry.status, 0) + 1
        self.processed += entry.counts.get("processed", 0)
        for key in ACTION_COUNTS:
            self.records[key] += entry.counts.get(key, 0)
        if entry.status is not RunStatus.RUNNING and entry.duration_s is not None:
            self.durations.append(float(entry.duration_s))


def compute_stats(entries: Iterable[RunEntry], syncs: Sequence[str] = ()) -> dict[str, SyncStats]:
    """Statistics per sync, for every sync in ``syncs`` (even without runs) and every sync seen.

    Dry runs are left out: they wrote nothing, and a rehearsal is not a run of the sync.
    """
    stats = {name: SyncStats(name) for name in syncs}
    for entry in entries:
        if entry.dry_run:
            continue
        stats.setdefault(entry.sync, SyncStats(entry.sync)).add(entry)
    return dict(sorted(stats.items()))


PARTITION_PREFIX = "partition "


@dataclass
class PartitionStats:
    """The runs of one partition (a batch, in seed 002's words) of a partitioned sync."""

    sync: str
    partition: str
    runs: int = 0
    failed_runs: int = 0
    last: RunEntry | None = None

    def add(self, entry: RunEntry) -> None:
        """Count one run of the partition; the latest run decides its current state."""
        self.runs += 1
        if entry.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            self.failed_runs += 1
        if self.last is None or entry.started_at >= self.last.started_at:
            self.last = entry

    @property
    def needs_rerun(self) -> bool:
        """Whether the partition's latest run failed or was cancelled."""
        return self.last is not None and self.last.status in (RunStatus.FAILED, RunStatus.CANCELLED)


def compute_partition_stats(entries: Iterable[RunEntry]) -> list[PartitionStats]:
    """Statistics per (sync, partition) of the partitioned runs among ``entries`` (dry runs left out).

    A run of a partition range (a single-run backfill) counts under its range, e.g. ``2024-03-01..2024-03-03``.
    """
    stats: dict[tuple[str, str], PartitionStats] = {}
    for entry in entries:
        if entry.dry_run or not entry.mode.startswith(PARTITION_PREFIX):
            continue
        partition = entry.mode.removeprefix(PARTITION_PREFIX)
        stats.setdefault((entry.sync, partition), PartitionStats(entry.sync, partition)).add(entry)
    return [stats[key] for key in sorted(stats)]
