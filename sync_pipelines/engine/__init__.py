"""The sync engine: extract -> transform -> load, without Dagster.

Each stage is a plain function so that the Dagster ops stay thin and the engine can be tested
and benchmarked alone. ``run_sync`` chains the three for callers that do not need separate steps.
"""

from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult
from sync_pipelines.engine.runner import extract, load, run_sync, transform

__all__ = ["BatchFile", "Manifest", "RunOptions", "SyncResult", "extract", "load", "run_sync", "transform"]
