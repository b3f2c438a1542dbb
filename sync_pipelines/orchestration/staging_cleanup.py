"""The daemon's side of staging retention: an hourly sensor that clears expired run folders."""

from __future__ import annotations

from dagster import DagsterInstance, DefaultSensorStatus, SensorDefinition, SensorEvaluationContext, SkipReason, sensor

from sync_pipelines.engine.retention import clear_expired

STAGING_SENSOR_NAME = "sync_staging_cleanup_sensor"
STAGING_SENSOR_INTERVAL_S = 3600


def run_is_active(instance: DagsterInstance, run_id: str) -> bool:
    """Whether a staging folder's run may still read it: the run exists and has not finished."""
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def build_staging_cleanup_sensor() -> SensorDefinition:
    """Every hour, remove the staged batches of runs not written for the retention period."""

    @sensor(
        name=STAGING_SENSOR_NAME,
        description="Every hour, removes staged batches kept for re-execution once they are older than "
        "$SYNC_PIPELINES_STAGING_RETENTION_HOURS (default 72); never those of a run still in progress.",
        minimum_interval_seconds=STAGING_SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def _clean(context: SensorEvaluationContext) -> SkipReason:
        cleared = clear_expired(active=lambda run_id: run_is_active(context.instance, run_id))
        freed = sum(run.size_bytes for run in cleared)
        for run in cleared:
            context.log.info(f"removed staged batches of run {run.run_id} ({run.size_bytes} bytes)")
        return SkipReason(f"removed {len(cleared)} expired run folder(s), {freed} bytes")

    return _clean


__all__ = ["STAGING_SENSOR_NAME", "build_staging_cleanup_sensor", "run_is_active"]
