"""Stage entry points: extract, transform, load, and run_sync chaining them."""

from __future__ import annotations

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine.manifest import Manifest, RunOptions, SyncResult


def extract(config: SyncConfig, options: RunOptions) -> Manifest:
    """Stream the source in batches of ``config.batch_size`` into run-scoped Parquet files."""
    raise NotImplementedError


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Map each staged batch to the target schema; failing records are kept with their reason."""
    raise NotImplementedError


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Upsert each batch in its own transaction (rows, outcomes and watermark together)."""
    raise NotImplementedError


def run_sync(config: SyncConfig, options: RunOptions) -> SyncResult:
    """Run the three stages one after the other."""
    return load(config, transform(config, extract(config, options), options), options)
