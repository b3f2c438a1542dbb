"""Sensors of the code location: a source-change sensor per near-realtime sync, and one run-failure sensor.

A sensor that cannot do its job raises: Dagster then shows the tick as failed with the error, and
the error is logged. Nothing is turned into a quiet skip.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.errors import SourcePollError, SyncError
from sync_pipelines.kinds import range_reader
from sync_pipelines.orchestration.names import Tag, source_sensor_name

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

logger = logging.getLogger("sync_pipelines.sensors")

HIGH_WATER_MARK_TAG = "sync/high_water_mark"
"""Run tag: the source's ``MAX(cursor)`` that made the source-change sensor start the run."""


def high_water_mark(cfg: SyncConfig) -> Any:
    """``MAX(cursor)`` of the sync's source rows (filters applied), JSON-encoded; None for an empty source."""
    reader = range_reader(cfg)
    try:
        return reader.high_water_mark()
    finally:
        reader.close()


def build_source_sensor(cfg: SyncConfig, job: UnresolvedAssetJobDefinition) -> SensorDefinition:
    """``<name>_source_sensor``: starts the sync's job when ``MAX(cursor)`` moved since the last run it started.

    The cursor of the sensor (kept by Dagster across daemon restarts) is the last mark that started a
    run, and the run key is the mark itself, so one mark never starts two runs.

    Raises:
        ValueError: if the sync has no ``realtime`` section.
    """
    if cfg.realtime is None:
        raise ValueError(f"sync {cfg.name!r} has no realtime sensor")
    status = DefaultSensorStatus.RUNNING if cfg.realtime.enabled else DefaultSensorStatus.STOPPED

    @sensor(
        name=source_sensor_name(cfg.name),
        job=job,
        minimum_interval_seconds=cfg.realtime.interval_seconds,
        default_status=status,
        description=f"Every {cfg.realtime.interval_seconds} s, reads `MAX({cfg.cursor})` of the source of sync "
        f"`{cfg.name}` and starts an incremental run when it moved.",
    )
    def _source_changed(context: SensorEvaluationContext) -> RunRequest | SkipReason:
        try:
            mark = high_water_mark(cfg)
        except SyncError as exc:
            message = redact(f"sync {cfg.name}: cannot poll the source: {exc}")
            context.log.error(message)  # the tick's log in the UI
            logger.error(message)  # the daemon's log
            raise SourcePollError(message) from None
        if mark is None:
            return SkipReason(f"the source of sync {cfg.name} has no rows yet")
        encoded = json.dumps(mark, sort_keys=True)
        if encoded == context.cursor:
            return SkipReason(f"MAX({cfg.cursor}) is still {encoded}")
        context.update_cursor(encoded)
        return RunRequest(
            run_key=f"{cfg.name}:{encoded}",
            tags={Tag.SYNC_NAME.value: cfg.name, Tag.PLAIN_RUN.value: cfg.name, HIGH_WATER_MARK_TAG: encoded[:200]},
        )

    return _source_changed
