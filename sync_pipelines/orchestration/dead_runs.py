"""Runs whose process died: closed as failed ("process died") on the run ledger and on the instance.

A run started by the CLI executes in the CLI's process, outside any run launcher, so Dagster's run
monitoring never looks at it. A run launched by the daemon or the UI executes in a run worker that
Dagster's default run launcher starts, and that launcher cannot tell whether the worker still lives
(run monitoring only times out runs stuck while starting or cancelling). Killed, either run would stay
``STARTED`` (and its ledger row ``running``) for ever.

So the process that executes a run's steps tags the run with its process id, host and process start
time: the CLI when it creates the run, the run worker at its first step (with the in-process
executor, where every step runs in the worker). When the next run of the sync starts, when ``status``
or the history commands read it, and every half minute on the daemon (``sync_dead_runs_sensor``), a
run whose process is gone from this host is closed. Its ledger row keeps the counts of the batches it
committed; the Dagster run gets them in an engine event, and fails with the same message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, MetadataValue, RunsFilter
from dagster._core.events import EngineEventData
from dagster._core.storage.dagster_run import DagsterRun

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.errors import SyncError
from sync_pipelines.history.ledger import open_ledger
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import COUNT_KEYS, RunStatus

PROCESS_DIED = "process died"
"""How the error of a run closed here starts."""
CLOSED_MARKER = "sync/closed_dead_run"
"""Metadata key of the engine event that records a closed run's counts (read back by ``report_for_run``)."""
_UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot); None when no live process has that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie or dead process: it runs nothing any more
        return None
    return fields[19]


def process_tags(run_id: str) -> dict[str, str]:
    """The tags naming this process, for the run ``run_id`` whose steps all execute in it."""
    pid = os.getpid()
    tags = {Tag.PID.value: str(pid), Tag.HOST.value: socket.gethostname(), Tag.PROCESS_RUN.value: run_id}
    start = _process_start(pid)
    if start is not None:
        tags[Tag.PROCESS_START.value] = start
    return tags


def claim_run(instance: DagsterInstance, run: DagsterRun) -> None:
    """Tag ``run`` as executed by this process (its steps run here), unless its tags say so already."""
    tags = process_tags(run.run_id)
    if any(run.tags.get(key) != value for key, value in tags.items()):
        instance.add_run_tags(run.run_id, tags)


def process_is_gone(tags: Mapping[str, str], run_id: str) -> bool:
    """True when the tags of run ``run_id`` name a process of this host that no longer runs; False when unknown.

    Tags written for another run (a retry copies its parent's) say nothing about this one.
    """
    pid, host = tags.get(Tag.PID.value), tags.get(Tag.HOST.value)
    if not pid or not pid.isdigit() or host != socket.gethostname():
        return False
    if tags.get(Tag.PROCESS_RUN.value, run_id) != run_id:
        return False
    start = _process_start(int(pid))
    if start is None:
        return True
    recorded = tags.get(Tag.PROCESS_START.value)
    return recorded is not None and recorded != start  # the pid now belongs to another process


@dataclass(frozen=True)
class ClosedRun:
    """A run closed because its process died, with the counts of what it had committed."""

    run_id: str
    sync: str
    error: str
    counts: dict[str, int]


def _close_ledger_row(cfg: SyncConfig | None, run_id: str, error: str) -> dict[str, int]:
    counts = dict.fromkeys(COUNT_KEYS, 0)
    if cfg is None:
        return counts
    with open_ledger(cfg) as ledger:
        ledger.close_run(run_id, RunStatus.FAILED, error=error)
        entry = ledger.get(run_id)
    if entry is not None:
        counts.update({key: int(value) for key, value in entry.counts.items() if key in counts})
    return counts


def record_closed_counts(
    instance: DagsterInstance, run: DagsterRun, sync: str, error: str, counts: Mapping[str, int]
) -> None:
    """Log on the Dagster run the counts of the batches a run committed before it ended without its load step."""
    metadata: dict[str, MetadataValue] = {key: MetadataValue.int(int(value)) for key, value in counts.items()}
    metadata[CLOSED_MARKER] = MetadataValue.bool(True)
    metadata["status"] = MetadataValue.text(RunStatus.FAILED.value)
    metadata["error"] = MetadataValue.text(error)
    committed = ", ".join(f"{key}={value}" for key, value in counts.items() if value) or "none"
    instance.report_engine_event(
        f"sync {sync}: {error}; committed batches: {committed}", run, EngineEventData(metadata=metadata)
    )


def _died(run: DagsterRun) -> str:
    return (
        f"{PROCESS_DIED}: the process running this run (pid {run.tags.get(Tag.PID.value)} on "
        f"{run.tags.get(Tag.HOST.value)}) ended before the run did"
    )


def dead_process_error(run: DagsterRun) -> str | None:
    """The error of a run whose process died (see :func:`process_is_gone`); None when it lives or is unknown."""
    return _died(run) if process_is_gone(run.tags, run.run_id) else None


def close_dead_run(instance: DagsterInstance, run: DagsterRun, cfg: SyncConfig | None) -> ClosedRun:
    """Close one run whose process died: its ledger row, then the Dagster run, both as failed.

    The ledger is closed first so that its counts reach the Dagster run; when the ledger cannot be
    reached the Dagster run is still closed, and the sweep closes the row once it can.
    """
    sync = run.tags.get(Tag.SYNC_NAME.value, run.job_name)
    error = _died(run)
    try:
        counts = _close_ledger_row(cfg, run.run_id, error)
    except SyncError as exc:
        counts = dict.fromkeys(COUNT_KEYS, 0)
        error += redact(f"; ledger not closed yet: {exc}")
    record_closed_counts(instance, run, sync, error, counts)
    instance.add_run_tags(run.run_id, {Tag.STATUS.value: RunStatus.FAILED.value})
    instance.report_run_failed(run, error)
    return ClosedRun(run.run_id, sync, error, counts)


def close_dead_runs(
    instance: DagsterInstance, configs: Sequence[SyncConfig], sync: str | None = None
) -> list[ClosedRun]:
    """Close every unfinished run (of ``sync``, or of any sync) whose process is gone from this host."""
    by_name = {cfg.name: cfg for cfg in configs}
    tags = {Tag.SYNC_NAME.value: sync} if sync else {}
    closed = []
    for run in instance.get_runs(RunsFilter(statuses=_UNFINISHED, tags=tags)):
        if Tag.SYNC_NAME.value in run.tags and process_is_gone(run.tags, run.run_id):
            closed.append(close_dead_run(instance, run, by_name.get(run.tags[Tag.SYNC_NAME.value])))
    return closed


__all__ = [
    "CLOSED_MARKER",
    "PROCESS_DIED",
    "ClosedRun",
    "claim_run",
    "close_dead_run",
    "close_dead_runs",
    "dead_process_error",
    "process_is_gone",
    "process_tags",
    "record_closed_counts",
]
