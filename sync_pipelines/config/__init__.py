"""Sync configuration: typed models, the YAML loader, cron conversion and secret references."""

from sync_pipelines.config.cron import CronError, to_dagster_cron
from sync_pipelines.config.loader import config_dir, load_configs, parse_config
from sync_pipelines.config.models import FieldSpec, FilterCondition, Schedule, SqlSource, SqlTarget, SyncConfig

__all__ = [
    "CronError",
    "FieldSpec",
    "FilterCondition",
    "Schedule",
    "SqlSource",
    "SqlTarget",
    "SyncConfig",
    "config_dir",
    "load_configs",
    "parse_config",
    "to_dagster_cron",
]
