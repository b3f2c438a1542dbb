"""How a sync is operated in Dagster: time partitions, the source-change sensor and step retries.

These settings never change what a run writes; they decide which runs start, over which window of
the cursor, and how often a failing step is tried again.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionGranularity(StrEnum):
    """Size of one time partition of the cursor column."""

    DAILY = "daily"
    HOURLY = "hourly"


class BackfillMode(StrEnum):
    """How a backfill of several partitions is executed."""

    MULTI_RUN = "multi_run"
    """One run per partition: small runs, retried and cancelled one by one."""
    SINGLE_RUN = "single_run"
    """One run reading the whole range ``[first start, last end)``: fewer runs for large backfills."""


MAX_PARALLEL_PARTITIONS = 16
"""The most partition runs of one sync that may load at once (the lease has this many shared slots)."""


class Partitions(_Model):
    """Time partitions over the cursor column of an incremental sync.

    A partitioned run reads the rows whose cursor is in the partition's window ``[start, end)``,
    read as wall-clock time in the sync's ``timezone``, instead of the rows after the watermark.
    """

    granularity: PartitionGranularity = Field(description="`daily` or `hourly` partitions of the cursor.")
    start: dt.datetime = Field(description="Start of the first partition, e.g. `2024-01-01` or `2024-01-01 06:00`.")
    backfill: BackfillMode = Field(
        default=BackfillMode.MULTI_RUN,
        description="`multi_run`: a backfill runs one run per partition; `single_run`: one run for the whole range.",
    )
    max_parallel: int = Field(
        default=2,
        ge=1,
        le=MAX_PARALLEL_PARTITIONS,
        description="Partition runs of this sync that may load at once (a backfill's runs, CLI runs with "
        "`--partition`). Plain runs (schedule, sensor, full sync) always run alone. A SQLite target, or a "
        "target without the cursor column, takes one at a time.",
    )

    @field_validator("start", mode="before")
    @classmethod
    def _date_or_datetime(cls, value: object) -> object:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day)
        return value

    @field_validator("start")
    @classmethod
    def _naive(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is not None:
            raise ValueError("give `start` without a UTC offset; it is read in the sync's `timezone`")
        return value


class RealtimeSensor(_Model):
    """Near-realtime runs: a sensor polls the source's high-water mark and starts a run when it moves."""

    enabled: bool = Field(default=True, description="Default status of the sensor; the UI toggle still works.")
    interval_seconds: int = Field(
        default=60, ge=5, le=86_400, description="Seconds between two polls of `MAX(cursor)` on the source."
    )


class Retry(_Model):
    """Retries of a step that failed with a transient connector error (connection refused, timeout, deadlock)."""

    max_retries: int = Field(default=3, ge=0, le=20, description="Retries of a step after a transient error.")
    delay_s: float = Field(default=10.0, ge=0, le=3600, description="Wait before the first retry, in seconds.")
    max_delay_s: float = Field(
        default=300.0, ge=0, le=86_400, description="Longest wait between two retries (the wait doubles each time)."
    )


__all__ = ["BackfillMode", "PartitionGranularity", "Partitions", "RealtimeSensor", "Retry"]
