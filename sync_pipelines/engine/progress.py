"""Live progress of a running stage: one log line per batch, written and read back in one format.

A line reads ``orders extract progress: 3 batches done, 3000 of 10000 rows (30.0%), 1520 rows/s,
ETA 4.6 s``. The total (and so the percentage and the ETA) appears when it is known: the source's
``COUNT(*)`` with the run's filter and watermark while extracting, the staged row count afterwards.
:func:`parse_progress` turns such a line back into a :class:`ProgressSnapshot`, which is how
``sync-pipelines status`` reads a run's progress from its event log.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

_LINE = re.compile(
    r"^(?P<sync>\S+) (?P<stage>\w+) progress: (?P<batches>\d+) batch(?:es)? done, (?P<rows>\d+)"
    r"(?: of (?P<total>\d+))? rows(?: \([\d.]+%\))?, (?P<rate>[\d.]+) rows/s(?:, ETA (?P<eta>[\d.]+) s)?$"
)


@dataclass(frozen=True)
class ProgressSnapshot:
    """Where a stage stood after a batch."""

    sync: str
    stage: str
    batches: int
    rows: int
    rows_per_s: float
    total: int | None = None
    eta_s: float | None = None

    @property
    def percent(self) -> float | None:
        """Share of the total done, when the total is known."""
        if self.total is None:
            return None
        return 100.0 if self.total == 0 else min(100.0, 100.0 * self.rows / self.total)

    def line(self) -> str:
        """The log line of this snapshot (parsed back by :func:`parse_progress`)."""
        noun = "batch" if self.batches == 1 else "batches"
        text = f"{self.sync} {self.stage} progress: {self.batches} {noun} done, {self.rows}"
        if self.total is not None:
            text += f" of {self.total} rows ({self.percent:.1f}%)"
        else:
            text += " rows"
        text += f", {self.rows_per_s:.0f} rows/s"
        if self.eta_s is not None:
            text += f", ETA {self.eta_s:.1f} s"
        return text


def parse_progress(message: str) -> ProgressSnapshot | None:
    """The snapshot a progress line describes, or None for any other message."""
    match = _LINE.match(message.strip())
    if match is None:
        return None
    total, eta = match.group("total"), match.group("eta")
    return ProgressSnapshot(
        sync=match.group("sync"),
        stage=match.group("stage"),
        batches=int(match.group("batches")),
        rows=int(match.group("rows")),
        rows_per_s=float(match.group("rate")),
        total=int(total) if total is not None else None,
        eta_s=float(eta) if eta is not None else None,
    )


@dataclass
class Progress:
    """Counts the batches of one stage and logs a :class:`ProgressSnapshot` line after each."""

    sync: str
    stage: str
    logger: logging.Logger
    total: int | None = None
    rows: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    def batches_done(self, batch_rows: list[int]) -> ProgressSnapshot:
        """Record several finished batches (a chunk of a parallel run) with one progress line."""
        self.batches += max(len(batch_rows) - 1, 0)
        return self.batch_done(sum(batch_rows))

    def batch_done(self, rows: int) -> ProgressSnapshot:
        """Record a finished batch of ``rows`` rows and log the progress line."""
        self.rows += rows
        self.batches += 1
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.rows / elapsed
        eta = None
        if self.total is not None and self.rows < self.total and rate > 0:
            eta = max(self.total - self.rows, 0) / rate
        snapshot = ProgressSnapshot(self.sync, self.stage, self.batches, self.rows, rate, self.total, eta)
        self.logger.info(snapshot.line())
        return snapshot


__all__ = ["Progress", "ProgressSnapshot", "parse_progress"]
