"""Dry runs leave the sync's asset checks as the last real run set them.

A dry run goes through the sync's dry-run job (``dry_run_<name>``, see
:func:`~sync_pipelines.orchestration.jobs.build_dry_run_job`), which plans no check. A dry run of the sync's
own job (its launchpad's or the *Materialize* dialog's ``dry_run: true``) does plan them: Dagster records a
planned evaluation of each check when the run starts, and since a dry run materializes nothing, the checks
never execute and end *Skipped*, which replaced the last real verdict (a partial run's warning vanished).
For that run, the load step states each check's last real verdict again (:func:`keep_real_verdicts`), as the
check's newest evaluation, so the badge stays what real runs decided.
"""

from __future__ import annotations

from dagster import AssetCheckEvaluation, AssetCheckKey, AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.names import CONFLICT_CHECK_NAME, FAILED_RECORDS_CHECK_NAME

_DECIDED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
_HISTORY = 50
"""Evaluations of a check looked at for the last real one."""


def kept_description(run_id: str, description: str | None) -> str:
    """The description of a verdict stated again after the dry run ``run_id``."""
    note = f"Kept after dry run {run_id[:8]} (a dry run judges nothing)."
    return f"{note} {description}" if description else note


def keep_real_verdicts(instance: DagsterInstance, cfg: SyncConfig, run_id: str) -> list[AssetCheckKey]:
    """State again the last real verdict of each check of the sync that the dry run ``run_id`` planned.

    A check whose newest execution is not this run's planned one (the dry-run job plans none) is left alone;
    one that no real run judged yet is left planned (it then shows *Skipped*, as before any real run).
    Returns the checks whose verdict was stated again.
    """
    asset = AssetKey(cfg.name)
    keys = [AssetCheckKey(asset, FAILED_RECORDS_CHECK_NAME), AssetCheckKey(asset, CONFLICT_CHECK_NAME)]
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(keys)
    kept: list[AssetCheckKey] = []
    for key in keys:
        record = latest.get(key)
        if record is None or record.run_id != run_id or record.status is not AssetCheckExecutionRecordStatus.PLANNED:
            continue
        for earlier in storage.get_asset_check_execution_history(key, limit=_HISTORY, status=_DECIDED):
            data = (
                earlier.event.dagster_event.event_specific_data
                if earlier.event and earlier.event.dagster_event
                else None
            )
            if earlier.run_id == run_id or not isinstance(data, AssetCheckEvaluation):
                continue
            instance.report_runless_asset_event(
                AssetCheckEvaluation(
                    asset_key=data.asset_key,
                    check_name=data.check_name,
                    passed=data.passed,
                    metadata=data.metadata,
                    target_materialization_data=data.target_materialization_data,
                    severity=data.severity,
                    description=kept_description(run_id, data.description),
                    blocking=data.blocking,
                    partition=data.partition,
                )
            )
            kept.append(key)
            break
    return kept


__all__ = ["keep_real_verdicts", "kept_description"]
