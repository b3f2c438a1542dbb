"""Stage entry points: extract, transform, load, and run_sync chaining them."""

from __future__ import annotations

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine.extract import extract
from sync_pipelines.engine.load import load
from sync_pipelines.engine.manifest import RunOptions, SyncResult
from sync_pipelines.engine.transform import transform


def run_sync(config: SyncConfig, options: RunOptions) -> SyncResult:
    """Run the three stages one after the other."""
    return load(config, transform(config, extract(config, options), options), options)


__all__ = ["extract", "load", "run_sync", "transform"]
