"""The schedule of a sync, from the cron in its configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import DefaultScheduleStatus, ScheduleDefinition

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.orchestration.names import Tag, schedule_name

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def build_schedule(cfg: SyncConfig, job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    """``<name>_schedule``: runs ``job`` on the sync's cron in its timezone.

    Its default status is RUNNING when the schedule is ``enabled`` and STOPPED otherwise; the UI
    toggle still overrides it.

    Raises:
        ValueError: if the sync has no schedule.
    """
    if cfg.schedule is None:
        raise ValueError(f"sync {cfg.name!r} has no schedule")
    status = DefaultScheduleStatus.RUNNING if cfg.schedule.enabled else DefaultScheduleStatus.STOPPED
    return ScheduleDefinition(
        name=schedule_name(cfg.name),
        cron_schedule=cfg.schedule.dagster_cron,
        job=job,
        execution_timezone=cfg.timezone,
        default_status=status,
        tags={Tag.PLAIN_RUN.value: cfg.name},
        description=f"Runs sync `{cfg.name}` on `{cfg.schedule.cron}` ({cfg.timezone}).",
    )
