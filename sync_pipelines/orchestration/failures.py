"""Where failed sync runs are recorded: the hook the run-failure sensor calls for every failed run.

The hook keeps the run's ``sync/status`` tag truthful (a run that died before its load step could
say so still reads ``running``) and logs the failure; the run-failure sensor in
``ledger_sensors.py`` calls it, then closes the run's ledger row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance

from sync_pipelines.config.secrets import redact
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import RunStatus

logger = logging.getLogger("sync_pipelines.failures")

_FINAL = {RunStatus.FAILED.value, RunStatus.CANCELLED.value, RunStatus.PARTIAL.value, RunStatus.COMPLETED.value}


@dataclass(frozen=True)
class RunFailure:
    """One failed run of a sync, as the run-failure sensor saw it."""

    sync: str
    run_id: str
    job: str
    error: str


def record_run_failure(instance: DagsterInstance, failure: RunFailure) -> None:
    """Record one failed sync run: set ``sync/status=failed`` unless a step already gave a final status, and log it.

    This is the single place a run ledger hooks into to keep a history of failures.
    """
    run = instance.get_run_by_id(failure.run_id)
    if run is not None and run.tags.get(Tag.STATUS.value) not in _FINAL:
        instance.add_run_tags(failure.run_id, {Tag.STATUS.value: RunStatus.FAILED.value})
    logger.error("sync %s: run %s of %s failed: %s", failure.sync, failure.run_id, failure.job, redact(failure.error))


def run_error(instance: DagsterInstance, run_id: str) -> str | None:
    """Why a run failed, redacted: its first step failure (the sync's own message), else the run's failure."""
    events = instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE})
    messages = []
    for entry in events:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type is DagsterEventType.STEP_FAILURE:
            failure = event.step_failure_data
            user = failure.user_failure_data
            text = (user.description if user else None) or (failure.error.message if failure.error else None)
            if text:
                return redact(text.strip())
        elif event.message:
            messages.append(event.message)
    return redact(messages[0].strip()) if messages else None
