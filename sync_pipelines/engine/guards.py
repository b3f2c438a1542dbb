"""The rules that decide how a run ends, whatever kind of sync it is: the failure ratio and the delete guard.

Each rule raises its error from :mod:`sync_pipelines.errors`, whose message names the sync and the
numbers; :func:`settle_status` and :func:`refuse` record such an error on a run's result.
"""

from __future__ import annotations

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.manifest import SyncResult
from sync_pipelines.errors import DeleteGuardError, FailureRatioExceeded, SyncError
from sync_pipelines.types import Counts, RunStatus


def check_failures(config: SyncConfig, counts: Counts, *, unit: str = "records") -> RunStatus:
    """``completed`` when nothing failed, ``partial`` when the failures stay within ``max_failure_ratio``.

    Raises:
        FailureRatioExceeded: more of the ``unit`` processed failed than the sync allows.
    """
    if counts.failed == 0:
        return RunStatus.COMPLETED
    if counts.processed and counts.failed / counts.processed <= config.max_failure_ratio:
        return RunStatus.PARTIAL
    raise FailureRatioExceeded(
        config.name, failed=counts.failed, processed=counts.processed, max_ratio=config.max_failure_ratio, unit=unit
    )


def check_deletes(config: SyncConfig, deletes: int, total: int, *, side: str = "target") -> None:
    """Allow deleting ``deletes`` of the ``total`` rows of one side of the sync.

    Raises:
        DeleteGuardError: that is more than ``max_delete_ratio`` of the side (an empty or partial
            read of the other side looks like this).
    """
    if total and deletes / total > config.max_delete_ratio:
        raise DeleteGuardError(config.name, deletes=deletes, total=total, max_ratio=config.max_delete_ratio, side=side)


def refuse(result: SyncResult, error: SyncError) -> None:
    """End ``result`` as ``failed`` with the message of ``error`` (a broken rule)."""
    result.status = RunStatus.FAILED
    result.error = str(error)


def settle_status(config: SyncConfig, result: SyncResult, *, unit: str = "records") -> None:
    """Set the status of a run that met no other failure from its counts (see :func:`check_failures`)."""
    if result.status is not RunStatus.COMPLETED:
        return
    try:
        result.status = check_failures(config, result.counts, unit=unit)
    except FailureRatioExceeded as exc:
        refuse(result, exc)


__all__ = ["check_deletes", "check_failures", "refuse", "settle_status"]
