"""Running a sync job on a Dagster instance from outside Dagster's own processes (the CLI).

The run is created on the instance with the same origin as the ``sync_pipelines`` code location of
``workspace.yaml``, so it shows in the UI like any other run of the job and can be re-executed
there (from its failed step, reusing the outputs stored by the filesystem IO manager).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    JobDefinition,
    RunsFilter,
    build_reconstructable_job,
)

# Internal Dagster APIs (pinned to 1.13): a public `execute_job` cannot record the run's code
# location, which the UI needs to re-execute a run.
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id

from sync_pipelines.config.loader import read_configs
from sync_pipelines.config.secrets import redact
from sync_pipelines.errors import UnknownPartitionError
from sync_pipelines.orchestration.dead_runs import CLOSED_MARKER, process_tags
from sync_pipelines.orchestration.jobs import job_run_config
from sync_pipelines.orchestration.location import build_definitions
from sync_pipelines.orchestration.metadata import summary_from_metadata
from sync_pipelines.orchestration.names import (
    CODE_LOCATION_NAME,
    DEFINITIONS_MODULE,
    REPOSITORY_NAME,
    Tag,
    dry_run_job_name,
    job_name,
)
from sync_pipelines.types import COUNT_KEYS, RunStatus

_FINISHED_FAILED = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class RunReport:
    """What a run of a sync did, read back from the instance after the run.

    ``duration_s`` is the run's wall-clock time, from its start to its end.
    """

    run_id: str
    sync: str
    status: RunStatus
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    watermark: Any = None
    duration_s: float = 0.0
    dry_run: bool = False
    full_sync: bool = False
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """The values of the load step's metadata (e.g. the ``hosts`` table of a host-metrics run)."""

    def to_json(self) -> dict[str, Any]:
        """``{run_id, sync, status, counts, watermark}``: the ``run --json`` output."""
        return {
            "run_id": self.run_id,
            "sync": self.sync,
            "status": self.status.value,
            "counts": {key: int(self.counts.get(key, 0)) for key in COUNT_KEYS},
            "watermark": self.watermark,
        }


def sync_job(config_directory: str, sync: str, dry_run: bool = False) -> JobDefinition:
    """The resolved job of one sync (its dry-run job with ``dry_run``), from the configurations in
    ``config_directory``."""
    # Other files of the folder may be invalid: they never stop a valid sync from running.
    name = dry_run_job_name(sync) if dry_run else job_name(sync)
    return build_definitions(read_configs(config_directory).configs).resolve_job_def(name)


def _remote_origin(sync: str, working_directory: str, dry_run: bool = False) -> RemoteJobOrigin:
    """The origin the UI gives to the job when it loads ``workspace.yaml``'s code location."""
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=working_directory
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name=CODE_LOCATION_NAME)
    name = dry_run_job_name(sync) if dry_run else job_name(sync)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), name)


def execute_sync(
    sync: str,
    *,
    instance: DagsterInstance,
    config_directory: Path | str,
    full_sync: bool = False,
    dry_run: bool = False,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    partition: str | None = None,
) -> RunReport:
    """Run the job of ``sync`` (its dry-run job with ``dry_run``) in this process on ``instance`` and report its
    outcome.

    The run carries the job's tags, ``sync/trigger=cli`` and ``tags``. Step failures do not raise:
    they are part of the report. ``run_config`` adds launchpad options of the sync's job (e.g. the
    ``host_ip_list`` of a host-metrics sync). ``partition`` runs one partition of a partitioned sync.

    Raises:
        UnknownPartitionError: ``partition`` is given for a sync without partitions, or is not one of its keys.
    """
    directory = str(Path(config_directory).resolve())
    recon = build_reconstructable_job(
        __name__,
        sync_job.__name__,
        reconstructable_args=(directory, sync, dry_run),  # type: ignore[arg-type]  # Dagster types it tuple[object]
    )
    job = recon.get_definition()
    partition_tags: dict[str, str]
    if partition is not None:
        if job.partitions_def is None:
            raise UnknownPartitionError(f"sync {sync} has no partitions")
        if not job.partitions_def.has_partition_key(partition):
            raise UnknownPartitionError(f"sync {sync} has no partition {partition!r}")
        partition_tags = {PARTITION_NAME_TAG: partition}
    else:
        partition_tags = {} if dry_run else {Tag.PLAIN_RUN.value: sync}  # a dry run moves no watermark
    dry_run_tag = {Tag.DRY_RUN.value: "true"} if dry_run else {}
    run_id = make_new_run_id()
    run = instance.create_run_for_job(
        job_def=job,
        run_id=run_id,
        run_config={
            **job_run_config(sync, partitioned=job.partitions_def is not None, full_sync=full_sync, dry_run=dry_run),
            **(run_config or {}),
        },
        tags={
            **job.run_tags,
            Tag.TRIGGER.value: "cli",
            **dry_run_tag,
            **(tags or {}),
            **partition_tags,
            **process_tags(run_id),
        },
        remote_job_origin=_remote_origin(sync, os.getcwd(), dry_run),
        job_code_origin=recon.get_python_origin(),
    )
    execute_run(recon, run, instance, raise_on_error=False)
    return report_for_run(instance, run.run_id, sync)


def report_for_run(instance: DagsterInstance, run_id: str, sync: str) -> RunReport:
    """Read a finished run's outcome from its events: the load step's metadata, else its failure."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise KeyError(f"run {run_id} not found")
    events = instance.all_logs(
        run_id,
        of_type={
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_OBSERVATION,
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.ENGINE_EVENT,
        },
    )
    summary: dict[str, Any] | None = None
    load_metadata: Mapping[str, Any] = {}
    error: str | None = None
    for entry in events:
        event = entry.dagster_event
        if event is None:
            continue
        metadata: Mapping[str, Any] = {}
        if event.event_type is DagsterEventType.STEP_FAILURE:
            failure = event.step_failure_data
            user = failure.user_failure_data
            error = (user.description if user else None) or (failure.error.message if failure.error else None)
            metadata = user.metadata if user else {}
        elif event.event_type is DagsterEventType.ENGINE_EVENT:
            # Only the event of a run closed because its process died carries a summary.
            data = event.engine_event_data
            metadata = data.metadata if data is not None and CLOSED_MARKER in data.metadata else {}
        elif event.event_type is DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.step_materialization_data.materialization.metadata
        else:
            metadata = event.asset_observation_data.asset_observation.metadata
        if "status" in metadata:
            summary = summary_from_metadata(metadata)
            load_metadata = metadata
    status = _status(run.status, run.tags.get(Tag.STATUS.value), summary)
    report = RunReport(run_id=run_id, sync=sync, status=status)
    report.metadata = {key: getattr(value, "value", value) for key, value in load_metadata.items()}
    if summary is not None:
        report.counts = summary["counts"]
        report.watermark = summary["watermark"]
        report.dry_run = summary["dry_run"]
        report.full_sync = summary["full_sync"]
        error = summary["error"] or error
    report.duration_s = _run_duration(instance, run_id) or (summary["duration_s"] if summary else 0.0)
    report.error = redact(error.strip()) if error else None
    return report


def _status(run_status: DagsterRunStatus, tag: str | None, summary: Mapping[str, Any] | None) -> RunStatus:
    if run_status in _FINISHED_FAILED:
        return RunStatus.CANCELLED if run_status is DagsterRunStatus.CANCELED else RunStatus.FAILED
    if summary is not None and summary.get("status"):
        return RunStatus(summary["status"])
    if tag:
        return RunStatus(tag)
    return RunStatus.COMPLETED if run_status is DagsterRunStatus.SUCCESS else RunStatus.RUNNING


def _run_duration(instance: DagsterInstance, run_id: str) -> float:
    records = instance.get_run_records(RunsFilter(run_ids=[run_id]))
    if records and records[0].start_time and records[0].end_time:
        return float(records[0].end_time - records[0].start_time)
    return 0.0


@dataclass
class LastRun:
    """The latest run of a sync on the instance."""

    run_id: str
    status: str
    started: float | None


LAST_RUN_LOOKBACK = 50
"""Runs of a sync looked at, newest first, for its latest run that is not a dry run."""


def last_runs(instance: DagsterInstance, syncs: list[str]) -> dict[str, LastRun]:
    """Latest run of each sync (by its ``sync/name`` tag), with the ``sync/status`` it ended with.

    Dry runs (tag ``sync/dry_run``) are passed over: they say nothing about the target's state.
    """
    found: dict[str, LastRun] = {}
    for sync in syncs:
        records = instance.get_run_records(RunsFilter(tags={Tag.SYNC_NAME.value: sync}), limit=LAST_RUN_LOOKBACK)
        record = next((r for r in records if r.dagster_run.tags.get(Tag.DRY_RUN.value) != "true"), None)
        if record is None:
            continue
        run = record.dagster_run
        status = run.tags.get(Tag.STATUS.value)
        if run.is_finished and status in (None, RunStatus.RUNNING.value):
            # The run ended before a step could record the sync's status (crash, cancel, bad config).
            status = RunStatus.FAILED.value if run.status is DagsterRunStatus.FAILURE else run.status.value.lower()
        found[sync] = LastRun(run.run_id, status or run.status.value.lower(), record.start_time)
    return found
