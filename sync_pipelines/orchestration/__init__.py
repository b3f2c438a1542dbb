"""Dagster objects built from sync configurations. The only package (with definitions.py) importing dagster.

One factory per kind of object, each named from the config: :func:`build_sync_asset`,
:func:`build_sync_job`, :func:`build_schedule`; :func:`build_definitions` composes them.
"""

from sync_pipelines.orchestration.assets import asset_key, build_sync_asset
from sync_pipelines.orchestration.instance import ensure_dagster_home, get_instance
from sync_pipelines.orchestration.jobs import build_sync_job
from sync_pipelines.orchestration.kinds import SyncRunConfig
from sync_pipelines.orchestration.location import build_definitions
from sync_pipelines.orchestration.names import Stage, Tag, job_name, op_name, pool_name, schedule_name, step_key
from sync_pipelines.orchestration.ops import build_sync_ops
from sync_pipelines.orchestration.runs import LastRun, RunReport, execute_sync, last_runs, report_for_run
from sync_pipelines.orchestration.schedules import build_schedule

__all__ = [
    "LastRun",
    "RunReport",
    "Stage",
    "SyncRunConfig",
    "Tag",
    "asset_key",
    "build_definitions",
    "build_schedule",
    "build_sync_asset",
    "build_sync_job",
    "build_sync_ops",
    "ensure_dagster_home",
    "execute_sync",
    "get_instance",
    "job_name",
    "last_runs",
    "op_name",
    "pool_name",
    "report_for_run",
    "schedule_name",
    "step_key",
]
