"""The job of a sync: materializes its asset in-process, with a flat run config.

No postponed annotations here: Dagster reads the `Config` class of a config mapping from its annotation.
"""

from typing import TYPE_CHECKING, Any

from dagster import AssetSelection, ConfigMapping, config_mapping, define_asset_job, in_process_executor

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine.host_metrics import is_host_metrics
from sync_pipelines.orchestration.assets import asset_description, asset_key
from sync_pipelines.orchestration.host_ops import host_job_config
from sync_pipelines.orchestration.names import Tag, job_name
from sync_pipelines.orchestration.ops import SyncRunConfig

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def run_config_mapping(cfg: SyncConfig) -> ConfigMapping:
    """The launchpad form of a sync job: just ``full_sync`` and ``dry_run``, fed to the sync's graph."""

    @config_mapping
    def _run_config(config: SyncRunConfig) -> dict[str, Any]:
        return {"ops": {cfg.name: {"config": {"full_sync": config.full_sync, "dry_run": config.dry_run}}}}

    return _run_config


def build_sync_job(cfg: SyncConfig) -> "UnresolvedAssetJobDefinition":
    """The job ``sync_<name>``: materializes the sync's asset with the in-process executor.

    The in-process executor starts a run in well under a second; the three steps run one after the
    other anyway. Runs carry the tag ``sync/name``.
    """
    return define_asset_job(
        name=job_name(cfg.name),
        selection=AssetSelection.assets(asset_key(cfg)).without_checks(),
        config=host_job_config(cfg) if is_host_metrics(cfg) else run_config_mapping(cfg),
        description=f"Run sync `{cfg.name}`: {asset_description(cfg)}",
        tags={Tag.SYNC_NAME.value: cfg.name},
        executor_def=in_process_executor,
    )
