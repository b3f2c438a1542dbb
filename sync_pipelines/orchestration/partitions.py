"""Time partitions of a sync's cursor: the Dagster partitions definition, backfill policy and run window.

A partitioned sync is materialized partition by partition by its backfills, and as a whole by its
other runs (the schedule, the sensor, a manual or full run). Those runs read every source row past
the watermark as it stands when they run, so they also materialize the partitions holding the rows
they read (:func:`covered_partitions`): the asset never looks empty after runs that loaded it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dagster import (
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    OpExecutionContext,
    TimeWindowPartitionsDefinition,
)

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.operations import BackfillMode, PartitionGranularity
from sync_pipelines.connectors.values import decode
from sync_pipelines.engine.manifest import SyncResult

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


def _cursor_time(watermark: dict[str, Any] | None) -> dt.datetime | None:
    """The cursor of a watermark as a naive datetime; None when there is none (or it is not a time)."""
    value = decode((watermark or {}).get("cursor"))
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return None


def covered_partitions(
    cfg: SyncConfig, read: tuple[dict[str, Any] | None, dict[str, Any] | None], full_sync: bool, now: dt.datetime
) -> list[str]:
    """The partitions holding the rows an unpartitioned run read: from the one of the watermark it started
    from (the first partition in a full sync or a first run) to the one of the last row it read.

    Only partitions ended by ``now`` count. Partitions after the last row hold no data yet and stay
    unmaterialized, which is what they are; each materialization is one event in Dagster's storage.
    """
    definition = partitions_def(cfg)
    before, after = (_cursor_time(w) for w in read)
    last_read = after or before
    if definition is None or last_read is None:
        return []
    since = None if full_sync else before
    keys = definition.get_partition_keys(current_time=now)
    windows = {k: definition.time_window_for_partition_key(k) for k in keys}
    return [
        k
        for k, w in windows.items()
        if w.start.replace(tzinfo=None) <= last_read and (since is None or w.end.replace(tzinfo=None) > since)
    ]


def log_covered_partitions(context: OpExecutionContext, cfg: SyncConfig, result: SyncResult) -> None:
    """Record a materialization of each partition an unpartitioned run of a partitioned sync covered."""
    if cfg.partitions is None or context.has_partition_key or context.has_partition_key_range:
        return
    key = AssetKey(cfg.name)
    read = (result.watermark_before, result.watermark_after)
    keys = covered_partitions(cfg, read, result.full_sync, dt.datetime.now(dt.UTC))
    how = "full" if result.full_sync else "incremental"
    for partition in keys:
        context.log_event(
            AssetMaterialization(
                asset_key=key, partition=partition, description=f"Read whole by run {context.run_id} ({how})."
            )
        )
    if keys:
        context.log.info(f"{cfg.name}: partitions {keys[0]} to {keys[-1]} ({len(keys)}) covered by this run")
