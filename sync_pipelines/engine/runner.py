"""Stage entry points: extract, transform, load, and run_sync chaining them.

Host-metrics syncs (Elasticsearch hosts into the CMDB) have stages of their own in
:mod:`sync_pipelines.engine.host_metrics`, and parallel full reads (``parallel:``) run per key-range
chunk through :mod:`sync_pipelines.engine.chunks`; each entry point picks the right ones.
"""

from __future__ import annotations

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine import chunks, host_metrics
from sync_pipelines.engine.extract import extract as extract_rows
from sync_pipelines.engine.load import load as load_rows
from sync_pipelines.engine.manifest import Manifest, RunOptions, SyncResult
from sync_pipelines.engine.transform import transform as transform_rows


def extract(config: SyncConfig, options: RunOptions) -> Manifest:
    """Read the source into staged batches."""
    if host_metrics.is_host_metrics(config):
        return host_metrics.extract(config, options)
    workers = chunks.workers_for(config, options)
    if workers > 1:
        return chunks.extract(config, options, workers)
    return extract_rows(config, options)


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Map the staged batches to the target's columns."""
    if host_metrics.is_host_metrics(config):
        return host_metrics.transform(config, manifest, options)
    if chunks.is_chunked(manifest):
        return chunks.transform(config, manifest, options)
    return transform_rows(config, manifest, options)


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Write the staged batches into the target (a parallel read's chunks by worker processes)."""
    if host_metrics.is_host_metrics(config):
        return host_metrics.load(config, manifest, options)
    return load_rows(config, manifest, options)


def run_sync(config: SyncConfig, options: RunOptions) -> SyncResult:
    """Run the three stages one after the other."""
    return load(config, transform(config, extract(config, options), options), options)


__all__ = ["extract", "load", "run_sync", "transform"]
