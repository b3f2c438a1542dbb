"""The whole code location: every sync's asset, job and schedule in one ``Definitions``."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import Definitions

from sync_pipelines.config.loader import InvalidFile
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.assets import build_sync_asset
from sync_pipelines.orchestration.checks import build_conflict_check, has_conflict_check
from sync_pipelines.orchestration.connection_checks import (
    build_check_connections_job,
    build_check_schedule,
    build_check_sensor,
    build_endpoint_check,
)
from sync_pipelines.orchestration.executors import sync_executor
from sync_pipelines.orchestration.host_sensors import build_host_file_sensor, watches_host_files
from sync_pipelines.orchestration.invalid_configs import invalid_file_definitions
from sync_pipelines.orchestration.io_manager import SyncIOManager
from sync_pipelines.orchestration.jobs import build_dry_run_job, build_sync_job
from sync_pipelines.orchestration.ledger_sensors import build_ledger_sensors
from sync_pipelines.orchestration.record_checks import build_failed_records_check
from sync_pipelines.orchestration.resolve import build_resolve_job
from sync_pipelines.orchestration.schedules import build_schedule
from sync_pipelines.orchestration.sensors import build_source_sensor
from sync_pipelines.orchestration.staging_cleanup import build_staging_cleanup_sensor
from sync_pipelines.orchestration.statistics import (
    build_statistics_asset,
    build_statistics_job,
    build_statistics_sensor,
)


def build_definitions(configs: Sequence[SyncConfig], invalid: Sequence[InvalidFile] = ()) -> Definitions:
    """Definitions for the given syncs, and an asset with a failing check for each file of ``invalid``.

    The default IO manager keeps step outputs (small manifests) in the instance's storage folder, so
    that a run re-executed from its failed step, in another process, finds the outputs of the steps
    before it, and that steps executed by Celery workers find them. The executor of the sync jobs
    (:func:`sync_executor`) also applies to the other jobs and to assets materialized from the asset graph.
    """
    jobs = {cfg.name: build_sync_job(cfg) for cfg in configs}
    dry_jobs = [build_dry_run_job(cfg) for cfg in configs]
    check_job = build_check_connections_job(configs)
    statistics_job = build_statistics_job()
    invalid_assets, invalid_checks = invalid_file_definitions(invalid)
    return Definitions(
        assets=[*(build_sync_asset(cfg) for cfg in configs), build_statistics_asset(configs), *invalid_assets],
        asset_checks=[
            *invalid_checks,
            *(build_conflict_check(cfg) for cfg in configs if has_conflict_check(cfg)),
            *(build_endpoint_check(cfg) for cfg in configs),
            *(build_failed_records_check(cfg) for cfg in configs),
        ],
        jobs=[
            *jobs.values(),
            *dry_jobs,
            check_job,
            statistics_job,
            build_resolve_job([cfg for cfg in configs if has_conflict_check(cfg)]),
        ],
        schedules=[
            *(build_schedule(cfg, jobs[cfg.name]) for cfg in configs if cfg.schedule is not None),
            build_check_schedule(check_job),
        ],
        sensors=[
            *build_ledger_sensors(configs, [*jobs.values(), *dry_jobs]),
            build_statistics_sensor(statistics_job),
            build_check_sensor(configs, check_job),
            build_staging_cleanup_sensor(),
            *(build_host_file_sensor(cfg, jobs[cfg.name]) for cfg in configs if watches_host_files(cfg)),
            *(build_source_sensor(cfg, jobs[cfg.name]) for cfg in configs if cfg.realtime is not None),
        ],
        resources={"io_manager": SyncIOManager()},
        executor=sync_executor(),
    )
