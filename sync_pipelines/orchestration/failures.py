"""Where failed sync runs are recorded: the hook the run-failure sensor calls for every failed run.

The hook keeps the run's ``sync/status`` tag truthful (a run that died before its load step could
say so still reads ``running``) and logs the failure; the run-failure sensor in
``ledger_sensors.py`` calls it, then closes the run's ledger row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dagster import DagsterInstance

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
