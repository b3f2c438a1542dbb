"""Keep the run ledger true for runs that end outside the ops: run status sensors and a sweep.

A step that fails or is interrupted closes its ledger row itself. A run can still end without a
step doing so: it is cancelled before a step starts, its process is killed, or it fails to start.
The failure and cancel sensors close the row when Dagster reports the run's end; the sweep closes
any row still ``running`` whose Dagster run has finished (or is gone), so no row stays ``running``
for ever. The sweep runs from its own sensor, the CLI's history commands and ``sync_statistics``.
The dead-runs sensor closes runs whose process was killed (see :mod:`.dead_runs`), which Dagster
itself would leave ``STARTED``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from sync_pipelines.config.models import SyncConfig

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from sync_pipelines.config.secrets import redact
from sync_pipelines.errors import SweepError, SyncError
from sync_pipelines.history.ledger import ledger_groups, open_ledger, utcnow
from sync_pipelines.orchestration.dead_runs import close_dead_runs, dead_process_error, record_closed_counts
from sync_pipelines.orchestration.failures import RunFailure, record_run_failure
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import RunStatus

FAILURE_SENSOR_NAME = "sync_run_failure_sensor"
CANCEL_SENSOR_NAME = "sync_ledger_cancel_sensor"
SWEEP_SENSOR_NAME = "sync_ledger_sweep_sensor"
SWEEP_INTERVAL_S = 300
DEAD_RUNS_SENSOR_NAME = "sync_dead_runs_sensor"
DEAD_RUNS_INTERVAL_S = 30
"""How often the daemon looks for runs whose process died: cheap (the instance's unfinished runs and ``/proc``)."""
MISSING_RUN_GRACE = dt.timedelta(hours=1)
"""A ``running`` row whose run is not on the instance is closed once it is this old."""


def close_from_run_end(
    configs: Sequence[SyncConfig], run_id: str, sync: str | None, status: RunStatus, error: str
) -> dict[str, int] | None:
    """Close the ledger row of a run that ended; its committed counts, or None when it was closed already."""
    cfg = next((c for c in configs if c.name == sync), None)
    if cfg is None:
        return None
    with open_ledger(cfg) as ledger:
        if not ledger.close_run(run_id, status, error=redact(error)):
            return None
        entry = ledger.get(run_id)
    return dict(entry.counts) if entry is not None else {}


def _end_status(instance: DagsterInstance, run_id: str) -> tuple[RunStatus, str] | None:
    """The ledger status of a finished run with the reason it is closed by the sweep; None if running."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return RunStatus.FAILED, "the run is not on the Dagster instance; it never reported its end"
    if not run.is_finished:
        return None
    if run.status is DagsterRunStatus.CANCELED:
        return RunStatus.CANCELLED, "the run was cancelled before its load step recorded the outcome"
    if run.status is DagsterRunStatus.SUCCESS:
        tag = run.tags.get(Tag.STATUS.value)
        status = RunStatus(tag) if tag and tag != RunStatus.RUNNING.value else RunStatus.COMPLETED
        return status, "the run ended without writing its outcome to the ledger"
    return RunStatus.FAILED, f"the run ended ({run.status.value}) before its load step recorded the outcome"


def sweep(instance: DagsterInstance, configs: Sequence[SyncConfig]) -> list[str]:
    """Close every ledger row still ``running`` whose Dagster run has finished or whose process died.

    Returns the run ids closed.

    Raises:
        SweepError: some ledger databases could not be read; every other one was swept.
    """
    closed = [run.run_id for run in close_dead_runs(instance, configs)]
    failures: list[str] = []
    for group in ledger_groups(list(configs)):
        try:
            closed += _sweep_group(instance, group)
        except SyncError as exc:
            failures.append(str(exc))
    if failures:
        raise SweepError(failures, closed)
    return closed


def _sweep_group(instance: DagsterInstance, group: Sequence[SyncConfig]) -> list[str]:
    closed: list[str] = []
    now = utcnow()
    names = {cfg.name for cfg in group}
    with open_ledger(group[0]) as ledger:
        for entry in ledger.running():
            if entry.sync not in names:
                continue
            end = _end_status(instance, entry.run_id)
            if end is None:
                continue
            missing = instance.get_run_by_id(entry.run_id) is None
            if missing and now - entry.started_at < MISSING_RUN_GRACE:
                continue
            if ledger.close_run(entry.run_id, end[0], error=end[1]):
                closed.append(entry.run_id)
    return closed


def build_ledger_sensors(
    configs: Sequence[SyncConfig], jobs: Sequence[JobDefinition | UnresolvedAssetJobDefinition]
) -> list[SensorDefinition]:
    """The failure and cancel sensors of the sync jobs, and the periodic sweep of the ledgers (none without syncs)."""
    configs = list(configs)
    if not configs:
        return []

    @run_failure_sensor(
        name=FAILURE_SENSOR_NAME,
        description="Records every failed sync run: its `sync/status` tag, the error log, and its `_sync_runs` "
        "row closed as `failed` with the run's error when no step could (the run failed to start or its process died).",
        monitored_jobs=list(jobs),
        default_status=DefaultSensorStatus.RUNNING,
    )
    def _failed(context: RunFailureSensorContext) -> None:
        run = context.dagster_run
        message = context.failure_event.message or "the run failed"
        sync = run.tags.get(Tag.SYNC_NAME.value, run.job_name)
        context.log.error(redact(f"sync {sync}: run {run.run_id} failed: {message}"))
        record_run_failure(context.instance, RunFailure(sync=sync, run_id=run.run_id, job=run.job_name, error=message))
        # A run worker killed mid-step: its code server fails the run without saying why; the run's tags do.
        error = dead_process_error(run) or message
        counts = close_from_run_end(configs, run.run_id, run.tags.get(Tag.SYNC_NAME.value), RunStatus.FAILED, error)
        if counts is not None:
            # No step closed it (the worker died, or the run never started): the run gets the counts too.
            record_closed_counts(context.instance, run, sync, redact(error), counts)
            context.log.info(f"closed the ledger row of run {run.run_id} as failed")

    @run_status_sensor(
        name=CANCEL_SENSOR_NAME,
        run_status=DagsterRunStatus.CANCELED,
        description="Closes the `_sync_runs` row of a cancelled sync run as `cancelled`.",
        monitored_jobs=list(jobs),
        default_status=DefaultSensorStatus.RUNNING,
    )
    def _cancelled(context: RunStatusSensorContext) -> None:
        run = context.dagster_run
        sync = run.tags.get(Tag.SYNC_NAME.value)
        if close_from_run_end(configs, run.run_id, sync, RunStatus.CANCELLED, "the run was cancelled") is not None:
            context.log.info(f"closed the ledger row of run {run.run_id} as cancelled")

    @sensor(
        name=SWEEP_SENSOR_NAME,
        description="Every few minutes, closes `_sync_runs` rows still `running` whose Dagster run has ended.",
        minimum_interval_seconds=SWEEP_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def _sweep(context: SensorEvaluationContext) -> SkipReason:
        try:
            closed = sweep(context.instance, configs)
        except SyncError as exc:
            # An unreachable ledger is an error of the tick, shown in the UI, never a quiet skip.
            context.log.error(redact(f"ledger sweep incomplete: {exc}"))
            raise
        return SkipReason(f"closed {len(closed)} ledger row(s): {', '.join(closed)}" if closed else "nothing to close")

    @sensor(
        name=DEAD_RUNS_SENSOR_NAME,
        description="Every half minute, closes sync runs whose process died on this machine (a killed CLI run or "
        'run worker) as failed, "process died", with the counts of the batches they committed, on the Dagster run '
        "and its `_sync_runs` row.",
        minimum_interval_seconds=DEAD_RUNS_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def _dead_runs(context: SensorEvaluationContext) -> SkipReason:
        closed = close_dead_runs(context.instance, configs)
        for run in closed:
            context.log.warning(redact(f"closed run {run.run_id} of sync {run.sync!r}: {run.error}"))
        return SkipReason(
            f"closed {len(closed)} run(s): {', '.join(r.run_id for r in closed)}" if closed else "none died"
        )

    return [_failed, _cancelled, _sweep, _dead_runs]
