"""The ``no_failed_records`` asset check: a run that left records behind is visibly not a clean success.

A ``partial`` run (some records failed, within ``max_failure_ratio``) ends as a green Dagster
``SUCCESS``. This non-blocking check, with severity WARN, runs after the load step in every run of the
sync's job and fails while the latest materialization has failed records, so the asset shows a
yellow warning next to the green run. It reads the counts the load step recorded as metadata.

No postponed annotations here: Dagster reads the check's context annotation.
"""

from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
    asset_check,
)

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.assets import asset_key
from sync_pipelines.orchestration.names import FAILED_RECORDS_CHECK_NAME


def failed_records_check_key(cfg: SyncConfig) -> AssetCheckKey:
    """The key of a sync's ``no_failed_records`` check."""
    return AssetCheckKey(asset_key(cfg), FAILED_RECORDS_CHECK_NAME)


def run_load_metadata(instance: DagsterInstance, cfg: SyncConfig, run_id: str) -> Mapping[str, Any] | None:
    """The metadata of the load step's materialization of the sync's asset in run ``run_id`` (the one holding
    the counts, not the partitions a run covered); None when it made none (a dry run, a failed load step)."""
    key = asset_key(cfg)
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == key and "processed" in materialization.metadata:
            return materialization.metadata
    return None


def _load_metadata(instance: DagsterInstance, cfg: SyncConfig, run_id: str) -> Mapping[str, Any] | None:
    """The metadata of this run's materialization of the sync's asset, else of the latest one."""
    metadata = run_load_metadata(instance, cfg, run_id)
    if metadata is not None:
        return metadata
    key = asset_key(cfg)
    latest = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records
    materialization = latest[0].asset_materialization if latest else None
    return materialization.metadata if materialization is not None else None


def metadata_value(metadata: Mapping[str, Any], key: str) -> Any:
    """The plain value of a metadata entry (None when absent)."""
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def failed_records_result(cfg: SyncConfig, metadata: Mapping[str, Any] | None) -> AssetCheckResult:
    """The check's verdict on a load step's metadata (None: the asset was never materialized)."""
    if metadata is None:
        return AssetCheckResult(
            passed=True, severity=AssetCheckSeverity.WARN, description="Not materialized yet: no records to judge."
        )
    failed, processed = int(metadata_value(metadata, "failed") or 0), int(metadata_value(metadata, "processed") or 0)
    status = str(metadata_value(metadata, "status") or "")
    description = (
        f"{failed} of {processed} record(s) failed in the last run (status `{status}`); the failed records are "
        "in the run's `samples` table and in `_sync_records` (action `failed`, with the reason)."
        if failed
        else f"No failed record in the last run ({processed} processed)."
    )
    return AssetCheckResult(
        passed=failed == 0,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "failed": MetadataValue.int(failed),
            "processed": MetadataValue.int(processed),
            "failed_ratio": MetadataValue.float(round(failed / processed, 4) if processed else 0.0),
            "max_failure_ratio": MetadataValue.float(float(cfg.max_failure_ratio)),
            "status": MetadataValue.text(status),
        },
    )


def build_failed_records_check(cfg: SyncConfig) -> AssetChecksDefinition:
    """``no_failed_records`` on the sync's asset: WARN while its latest materialization has failed records."""

    @asset_check(
        asset=asset_key(cfg),
        name=FAILED_RECORDS_CHECK_NAME,
        blocking=False,
        description=f"Warns when the last run of sync `{cfg.name}` left failed records (a `partial` run: Dagster "
        f"shows the run green, the records are not in `{cfg.target.table}`).",
    )
    def _no_failed_records(context: AssetCheckExecutionContext) -> AssetCheckResult:
        return failed_records_result(cfg, _load_metadata(context.instance, cfg, context.run.run_id))

    return _no_failed_records


__all__ = [
    "FAILED_RECORDS_CHECK_NAME",
    "build_failed_records_check",
    "failed_records_check_key",
    "failed_records_result",
    "metadata_value",
    "run_load_metadata",
]
