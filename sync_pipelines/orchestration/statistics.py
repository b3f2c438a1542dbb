"""The ``sync_statistics`` asset: per-sync success rate, volumes and durations from the run ledgers.

Refreshed after sync runs end (``sync_statistics_sensor``), it shows a table of every sync's figures
over the last :data:`WINDOW_DAYS` days and numeric entries (``<sync>_success_rate``,
``<sync>_records``, ``<sync>_p95_s``...) that the UI plots across materializations.

No postponed annotations here: Dagster reads the asset's context annotation.
"""

import datetime as dt
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    define_asset_job,
    sensor,
)

from sync_pipelines.config.models import SyncConfig

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from sync_pipelines.history.ledger import utcnow
from sync_pipelines.history.queries import runs_since
from sync_pipelines.history.stats import SyncStats, compute_stats
from sync_pipelines.orchestration.ledger_sensors import sweep
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import RunStatus

ASSET_NAME = "sync_statistics"
JOB_NAME = "refresh_sync_statistics"
SENSOR_NAME = "sync_statistics_sensor"
GROUP = "sync_audit"
WINDOW_DAYS = 30
REFRESH_INTERVAL_S = 30
"""How often the sensor looks for ended sync runs."""
REFRESH_LOOKBACK = 100
_FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)

STATS_SCHEMA = TableSchema(
    columns=[
        TableColumn("sync", "string", description="Sync name."),
        TableColumn("runs", "int", description="Runs started in the window (dry runs left out)."),
        TableColumn("success", "float", description="Success rate: completed or partial runs / finished runs."),
        TableColumn("failed", "int", description="Failed records (left out of the target)."),
        TableColumn("p95_s", "float", description="95th percentile run duration in seconds."),
    ]
)
"""Five short columns: the asset page gives a table value about 540 px in a 1600 px window. The rest of
each sync's figures is its ``<sync>_summary`` text, which wraps."""

_OUTCOMES = (RunStatus.COMPLETED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.RUNNING)
_CHANGES = ("created", "updated", "deleted", "unchanged", "failed")


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def stats_record(stats: SyncStats) -> TableRecord:
    """One row of the statistics table."""
    return TableRecord(
        {
            "sync": stats.sync,
            "runs": stats.runs,
            "success": _rounded(stats.success_rate),
            "failed": stats.records["failed"],
            "p95_s": _rounded(stats.p95_s),
        }
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def stats_summary(stats: SyncStats) -> str:
    """One sync's figures in a line that wraps: runs by outcome, records by action, p50/p95."""
    if not stats.runs:
        return "no run in the window"
    ended = ", ".join(f"{stats.by_status[s]} {s.value}" for s in _OUTCOMES if stats.by_status.get(s))
    rate = "-" if stats.success_rate is None else f"{stats.success_rate:.0%}"
    records = ", ".join(f"{stats.records[key]:,} {key}" for key in _CHANGES)
    return (
        f"{stats.runs} run(s), {rate} successful ({ended}) · {stats.processed:,} records read: {records} · "
        f"duration p50 {_seconds(stats.p50_s)}, p95 {_seconds(stats.p95_s)}"
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
        metadata[f"{name}_summary"] = MetadataValue.text(stats_summary(s))
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


def _finished_sync_runs(context: SensorEvaluationContext, since: float) -> list[Any]:
    """Records of sync runs (not dry runs) that ended after ``since`` (a timestamp), oldest update first."""
    records = context.instance.get_run_records(
        RunsFilter(statuses=list(_FINISHED), updated_after=dt.datetime.fromtimestamp(since, dt.UTC)),
        limit=REFRESH_LOOKBACK,
    )
    return sorted(
        (
            r
            for r in records
            if Tag.SYNC_NAME.value in r.dagster_run.tags and r.dagster_run.tags.get(Tag.DRY_RUN.value) != "true"
        ),
        key=lambda r: r.update_timestamp.timestamp(),
    )


def build_statistics_sensor(job: "UnresolvedAssetJobDefinition") -> SensorDefinition:
    """``sync_statistics_sensor``: refreshes ``sync_statistics`` once after sync runs end (not dry runs).

    Its cursor is the update time of the last ended run it saw; the run key is that time, so one batch
    of ended runs starts one refresh. The first tick only sets the cursor (the past needs no refresh).
    """

    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=REFRESH_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Refreshes `sync_statistics` when sync runs have ended since its last look (dry runs left out).",
    )
    def _refresh(context: SensorEvaluationContext) -> RunRequest | SkipReason:
        if context.cursor is None:
            context.update_cursor(str(time.time()))
            return SkipReason("first look: runs that end from now on refresh the statistics")
        ended = _finished_sync_runs(context, float(context.cursor))
        if not ended:
            return SkipReason("no sync run ended since the last refresh")
        latest = ended[-1].update_timestamp.timestamp()
        context.update_cursor(str(latest))
        runs = ", ".join(r.dagster_run.run_id[:8] for r in ended[:10])
        return RunRequest(run_key=f"{SENSOR_NAME}:{latest}", tags={"sync/statistics_after": runs})

    return _refresh
