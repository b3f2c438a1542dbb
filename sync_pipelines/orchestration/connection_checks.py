"""Connection checks in Dagster: the asset check ``endpoints_reachable`` of every sync, and the job
``check_connections`` that evaluates it for the syncs named in its launchpad.

Both run :func:`sync_pipelines.connectors.check.check_sync`. The job records its results as
evaluations of the same asset checks, so a scheduled run of it turns a broken credential into a red
check on the sync's asset before the sync itself runs. The checks are non-blocking: a failed
connection check never stops a materialization (the sync's own run fails on its own).
"""

import time
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    TableColumn,
    TableRecord,
    TableSchema,
    asset_check,
    job,
    op,
    sensor,
)
from pydantic import Field

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.check import EndpointCheck
from sync_pipelines.errors import UnknownSyncError
from sync_pipelines.kinds import check_sync

CHECK_NAME = "endpoints_reachable"
"""Name of the connection asset check on every sync asset."""
CHECK_JOB_NAME = "check_connections"
"""Name of the job that checks the connections of several syncs."""
CHECK_OP_NAME = "check_sync_connections"
"""Name of the single op of ``check_connections``."""
CHECK_SCHEDULE_NAME = "check_connections_schedule"
"""Hourly schedule of ``check_connections`` over every sync, stopped until turned on in the UI."""
CHECK_SCHEDULE_CRON = "0 * * * *"
CHECK_SENSOR_NAME = "endpoints_reachable_sensor"
"""Sensor evaluating the connection checks that were never evaluated, or not for a day."""
CHECK_SENSOR_INTERVAL_S = 60
CHECK_MAX_AGE_S = 24 * 3600
_UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]

ENDPOINTS_SCHEMA = TableSchema(
    columns=[
        TableColumn("sync", "string", description="The sync checked."),
        TableColumn("role", "string", description="source or target."),
        TableColumn("endpoint", "string", description="The endpoint's URL, without password."),
        TableColumn("status", "string", description="OK or FAILED."),
        TableColumn("latency_ms", "float", description="Time the whole check of the endpoint took."),
        TableColumn("detail", "string", description="What was verified, or why the check failed."),
    ]
)


def endpoints_table(results: Sequence[EndpointCheck]) -> MetadataValue:
    """A table of endpoint results: sync, role, endpoint, status, latency, detail."""
    return MetadataValue.table(
        records=[
            TableRecord(
                {
                    "sync": r.sync,
                    "role": r.role.value,
                    "endpoint": r.endpoint,
                    "status": r.status.value,
                    "latency_ms": round(r.latency_ms, 1),
                    "detail": r.error if r.error else "; ".join(r.passed),
                }
            )
            for r in results
        ],
        schema=ENDPOINTS_SCHEMA,
    )


def _check_outcome(results: Sequence[EndpointCheck]) -> tuple[bool, str, dict[str, Any]]:
    """Passed, description and metadata of one sync's connection check."""
    failed = [r for r in results if not r.ok]
    description = (
        "; ".join(f"{r.role.value}: {r.error}" for r in failed)
        if failed
        else "Source and target reachable, mapped columns present, test write rolled back."
    )
    metadata: dict[str, Any] = {"endpoints": endpoints_table(results)}
    for r in results:
        metadata[f"{r.role.value}_latency_ms"] = MetadataValue.float(round(r.latency_ms, 1))
    return not failed, description, metadata


def build_endpoint_check(cfg: SyncConfig) -> AssetChecksDefinition:
    """The non-blocking asset check ``endpoints_reachable`` of one sync's asset."""

    @asset_check(
        asset=AssetKey(cfg.name),
        name=CHECK_NAME,
        blocking=False,
        description=f"Connection test of sync `{cfg.name}`: source and target answer, table and mapped columns "
        "exist with castable types, the target key is unique, a test write is rolled back.",
    )
    def _endpoints_reachable() -> AssetCheckResult:
        passed, description, metadata = _check_outcome(check_sync(cfg))
        return AssetCheckResult(
            passed=passed, severity=AssetCheckSeverity.ERROR, description=description, metadata=metadata
        )

    return _endpoints_reachable


class CheckConnectionsConfig(Config):
    """Launchpad of ``check_connections``."""

    syncs: list[str] = Field(
        default_factory=list, description="Names of the syncs to check; leave empty to check every sync."
    )


def build_check_connections_job(configs: Sequence[SyncConfig]) -> JobDefinition:
    """The job ``check_connections``: checks the named syncs and records their ``endpoints_reachable`` checks."""
    by_name = {cfg.name: cfg for cfg in configs}

    @op(
        name=CHECK_OP_NAME,
        description="Check the source and target of each named sync (every sync when none is named) and "
        f"record the result as the `{CHECK_NAME}` check of its asset. Fails when any endpoint fails.",
        out=Out(dict, description="Per sync: whether both endpoints passed."),
    )
    def _check_connections(
        context: OpExecutionContext, config: CheckConnectionsConfig
    ) -> Iterator[AssetCheckEvaluation | Output[dict[str, bool]]]:
        unknown = [name for name in config.syncs if name not in by_name]
        if unknown:
            raise Failure(description=str(UnknownSyncError(unknown, by_name)))
        selected = [by_name[name] for name in config.syncs] if config.syncs else list(by_name.values())
        outcome: dict[str, bool] = {}
        everything: list[EndpointCheck] = []
        for cfg in selected:
            results = check_sync(cfg)
            everything.extend(results)
            for r in results:
                log = context.log.info if r.ok else context.log.error
                log(r.summary().replace("\n", " "))
            passed, description, metadata = _check_outcome(results)
            outcome[cfg.name] = passed
            yield AssetCheckEvaluation(
                asset_key=AssetKey(cfg.name),
                check_name=CHECK_NAME,
                passed=passed,
                severity=AssetCheckSeverity.ERROR,
                description=description,
                metadata=metadata,
                blocking=False,
            )
        yield Output(
            outcome,
            metadata={
                "endpoints": endpoints_table(everything),
                "failed_syncs": MetadataValue.int(sum(1 for ok in outcome.values() if not ok)),
            },
        )
        failed = sorted(name for name, ok in outcome.items() if not ok)
        if failed:
            raise Failure(description=f"connection check failed for: {', '.join(failed)}")

    @job(
        name=CHECK_JOB_NAME,
        description="Connection test of the syncs named in the launchpad (all when empty): source and target "
        "reachable, tables and mapped columns present, target key unique, test writes rolled back. "
        f"Each result is recorded as the `{CHECK_NAME}` check of the sync's asset.",
    )
    def _job() -> None:
        _check_connections()

    return _job


def stale_checks(instance: DagsterInstance, configs: Sequence[SyncConfig], max_age_s: float) -> list[str]:
    """The syncs whose ``endpoints_reachable`` was never evaluated, or last evaluated over ``max_age_s`` ago."""
    keys = {cfg.name: AssetCheckKey(AssetKey(cfg.name), CHECK_NAME) for cfg in configs}
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys.values()))
    now = time.time()
    return [name for name, key in keys.items() if key not in latest or now - latest[key].create_timestamp > max_age_s]


def build_check_sensor(configs: Sequence[SyncConfig], check_job: JobDefinition) -> SensorDefinition:
    """``endpoints_reachable_sensor``: runs ``check_connections`` for the syncs whose check is missing or stale.

    On by default, so that every sync's ``endpoints_reachable`` has an evaluation soon after the UI's
    daemon starts (a new sync file included), and again once a day; the hourly schedule stays optional.
    """
    configs = list(configs)

    @sensor(
        name=CHECK_SENSOR_NAME,
        job=check_job,
        minimum_interval_seconds=CHECK_SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Checks the connections of every sync whose `{CHECK_NAME}` check was never evaluated or is "
        f"older than {CHECK_MAX_AGE_S // 3600} h.",
    )
    def _stale(context: SensorEvaluationContext) -> RunRequest | SkipReason:
        if context.instance.get_runs_count(RunsFilter(job_name=CHECK_JOB_NAME, statuses=_UNFINISHED)):
            return SkipReason("a check_connections run is in progress")
        stale = stale_checks(context.instance, configs, CHECK_MAX_AGE_S)
        if not stale:
            return SkipReason(f"every {CHECK_NAME} check is less than {CHECK_MAX_AGE_S // 3600} h old")
        return RunRequest(run_config={"ops": {CHECK_OP_NAME: {"config": {"syncs": stale}}}})

    return _stale


def build_check_schedule(check_job: JobDefinition) -> ScheduleDefinition:
    """``check_connections_schedule``: the connection test of every sync, hourly; stopped by default.

    Turned on in the UI, it makes a broken credential a red ``endpoints_reachable`` check within
    the hour, before the next run of the sync fails on it.
    """
    return ScheduleDefinition(
        name=CHECK_SCHEDULE_NAME,
        cron_schedule=CHECK_SCHEDULE_CRON,
        job=check_job,
        run_config={"ops": {CHECK_OP_NAME: {"config": {"syncs": []}}}},
        default_status=DefaultScheduleStatus.STOPPED,
        description="Hourly connection test of every sync (turn it on to see broken endpoints as red "
        f"`{CHECK_NAME}` checks before the syncs run).",
    )


__all__ = [
    "CHECK_JOB_NAME",
    "CHECK_NAME",
    "CHECK_OP_NAME",
    "CHECK_SCHEDULE_NAME",
    "CHECK_SENSOR_NAME",
    "CheckConnectionsConfig",
    "build_check_connections_job",
    "build_check_schedule",
    "build_check_sensor",
    "build_endpoint_check",
    "endpoints_table",
    "stale_checks",
]
