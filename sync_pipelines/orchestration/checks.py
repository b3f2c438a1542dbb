"""The ``no_open_conflicts`` asset check of a sync, and its evaluation recorded after a resolution.

No postponed annotations here: Dagster reads the check's context annotation.
"""

import datetime as dt
import json
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetRecordsFilter,
    DagsterInstance,
    Failure,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from sync_pipelines.config.models import SqlTarget, SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.conflict_store import ConflictSummary, utcnow
from sync_pipelines.engine.conflicts import conflict_summary
from sync_pipelines.errors import SyncError
from sync_pipelines.history.links import conflicts_url
from sync_pipelines.orchestration.assets import asset_key
from sync_pipelines.orchestration.metadata import unbroken
from sync_pipelines.orchestration.names import CONFLICT_CHECK_NAME, RESOLVE_JOB_NAME
from sync_pipelines.orchestration.record_checks import metadata_value, run_load_metadata
from sync_pipelines.types import ConflictPolicy

CONFLICTS_SCHEMA = TableSchema(
    columns=[
        TableColumn("id", "int", description="Conflict id (give it to the resolve job or command)."),
        TableColumn("key", "string", description="Key of the record in the target."),
        TableColumn("field", "string", description="A field changed on both sides (one row per field)."),
        TableColumn("source", "string", description="The field's value in the source now."),
        TableColumn("target", "string", description="The field's value in the target now."),
        TableColumn(
            "baseline",
            "string",
            description="The value both sides had at the last sync, where one side still has it.",
        ),
        TableColumn("detected_at", "string", description="When a run first found the conflict (UTC)."),
        TableColumn("run_id", "string", description="The run that last found it."),
    ]
)


_BOTH_CHANGED = "(changed on both sides)"
"""The baseline cell of a field both sides changed: baselines keep a digest of each field, not its value."""


def has_conflict_check(cfg: SyncConfig) -> bool:
    """Whether a sync keeps baselines and conflicts: SQL targets do; the CMDB target of host metrics does not."""
    return isinstance(cfg.target, SqlTarget)


def conflict_check_key(cfg: SyncConfig) -> AssetCheckKey:
    """The key of a sync's ``no_open_conflicts`` check."""
    return AssetCheckKey(asset_key(cfg), CONFLICT_CHECK_NAME)


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _age(since: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours or days else []
    parts += [f"{minutes}m", f"{seconds}s"] if not days else [f"{minutes}m"]
    return " ".join(parts)


def conflict_metadata(cfg: SyncConfig, summary: ConflictSummary) -> dict[str, Any]:
    """Open count, oldest conflict's age and a table of sample conflicts: one row per differing field,
    with its source, target and baseline value in labelled columns."""
    now = utcnow()
    records = [
        TableRecord(
            {
                "id": c.id,
                "key": redact(", ".join(f"{k}={_show(v)}" for k, v in c.record_key.items())),
                "field": name,
                **{side: unbroken(redact(_show(d[side]))) for side in ("source", "target")},
                "baseline": unbroken(redact(_show(d["baseline"]))) if d["baseline_known"] else _BOTH_CHANGED,
                "detected_at": c.detected_at.strftime("%Y-%m-%d %H:%M:%S"),
                "run_id": c.run_id,
            }
        )
        for c in summary.samples
        for name, d in c.differences().items()
    ]
    metadata: dict[str, Any] = {
        "open_conflicts": MetadataValue.int(summary.open_count),
        "sample_conflicts": MetadataValue.table(records=records, schema=CONFLICTS_SCHEMA),
    }
    if summary.oldest_detected_at is not None:
        metadata["oldest_conflict_age"] = MetadataValue.text(_age(summary.oldest_detected_at, now))
        metadata["oldest_conflict_age_s"] = MetadataValue.float(
            max(0.0, (now - summary.oldest_detected_at).total_seconds())
        )
    if summary.open_count:
        metadata["resolve_in_the_view"] = MetadataValue.url(conflicts_url(cfg.name))
        metadata["how_to_resolve"] = MetadataValue.md(
            f"Open [the conflicts of {cfg.name}]({conflicts_url(cfg.name)}) in the history view and choose Keep "
            f"source or Keep target for each (every choice is a run of the `{RESOLVE_JOB_NAME}` job)."
        )
    return metadata


_SETTLED_BY = {
    ConflictPolicy.SOURCE_WINS: "the source's values overwrote the edits made on the target",
    ConflictPolicy.TARGET_WINS: "the target's edits were kept and the source's changes left out",
}


def _description(cfg: SyncConfig, summary: ConflictSummary, raised: int) -> str:
    by_run = f" This run found {raised} record(s) changed on both sides." if raised else ""
    if summary.open_count:
        return (
            f"{summary.open_count} record(s) of `{cfg.target.table}` changed on both sides and wait for a person."
            + by_run
            + f" Resolve them on the history view's conflict page: {conflicts_url(cfg.name)}"
        )
    if raised:
        settled = _SETTLED_BY.get(cfg.on_conflict, "they were resolved")
        return (
            f"This run found {raised} record(s) of `{cfg.target.table}` changed on both sides; policy "
            f"`{cfg.on_conflict.value}`: {settled}. None is open. The records are in `_sync_records` "
            "(actions `source_won` / `target_won`)."
        )
    return f"No open conflicts in `{cfg.target.table}`."


def conflict_verdict(open_count: int, raised: int) -> tuple[bool, AssetCheckSeverity]:
    """Failed with severity ERROR while conflicts are open; failed with severity WARN when a run found
    conflicts that the sync's policy settled (``source_wins`` / ``target_wins``); passed otherwise."""
    if open_count:
        return False, AssetCheckSeverity.ERROR
    if raised:
        return False, AssetCheckSeverity.WARN
    return True, AssetCheckSeverity.ERROR


def conflict_result(cfg: SyncConfig, summary: ConflictSummary, raised: int) -> AssetCheckResult:
    """The check's result for the open conflicts and the ``raised`` conflicts a run found."""
    passed, severity = conflict_verdict(summary.open_count, raised)
    metadata = conflict_metadata(cfg, summary)
    metadata["conflicts_found_by_run"] = MetadataValue.int(raised)
    return AssetCheckResult(
        passed=passed, severity=severity, description=_description(cfg, summary, raised), metadata=metadata
    )


def _summary(cfg: SyncConfig) -> ConflictSummary:
    try:
        return conflict_summary(cfg)
    except SyncError as exc:
        raise Failure(description=redact(f"sync {cfg.name}: cannot read the conflicts: {exc}")) from None


def build_conflict_check(cfg: SyncConfig) -> AssetChecksDefinition:
    """``no_open_conflicts`` on the sync's asset: fails with severity ERROR while conflicts are open, and with
    severity WARN after a run that found conflicts its ``on_conflict`` policy settled, so such a run never
    looks like a clean success next to its green Dagster status.

    It is blocking when the sync sets ``block_on_conflicts``, so downstream assets of the same run
    wait for the conflicts to be resolved.
    """

    @asset_check(
        asset=asset_key(cfg),
        name=CONFLICT_CHECK_NAME,
        description=f"Fails while records of `{cfg.target.table}` that were changed both by the source and on "
        f"the target wait for a person (sync `{cfg.name}`, policy `{cfg.on_conflict.value}`); warns after a run "
        f"whose conflicts the policy settled. Resolve open ones on the history view's conflict page "
        f"({conflicts_url(cfg.name)}).",
        blocking=cfg.block_on_conflicts,
    )
    def _no_open_conflicts(context: AssetCheckExecutionContext) -> AssetCheckResult:
        metadata = run_load_metadata(context.instance, cfg, context.run.run_id)
        raised = int(metadata_value(metadata, "conflicted") or 0) if metadata is not None else 0
        return conflict_result(cfg, _summary(cfg), raised)

    return _no_open_conflicts


def record_conflict_check(instance: DagsterInstance, cfg: SyncConfig) -> bool:
    """Evaluate a sync's conflicts now and record the result as the check's latest evaluation.

    Used after a resolution, so that the check turns green without running the sync; the evaluation
    points at the asset's latest materialization, as the UI expects. Returns whether the check passed.
    """
    summary = _summary(cfg)
    key = conflict_check_key(cfg)
    latest = instance.fetch_materializations(AssetRecordsFilter(asset_key=key.asset_key), limit=1).records
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=latest[0].storage_id, run_id=latest[0].run_id, timestamp=latest[0].timestamp
        )
        if latest
        else None
    )
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=summary.open_count == 0,
            severity=AssetCheckSeverity.ERROR,
            description=_description(cfg, summary, 0),
            metadata=conflict_metadata(cfg, summary),
            blocking=cfg.block_on_conflicts,
            target_materialization_data=target,
        )
    )
    return summary.open_count == 0
