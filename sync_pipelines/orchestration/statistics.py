"""The ``sync_statistics`` asset: per-sync success rate, volumes and durations from the run ledgers.

Materialized on a schedule (``sync_statistics_schedule``), it shows a table of every sync's figures
over the last :data:`WINDOW_DAYS` days and numeric entries (``<sync>_success_rate``,
``<sync>_records``, ``<sync>_p95_s``...) that the UI plots across materializations.

No postponed annotations here: Dagster reads the asset's context annotation.
"""

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    define_asset_job,
)

from sync_pipelines.config.models import SyncConfig

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from sync_pipelines.history.ledger import utcnow
from sync_pipelines.history.queries import runs_since
from sync_pipelines.history.stats import SyncStats, compute_stats
from sync_pipelines.orchestration.ledger_sensors import sweep
from sync_pipelines.types import RunStatus

ASSET_NAME = "sync_statistics"
JOB_NAME = "refresh_sync_statistics"
SCHEDULE_NAME = "sync_statistics_schedule"
GROUP = "sync_audit"
WINDOW_DAYS = 30
REFRESH_CRON = "0 * * * *"

STATS_SCHEMA = TableSchema(
    columns=[
        TableColumn("sync", "string", description="Sync name."),
        TableColumn("runs", "int", description="Runs started in the window (dry runs included)."),
        TableColumn("success_rate", "float", description="Completed or partial runs / finished runs."),
        TableColumn("completed", "int"),
        TableColumn("partial", "int"),
        TableColumn("failed", "int"),
        TableColumn("cancelled", "int"),
        TableColumn("processed", "int", description="Records read by the runs that wrote (not dry runs)."),
        TableColumn("created", "int"),
        TableColumn("updated", "int"),
        TableColumn("deleted", "int"),
        TableColumn("unchanged", "int"),
        TableColumn("failed_records", "int"),
        TableColumn("p50_s", "float", description="Median run duration in seconds."),
        TableColumn("p95_s", "float", description="95th percentile run duration in seconds."),
    ]
)


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def stats_record(stats: SyncStats) -> TableRecord:
    """One row of the statistics table."""
    r = stats.records
    return TableRecord(
        {
            "sync": stats.sync,
            "runs": stats.runs,
            "success_rate": _rounded(stats.success_rate),
            **{s.value: stats.by_status.get(s, 0) for s in (RunStatus.COMPLETED, RunStatus.PARTIAL)},
            "failed": stats.by_status.get(RunStatus.FAILED, 0),
            "cancelled": stats.by_status.get(RunStatus.CANCELLED, 0),
            "processed": stats.processed,
            "created": r["created"],
            "updated": r["updated"],
            "deleted": r["deleted"],
            "unchanged": r["unchanged"],
            "failed_records": r["failed"],
            "p50_s": _rounded(stats.p50_s),
            "p95_s": _rounded(stats.p95_s),
        }
    )


def statistics_metadata(per_sync: dict[str, SyncStats], days: int) -> dict[str, Any]:
    """The asset's metadata: the table, totals, and one numeric series per sync and figure."""
    runs = sum(s.runs for s in per_sync.values())
    finished = sum(s.finished for s in per_sync.values())
    succeeded = sum(s.succeeded for s in per_sync.values())
    metadata: dict[str, Any] = {
        "window_days": MetadataValue.int(days),
        "syncs": MetadataValue.table([stats_record(s) for s in per_sync.values()], schema=STATS_SCHEMA),
        "runs": MetadataValue.int(runs),
        "success_rate": MetadataValue.float(round(succeeded / finished, 4) if finished else 0.0),
    }
    for name, s in per_sync.items():
        metadata[f"{name}_success_rate"] = MetadataValue.float(round(s.success_rate or 0.0, 4))
        metadata[f"{name}_runs"] = MetadataValue.int(s.runs)
        metadata[f"{name}_records"] = MetadataValue.int(s.processed)
        metadata[f"{name}_p50_s"] = MetadataValue.float(round(s.p50_s or 0.0, 3))
        metadata[f"{name}_p95_s"] = MetadataValue.float(round(s.p95_s or 0.0, 3))
    return metadata


def build_statistics_asset(configs: Sequence[SyncConfig]) -> AssetsDefinition:
    """``sync_statistics``: recomputed from every sync's run ledger when materialized."""
    configs = list(configs)

    @asset(
        name=ASSET_NAME,
        group_name=GROUP,
        description=f"Per-sync run statistics over the last {WINDOW_DAYS} days from the `_sync_runs` ledgers: "
        "success rate, records per action, p50/p95 duration. Closes stale `running` ledger rows first.",
        kinds={"python"},
    )
    def _statistics(context: AssetExecutionContext) -> MaterializeResult:
        closed = sweep(context.instance, configs)
        if closed:
            context.log.info(f"closed {len(closed)} ledger row(s) whose run had ended: {', '.join(closed)}")
        since = utcnow() - dt.timedelta(days=WINDOW_DAYS)
        per_sync = compute_stats(runs_since(configs, since), [cfg.name for cfg in configs])
        return MaterializeResult(metadata=statistics_metadata(per_sync, WINDOW_DAYS))

    return _statistics


def build_statistics_job() -> "UnresolvedAssetJobDefinition":
    """``refresh_sync_statistics``: materializes ``sync_statistics``."""
    return define_asset_job(
        JOB_NAME, selection=[ASSET_NAME], description="Recompute the `sync_statistics` asset from the run ledgers."
    )


def build_statistics_schedule(job: "UnresolvedAssetJobDefinition") -> ScheduleDefinition:
    """``sync_statistics_schedule``: refreshes the statistics every hour."""
    return ScheduleDefinition(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=REFRESH_CRON,
        execution_timezone="UTC",
        description="Refresh `sync_statistics` every hour.",
        default_status=DefaultScheduleStatus.RUNNING,
    )
