"""Sync configuration: typed models, the YAML loader, cron conversion and secret references."""

from sync_pipelines.config.cron import to_dagster_cron
from sync_pipelines.config.loader import ConfigFolder, InvalidFile, config_dir, load_configs, parse_config, read_configs
from sync_pipelines.config.models import FieldSpec, FilterCondition, Schedule, SqlSource, SqlTarget, SyncConfig

__all__ = [
    "ConfigFolder",
    "FieldSpec",
    "FilterCondition",
    "InvalidFile",
    "Schedule",
    "SqlSource",
    "SqlTarget",
    "SyncConfig",
    "config_dir",
    "load_configs",
    "parse_config",
    "read_configs",
    "to_dagster_cron",
]
