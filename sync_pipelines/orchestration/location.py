"""The whole code location: every sync's asset, job and schedule in one ``Definitions``."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import Definitions, in_process_executor

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.assets import build_sync_asset
from sync_pipelines.orchestration.io_manager import SyncIOManager
from sync_pipelines.orchestration.jobs import build_sync_job
from sync_pipelines.orchestration.schedules import build_schedule
from sync_pipelines.orchestration.sensors import build_failure_sensor, build_source_sensor


def build_definitions(configs: Sequence[SyncConfig]) -> Definitions:
    """Definitions for the given syncs.

    The default IO manager keeps step outputs (small manifests) in the instance's storage folder, so
    that a run re-executed from its failed step, in another process, finds the outputs of the steps
    before it. The in-process executor also applies to assets materialized from the asset graph.
    """
    jobs = {cfg.name: build_sync_job(cfg) for cfg in configs}
    return Definitions(
        assets=[build_sync_asset(cfg) for cfg in configs],
        jobs=list(jobs.values()),
        schedules=[build_schedule(cfg, jobs[cfg.name]) for cfg in configs if cfg.schedule is not None],
        sensors=[build_source_sensor(cfg, jobs[cfg.name]) for cfg in configs if cfg.realtime is not None]
        + ([build_failure_sensor(list(jobs.values()))] if jobs else []),
        resources={"io_manager": SyncIOManager()},
        executor=in_process_executor,
    )
