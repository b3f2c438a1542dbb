"""How many runs of each sync Dagster's queue starts at once: the limit of the sync's pool ``sync/<name>``.

Every op of a sync declares the pool; with run granularity (``dagster.local.yaml``) a queued run starts
only while its pool has a free slot. The instance's ``default_limit: 1`` keeps one run per sync. A
partitioned sync whose partition runs may load side by side (see :mod:`sync_pipelines.engine.overlap`)
gets ``partitions.max_parallel`` slots instead, so a backfill's runs start together, one on each free
run worker or Celery worker; a SQLite target keeps one (it takes one writer at a time, so the queue holds
the others instead of their loads waiting). Runs that move the watermark carry the ``sync/plain_run``
tag, limited to one per sync, and their loads take the sync's lease alone.

Pool limits other than the default live in the instance's storage, not in ``dagster.yaml``:
:func:`apply_pool_limits` writes them (``sync-pipelines ui`` and ``sync-pipelines pools`` call it).
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import DagsterInstance

from sync_pipelines.config.models import SqlTarget, SyncConfig
from sync_pipelines.connectors.dialects import backend
from sync_pipelines.engine.overlap import partition_slots
from sync_pipelines.orchestration.names import pool_name


def pool_limit(cfg: SyncConfig) -> int:
    """The runs of ``cfg`` the queue starts at once: its partition slots where its target takes several
    writers, else one."""
    slots = partition_slots(cfg)
    if slots <= 1 or not isinstance(cfg.target, SqlTarget):
        return 1
    if not backend(cfg.target.url.split(":", 1)[0].split("+", 1)[0]).concurrent_writers:
        return 1
    return slots


def pool_limits(configs: Iterable[SyncConfig]) -> dict[str, int]:
    """``{pool name: limit}`` of every sync whose limit differs from the instance's default of one."""
    return {pool_name(cfg.name): limit for cfg in configs if (limit := pool_limit(cfg)) != 1}


def apply_pool_limits(instance: DagsterInstance, configs: Iterable[SyncConfig]) -> dict[str, int]:
    """Set the pool limit of every sync in ``configs`` on ``instance``; returns the limits other than one.

    A sync back at one slot (``max_parallel`` lowered, partitions removed) has its pool set to one again
    when its pool exists.
    """
    configs = list(configs)
    wanted = pool_limits(configs)
    known = set(instance.event_log_storage.get_concurrency_keys())
    for cfg in configs:
        name = pool_name(cfg.name)
        if name in wanted or name in known:
            instance.event_log_storage.set_concurrency_slots(name, wanted.get(name, 1))
    return wanted


__all__ = ["apply_pool_limits", "pool_limit", "pool_limits"]
