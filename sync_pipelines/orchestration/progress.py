"""A run's progress read back from the Dagster instance: the latest progress line of each stage.

The engine logs one :class:`~sync_pipelines.engine.progress.ProgressSnapshot` line per batch to
the run's event log; this module finds the run (by id, or the latest run of a sync) and reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dagster import DagsterInstance, RunRecord, RunsFilter

from sync_pipelines.engine.progress import ProgressSnapshot, parse_progress
from sync_pipelines.orchestration.names import Tag


@dataclass
class RunProgress:
    """Where a run stands: Dagster's run status, the ``sync/status`` tag, and per-stage progress."""

    run_id: str
    sync: str | None
    run_status: str
    sync_status: str | None
    started: float | None
    ended: float | None
    stages: dict[str, ProgressSnapshot] = field(default_factory=dict)
    """Latest snapshot per stage, in the order the stages ran."""

    @property
    def finished(self) -> bool:
        """Whether the run has ended (successfully or not)."""
        return self.ended is not None


def latest_run_id(instance: DagsterInstance, sync: str) -> str | None:
    """The id of the latest run of ``sync`` (by its ``sync/name`` tag), or None."""
    records = instance.get_run_records(RunsFilter(tags={Tag.SYNC_NAME.value: sync}), limit=1)
    return records[0].dagster_run.run_id if records else None


def run_progress(instance: DagsterInstance, run_id: str) -> RunProgress:
    """The progress of run ``run_id``, running or finished.

    Raises:
        KeyError: when the instance has no such run.
    """
    record = _record(instance, run_id)
    logs = instance.all_logs(run_id)
    if not record.dagster_run.is_finished:
        # The run went on while its logs were read. Its record read again after them is at least as recent
        # (a step tags the run before it logs progress, and the run starts before its steps); if the run ended
        # meanwhile, its logs are read again, complete.
        record = _record(instance, run_id)
        if record.dagster_run.is_finished:
            logs = instance.all_logs(run_id)
    run = record.dagster_run
    progress = RunProgress(
        run_id=run.run_id,
        sync=run.tags.get(Tag.SYNC_NAME.value),
        run_status=run.status.value,
        sync_status=run.tags.get(Tag.STATUS.value),
        started=record.start_time,
        ended=record.end_time if run.is_finished else None,
    )
    for entry in logs:
        if entry.dagster_event is not None:
            continue
        snapshot = parse_progress(entry.user_message)
        if snapshot is not None:
            progress.stages[snapshot.stage] = snapshot
            progress.sync = progress.sync or snapshot.sync
    return progress


def _record(instance: DagsterInstance, run_id: str) -> RunRecord:
    records = instance.get_run_records(RunsFilter(run_ids=[run_id]), limit=1)
    if not records:
        raise KeyError(run_id)
    return records[0]


__all__ = ["RunProgress", "latest_run_id", "run_progress"]
