"""Time partitions of a sync's cursor: the Dagster partitions definition, backfill policy and run window."""

from __future__ import annotations

import datetime as dt

from dagster import (
    BackfillPolicy,
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    OpExecutionContext,
    TimeWindowPartitionsDefinition,
)

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.operations import BackfillMode, PartitionGranularity

Window = tuple[dt.datetime, dt.datetime]


def partitions_def(cfg: SyncConfig) -> TimeWindowPartitionsDefinition | None:
    """Daily or hourly partitions from ``partitions.start`` in the sync's timezone; None when unpartitioned."""
    if cfg.partitions is None:
        return None
    start = cfg.partitions.start
    if cfg.partitions.granularity is PartitionGranularity.HOURLY:
        return HourlyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d-%H:%M"), timezone=cfg.timezone)
    return DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone=cfg.timezone)


def backfill_policy(cfg: SyncConfig) -> BackfillPolicy | None:
    """One run per partition (``multi_run``), or one run for the whole range (``single_run``)."""
    if cfg.partitions is None:
        return None
    if cfg.partitions.backfill is BackfillMode.SINGLE_RUN:
        return BackfillPolicy.single_run()
    return BackfillPolicy.multi_run(max_partitions_per_run=1)


def run_window(context: OpExecutionContext) -> Window | None:
    """The cursor window ``[start, end)`` of a partitioned run, as naive wall-clock times; None otherwise.

    A run of one partition gets that partition's window; a single-run backfill gets the window from
    the first partition's start to the last one's end. A run launched without a partition (a
    schedule, the sensor, a full sync from the launchpad) has no window and reads as usual.
    """
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def window_text(window: Window) -> str:
    """``[2024-01-01 00:00:00, 2024-01-02 00:00:00)``."""
    return f"[{window[0]:%Y-%m-%d %H:%M:%S}, {window[1]:%Y-%m-%d %H:%M:%S})"
