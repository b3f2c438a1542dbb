"""Who started a run and what it did, written to the run ledger (``_sync_runs``) from the ops.

Bookkeeping never fails a sync: when the ledger cannot be written the step logs a warning and goes
on; the run status sensors and the sweep (:mod:`sync_pipelines.orchestration.ledger_sensors`)
write or close the row later.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dagster import MetadataValue, OpExecutionContext

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.config.urls import display_url
from sync_pipelines.engine.manifest import SyncResult
from sync_pipelines.errors import SyncError
from sync_pipelines.history.ledger import LEDGER_TABLE, RunEntry, Trigger, open_ledger, utcnow
from sync_pipelines.history.links import run_url
from sync_pipelines.orchestration.dead_runs import close_dead_runs
from sync_pipelines.orchestration.metadata import trigger_of, user_of
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import RunStatus, SyncMode

BACKFILL_TAG = "dagster/backfill"
"""The tag Dagster puts on every run of a backfill, with the backfill's id."""


def run_mode(context: OpExecutionContext, cfg: SyncConfig, full_sync: bool) -> str:
    """``full``, ``incremental`` or ``partition <key or range>`` for a partitioned run."""
    if context.has_partition_key or context.has_partition_key_range:
        window = context.partition_key_range
        return f"partition {window.start}" if window.start == window.end else f"partition {window.start}..{window.end}"
    return SyncMode.FULL.value if full_sync or cfg.mode is SyncMode.FULL else SyncMode.INCREMENTAL.value


def _flags(context: OpExecutionContext) -> dict[str, Any]:
    return context.op_config if isinstance(context.op_config, dict) else {}


def attribution(context: OpExecutionContext) -> tuple[Trigger, str | None]:
    """The trigger and the user of the current run.

    The user is the run's tags' (see :func:`user_of`), else the ``user`` given in the launchpad.
    """
    launchpad_user = str(_flags(context).get("user") or "").strip() or None
    return trigger_of(context.run.tags, context.run.parent_run_id), user_of(context.run.tags) or launchpad_user


def _started_at(context: OpExecutionContext) -> dt.datetime:
    record = context.instance.get_run_record_by_id(context.run_id)
    if record and record.start_time:
        return dt.datetime.fromtimestamp(record.start_time, dt.UTC).replace(tzinfo=None)
    return utcnow()


def _entry(context: OpExecutionContext, cfg: SyncConfig) -> RunEntry:
    trigger, user = attribution(context)
    flags = _flags(context)
    full_sync = bool(flags.get("full_sync", False))
    return RunEntry(
        run_id=context.run_id,
        sync=cfg.name,
        trigger=trigger,
        user=user,
        parent_run_id=context.run.parent_run_id,
        backfill_id=context.run.tags.get(BACKFILL_TAG),
        mode=run_mode(context, cfg, full_sync),
        dry_run=bool(flags.get("dry_run", False)) or context.run.tags.get(Tag.DRY_RUN.value) == "true",
        started_at=_started_at(context),
    )


def _warn(context: OpExecutionContext, cfg: SyncConfig, exc: SyncError) -> None:
    context.log.warning(redact(f"sync {cfg.name!r}: run ledger not written: {exc}"))


def record_start(context: OpExecutionContext, cfg: SyncConfig) -> None:
    """Tag the run with its trigger, user and ``sync/dry_run``, and open its ``running`` ledger row (once per run)."""
    entry = _entry(context, cfg)
    tags = {Tag.TRIGGERED_BY.value: entry.trigger.value}
    if entry.user and context.run.tags.get(Tag.USER.value) != entry.user:
        tags[Tag.USER.value] = entry.user
    if entry.dry_run:
        tags[Tag.DRY_RUN.value] = "true"
    if any(context.run.tags.get(k) != v for k, v in tags.items()):
        context.instance.add_run_tags(context.run_id, tags)
    for closed in close_dead_runs(context.instance, [cfg], cfg.name):
        context.log.warning(redact(f"closed run {closed.run_id} of sync {cfg.name!r}: {closed.error}"))
    try:
        with open_ledger(cfg) as ledger:
            ledger.open_run(entry)
    except SyncError as exc:
        _warn(context, cfg, exc)


def record_result(context: OpExecutionContext, cfg: SyncConfig, result: SyncResult, run_seconds: float | None) -> None:
    """Write the outcome of the load step: status, counts, duration, error."""
    entry = _entry(context, cfg)
    entry.status = result.status
    entry.records_run_id = result.run_id
    entry.dry_run = result.dry_run
    entry.counts = result.counts.as_dict()
    entry.finished_at = utcnow()
    entry.duration_s = run_seconds if run_seconds is not None else result.duration_s
    entry.error = redact(result.error) if result.error else None
    try:
        with open_ledger(cfg) as ledger:
            ledger.finish_run(entry)
    except SyncError as exc:
        _warn(context, cfg, exc)


def record_end(
    context: OpExecutionContext, cfg: SyncConfig, status: RunStatus, error: str, details: str | None = None
) -> None:
    """Close the run's ledger row when a step fails or is interrupted (counts from committed records)."""
    try:
        with open_ledger(cfg) as ledger:
            if ledger.get(context.run_id) is None:
                ledger.open_run(_entry(context, cfg))
            ledger.close_run(context.run_id, status, error=redact(error), error_details=redact(details or "") or None)
    except SyncError as exc:
        _warn(context, cfg, exc)


def ledger_metadata(cfg: SyncConfig, run_id: str, trigger: Trigger, user: str | None) -> dict[str, Any]:
    """Load-step metadata pointing at the run's page in the history view, its ledger row and per-record history."""
    where = f"`{LEDGER_TABLE}` in `{display_url(cfg.target.url)}`"
    if cfg.target.db_schema:
        where += f" (schema `{cfg.target.db_schema}`)"
    text = "\n".join(
        [
            f"**Run ledger:** row `run_id = '{run_id}'` of {where}; "
            f"its records are in `_sync_records` with the same `run_id`.",
            "",
            f"- trigger: **{trigger.value}**, user: **{user or '-'}**",
            f"- [records, field changes and Excel download]({run_url(run_id)}) in the history view",
            f"- `sync-pipelines show {run_id}`: the run and its records",
            f"- `sync-pipelines export {run_id} --format xlsx -o {cfg.name}-{run_id[:8]}.xlsx`",
            f"- `sync-pipelines history {cfg.name}` and `sync-pipelines stats {cfg.name}`",
        ]
    )
    return {
        "ledger": MetadataValue.md(text),
        "ledger_run_id": MetadataValue.text(run_id),
        "history_view": MetadataValue.url(run_url(run_id)),
    }
