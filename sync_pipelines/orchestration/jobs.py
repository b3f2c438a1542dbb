"""The job of a sync: materializes its asset (in-process unless Celery is chosen), with a flat run config."""

from typing import TYPE_CHECKING, Any

from dagster import AssetSelection, ConfigMapping, define_asset_job

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.assets import asset_description, asset_key
from sync_pipelines.orchestration.checks import conflict_check_key, has_conflict_check
from sync_pipelines.orchestration.executors import sync_executor
from sync_pipelines.orchestration.kinds import run_config_mapping
from sync_pipelines.orchestration.names import Tag, dry_run_job_name, job_name
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


def _dry_run_config(cfg: SyncConfig) -> ConfigMapping | None:
    """The launchpad form of the sync's kind with ``dry_run`` forced on (a partitioned sync's job takes no mapping:
    its ops read the job's ``sync/dry_run`` tag instead)."""
    if cfg.partitions is not None:
        return None
    return run_config_mapping(cfg, lambda values: {"ops": {cfg.name: {"config": {**values, "dry_run": True}}}})


def build_dry_run_job(cfg: SyncConfig) -> "UnresolvedAssetJobDefinition":
    """The job ``dry_run_<name>``: plans a run of the sync and writes nothing to its target.

    Every dry run goes through it (the CLI's ``--dry-run``, the history view's *Dry run*, or this job's
    launchpad), so that Dagster tells dry runs apart at launch and never lets them overwrite what real runs
    decided:

    - its runs carry ``sync/dry_run=true`` from the moment they are queued (a job tag), and the job's name;
    - it selects the sync's asset without its checks: a dry run plans no check, so the checks and the asset's
      badge keep the verdict of the last real run (a check planned in a run that materializes nothing ends
      *Skipped*, which replaced that verdict);
    - its load step records an ``AssetObservation`` with the plan's counts, never a materialization.

    Its launchpad form is the sync's, with ``dry_run`` always on.
    """
    return define_asset_job(
        name=dry_run_job_name(cfg.name),
        selection=AssetSelection.assets(asset_key(cfg)).without_checks(),
        config=_dry_run_config(cfg),
        description=f"Dry run of sync `{cfg.name}`: plans every record and writes nothing; the plan is listed on the "
        "run's page in the history view. The sync's checks are left as the last real run set them.",
        tags={Tag.SYNC_NAME.value: cfg.name, Tag.DRY_RUN.value: "true"},
        executor_def=sync_executor(),
    )


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
