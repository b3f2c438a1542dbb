"""The job of a sync: materializes its asset (in-process unless Celery is chosen), with a flat run config."""

from typing import TYPE_CHECKING, Any

from dagster import AssetSelection, ConfigMapping, define_asset_job

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.assets import asset_description, asset_key
from sync_pipelines.orchestration.checks import conflict_check_key, has_conflict_check
from sync_pipelines.orchestration.executors import sync_executor
from sync_pipelines.orchestration.kinds import run_config_mapping
from sync_pipelines.orchestration.names import Tag, job_name
from sync_pipelines.orchestration.record_checks import failed_records_check_key

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def _selection(cfg: SyncConfig) -> AssetSelection:
    """The sync's asset with its failed-records check, plus its conflict check where it has one; the
    connection check is left to the ``check_connections`` job."""
    selection = AssetSelection.assets(asset_key(cfg)).without_checks() | AssetSelection.checks(
        failed_records_check_key(cfg)
    )
    if has_conflict_check(cfg):
        selection = selection | AssetSelection.checks(conflict_check_key(cfg))
    return selection


def job_run_config(sync: str, *, partitioned: bool, full_sync: bool, dry_run: bool) -> dict[str, Any]:
    """The run config of a sync job with these flags.

    Dagster refuses a config mapping on a partitioned job, so a partitioned sync's job takes the
    flags at ``ops.<name>.config`` instead of at the top level.
    """
    flags = {"full_sync": full_sync, "dry_run": dry_run}
    return {"ops": {sync: {"config": flags}}} if partitioned else flags


def _job_config(cfg: SyncConfig) -> ConfigMapping | None:
    """The launchpad form of the sync's kind, flat, fed to the sync's graph; none for a partitioned sync
    (Dagster refuses a config mapping on a partitioned job)."""
    if cfg.partitions is not None:
        return None
    return run_config_mapping(cfg, lambda values: {"ops": {cfg.name: {"config": values}}})


def build_sync_job(cfg: SyncConfig) -> "UnresolvedAssetJobDefinition":
    """The job ``sync_<name>``: materializes the sync's asset with the executor of :func:`sync_executor`.

    By default the in-process executor: it starts a run in well under a second, and the three steps
    run one after the other anyway. ``SYNC_PIPELINES_EXECUTOR=celery`` sends each step to Celery
    workers instead (see :mod:`sync_pipelines.orchestration.executors`). Runs carry the tag
    ``sync/name``; every run of a sync without partitions moves its watermark, so the job also tags them
    all ``sync/plain_run`` (one in progress per sync in Dagster's queue). A partitioned sync's plain runs
    get that tag from the schedule, the sensor or the CLI; its partition runs go side by side. After the
    load step, the ``no_open_conflicts`` check is evaluated; the connection check is left to the
    ``check_connections`` job. A partitioned sync's job is partitioned like its
    asset and takes its flags at ``ops.<name>.config`` (see :func:`job_run_config`).
    """
    return define_asset_job(
        name=job_name(cfg.name),
        selection=_selection(cfg),
        config=_job_config(cfg),
        description=f"Run sync `{cfg.name}`: {asset_description(cfg)}",
        tags={Tag.SYNC_NAME.value: cfg.name} | ({Tag.PLAIN_RUN.value: cfg.name} if cfg.partitions is None else {}),
        executor_def=sync_executor(),
    )
