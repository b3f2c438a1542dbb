"""Stage entry points: extract, transform, load, and run_sync chaining them.

Each pipeline a kind of sync can name (:class:`~sync_pipelines.kinds.base.Pipeline`) has its three stages
declared once, as :class:`Stages`: tables (whose parallel full reads, ``parallel:``, run per key-range
chunk through :mod:`sync_pipelines.engine.chunks`) and hosts (:mod:`sync_pipelines.engine.host_metrics`).
Both load through the one load driver (:mod:`sync_pipelines.engine.driver`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine import chunks, host_metrics
from sync_pipelines.engine.extract import extract as extract_rows
from sync_pipelines.engine.load import load as load_rows
from sync_pipelines.engine.manifest import Manifest, RunOptions, SyncResult
from sync_pipelines.engine.transform import transform as transform_rows
from sync_pipelines.kinds import Pipeline, kind_of


@dataclass(frozen=True)
class Stages:
    """The engine's three stages for one kind of sync."""

    extract: Callable[[SyncConfig, RunOptions], Manifest]
    transform: Callable[[SyncConfig, Manifest, RunOptions], Manifest]
    load: Callable[[SyncConfig, Manifest, RunOptions], SyncResult]


def _extract_table(config: SyncConfig, options: RunOptions) -> Manifest:
    workers = chunks.workers_for(config, options)
    if workers > 1:
        return chunks.extract(config, options, workers)
    return extract_rows(config, options)


def _transform_table(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    if chunks.is_chunked(manifest):
        return chunks.transform(config, manifest, options)
    return transform_rows(config, manifest, options)


TABLE_STAGES = Stages(_extract_table, _transform_table, load_rows)
"""A source of rows into a SQL table."""
HOST_STAGES = Stages(host_metrics.extract, host_metrics.transform, host_metrics.load)
"""Host metrics into the CMDB."""
PIPELINES: dict[Pipeline, Stages] = {Pipeline.TABLE: TABLE_STAGES, Pipeline.HOSTS: HOST_STAGES}
"""The stages of each pipeline."""


def stages(config: SyncConfig) -> Stages:
    """The stages of the pipeline of ``config``'s kind."""
    return PIPELINES[kind_of(config).pipeline]


def extract(config: SyncConfig, options: RunOptions) -> Manifest:
    """Read the source into staged batches."""
    return stages(config).extract(config, options)


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Map the staged batches to the target's columns."""
    return stages(config).transform(config, manifest, options)


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Write the staged batches into the target (a parallel read's chunks by worker processes)."""
    return stages(config).load(config, manifest, options)


def run_sync(config: SyncConfig, options: RunOptions) -> SyncResult:
    """Run the three stages one after the other."""
    return load(config, transform(config, extract(config, options), options), options)


__all__ = ["HOST_STAGES", "PIPELINES", "TABLE_STAGES", "Stages", "extract", "load", "run_sync", "stages", "transform"]
