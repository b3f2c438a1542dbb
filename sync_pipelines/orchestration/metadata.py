"""Metadata shown in Dagster for a sync: on its asset (what it syncs) and on its steps (what a run did)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.config.urls import display_url
from sync_pipelines.engine.manifest import Manifest, SyncResult
from sync_pipelines.history.ledger import Trigger
from sync_pipelines.kinds import kind_of
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import COUNT_KEYS, RecordOutcome

_KIND_OF_DIALECT = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mariadb", "sqlite": "sqlite"}

SAMPLES_SCHEMA = TableSchema(
    columns=[
        TableColumn("key", "string", description="Key of the record in the target."),
        TableColumn(
            "action",
            "string",
            description="created, updated, unchanged, deleted, failed, skipped, conflict, target_modified, "
            "source_won, target_won; bidirectional: source_created, source_updated, source_deleted.",
        ),
        TableColumn("changes", "string", description="Changed fields: `field: before → after`."),
        TableColumn("error", "string", description="Why the record failed or was skipped."),
    ]
)


def _qualified(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def asset_kinds(config: SyncConfig) -> set[str]:
    """Kinds (UI icons) of a sync asset: the source and target database systems."""
    source = kind_of(config).summary(config).system
    dialect = config.target.url.split(":", 1)[0].split("+", 1)[0].lower() or "sql"
    return {_KIND_OF_DIALECT.get(system, system) for system in (source, dialect)}


def asset_metadata(config: SyncConfig) -> dict[str, Any]:
    """Static metadata of a sync asset: target table, URLs without passwords, mode, key, schedule."""
    target = config.target
    metadata: dict[str, Any] = {
        # The key Dagster's catalog reads a table's name from.
        "dagster/table_name": MetadataValue.text(_qualified(target.db_schema, target.table)),
        "target_table": MetadataValue.text(_qualified(target.db_schema, target.table)),
        "target_url": MetadataValue.text(display_url(target.url)),
        "target_key": MetadataValue.text(", ".join(target.key)),
        "mode": MetadataValue.text(config.mode.value),
        "batch_size": MetadataValue.int(config.batch_size),
        "direction": MetadataValue.text(config.direction.value),
        "on_conflict": MetadataValue.text(config.on_conflict.value),
    }
    metadata.update(_source_metadata(config))
    if config.cursor:
        metadata["cursor"] = MetadataValue.text(config.cursor)
    if config.schedule:
        state = "enabled" if config.schedule.enabled else "disabled"
        metadata["schedule"] = MetadataValue.text(f"{config.schedule.cron} ({config.timezone}, {state})")
    return metadata


def _source_metadata(config: SyncConfig) -> dict[str, Any]:
    summary = kind_of(config).summary(config)
    return {"source_url": MetadataValue.text(summary.url), "source": MetadataValue.text(summary.what)}


def stage_metadata(manifest: Manifest) -> dict[str, Any]:
    """Output metadata of the extract and transform steps."""
    return {
        "rows": MetadataValue.int(manifest.rows),
        "batches": MetadataValue.int(len(manifest.batches)),
        "failed": MetadataValue.int(manifest.failed),
        "full_sync": MetadataValue.bool(manifest.full_sync),
    }


def _format_key(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_show(value)}" for name, value in key.items())


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NON_BREAKING_HYPHEN = "\u2011"


def unbroken(text: str) -> str:
    """``text`` with the hyphens of its dates made non-breaking, for the cells of Dagster's metadata tables.

    Those cells wrap where the browser may break a line, and Chromium breaks after a hyphen: a narrow
    column showed ``2024-03-`` on one line and ``13T23:07:00`` on the next. Spaces stay break points.
    The tables are previews; the history view and the exports hold the values as written.
    """
    return _DATE.sub(lambda found: found.group().replace("-", NON_BREAKING_HYPHEN), text)


def _format_changes(changes: Mapping[str, list[Any]]) -> str:
    """``field: before → after; ...``: the arrow is one character, so a line never breaks inside it."""
    parts = []
    for name, pair in changes.items():
        before, after = [*pair, None, None][:2]
        parts.append(f"{name}: {unbroken(_show(before))} → {unbroken(_show(after))}")
    return "; ".join(parts)


def samples_table(samples: list[RecordOutcome]) -> MetadataValue:
    """A table of sample record outcomes: key, action, changed fields (before → after), error."""
    records = [
        TableRecord(
            {
                "key": redact(_format_key(sample.key)),
                "action": sample.action.value,
                "changes": redact(_format_changes(sample.changes)),
                "error": redact(sample.error) if sample.error else None,
            }
        )
        for sample in samples
    ]
    return MetadataValue.table(records=records, schema=SAMPLES_SCHEMA)


def _json_or_null(value: Any) -> MetadataValue:
    if value is None:
        return MetadataValue.null()
    return MetadataValue.json(_jsonable(value))


def result_metadata(
    result: SyncResult, *, trigger: str, run_seconds: float | None = None, user: str | None = None
) -> dict[str, Any]:
    """Output metadata of the load step: status, counts, duration, watermarks, flags and samples.

    ``duration_s`` is the time since the run started (all three steps) when ``run_seconds`` is
    given, else the engine's load time; ``load_duration_s`` is always the engine's load time.
    """
    counts = result.counts.as_dict()
    metadata: dict[str, Any] = {"status": MetadataValue.text(result.status.value)}
    metadata.update({key: MetadataValue.int(counts[key]) for key in COUNT_KEYS})
    metadata.update(
        {
            "duration_s": MetadataValue.float(round(float(run_seconds or result.duration_s), 3)),
            "load_duration_s": MetadataValue.float(round(float(result.duration_s), 3)),
            "watermark_before": _json_or_null(result.watermark_before),
            "watermark_after": _json_or_null(result.watermark_after),
            "dry_run": MetadataValue.bool(result.dry_run),
            "full_sync": MetadataValue.bool(result.full_sync),
            "trigger": MetadataValue.text(trigger),
            "user": MetadataValue.text(user or "-"),
            "samples": samples_table(result.samples),
        }
    )
    if result.error:
        metadata["error"] = MetadataValue.text(redact(result.error))
    return metadata


def summary_from_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Read back what :func:`result_metadata` recorded (values of the metadata entries)."""

    def value(key: str) -> Any:
        entry = metadata.get(key)
        return getattr(entry, "value", entry)

    return {
        "status": value("status"),
        "counts": {key: int(value(key) or 0) for key in COUNT_KEYS},
        "watermark": value("watermark_after"),
        "watermark_before": value("watermark_before"),
        "duration_s": float(value("duration_s") or 0.0),
        "dry_run": bool(value("dry_run")),
        "full_sync": bool(value("full_sync")),
        "error": value("error"),
    }


_CLI_HINT = "cli"
"""The ``sync/trigger`` value the CLI sets: a manual run."""


def trigger_of(tags: Mapping[str, str], parent_run_id: str | None = None) -> Trigger:
    """What started a run, from Dagster's run tags.

    A re-execution (``dagster/parent_run_id``) is a ``retry`` even when its parent came from a
    schedule, whose tags it copies. Then ``dagster/schedule_name`` means ``schedule``,
    ``dagster/sensor_name`` ``sensor`` and ``dagster/backfill`` ``backfill``. Otherwise the
    ``sync/trigger`` tag decides: ``api`` (set by a GraphQL launch, see docs/operations.md) or ``cli``
    (the CLI: ``manual``); a run without any of these was launched from the UI: ``manual``.
    """
    if parent_run_id or "dagster/parent_run_id" in tags:
        return Trigger.RETRY
    if "dagster/schedule_name" in tags:
        return Trigger.SCHEDULE
    if "dagster/sensor_name" in tags:
        return Trigger.SENSOR
    if "dagster/backfill" in tags:
        return Trigger.BACKFILL
    hint = tags.get(Tag.TRIGGER.value, "").strip().lower()
    if hint == Trigger.API.value:
        return Trigger.API
    return Trigger.MANUAL


def user_of(tags: Mapping[str, str]) -> str | None:
    """Who launched a run: the ``sync/user`` tag, else Dagster's own ``dagster/user`` tag when set."""
    return (tags.get(Tag.USER.value) or tags.get("dagster/user") or "").strip() or None
