"""The graph-backed asset of a sync: its target table, materialized by extract -> transform -> load."""

from typing import Any

from dagster import AssetKey, AssetsDefinition, graph_asset

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.history.links import sync_url
from sync_pipelines.kinds import kind_of
from sync_pipelines.orchestration.kinds import run_config_mapping
from sync_pipelines.orchestration.metadata import asset_kinds, asset_metadata
from sync_pipelines.orchestration.names import GROUP_NAME, Stage, Tag, op_name
from sync_pipelines.orchestration.ops import build_sync_ops
from sync_pipelines.orchestration.partitions import backfill_policy, partitions_def


def asset_key(cfg: SyncConfig) -> AssetKey:
    """The asset key of a sync: its name."""
    return AssetKey(cfg.name)


def asset_description(cfg: SyncConfig) -> str:
    """The config's description, or one naming the source and target tables."""
    if cfg.description.strip():
        return cfg.description.strip()
    source = kind_of(cfg).summary(cfg).label
    return f"Sync of {source} into {cfg.target.table} ({cfg.mode.value})."


def described_with_history(cfg: SyncConfig) -> str:
    """The asset's description: :func:`asset_description` and a link to the sync's page in the history view."""
    return f"{asset_description(cfg)}\n\n[Run history and records of {cfg.name}]({sync_url(cfg.name)})"


def build_sync_asset(cfg: SyncConfig) -> AssetsDefinition:
    """The asset ``<name>`` (group ``syncs``) computed by the ops ``<name>_extract/_transform/_load``."""
    extract_op, transform_op, load_op = build_sync_ops(cfg)

    @graph_asset(
        name=cfg.name,
        group_name=GROUP_NAME,
        description=described_with_history(cfg),
        metadata=asset_metadata(cfg),
        kinds=asset_kinds(cfg),
        tags={Tag.SYNC_NAME.value: cfg.name, "sync/mode": cfg.mode.value},
        # The same options for the three ops, so they can never disagree.
        config=run_config_mapping(cfg, lambda values: {op_name(cfg.name, s): {"config": values} for s in Stage}),
        partitions_def=partitions_def(cfg),
        backfill_policy=backfill_policy(cfg),
    )
    def _sync_asset() -> Any:
        return load_op(transform_op(extract_op()))

    return _sync_asset
