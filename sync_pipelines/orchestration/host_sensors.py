"""The file-drop sensor of a host-metrics sync: one run per host list file dropped into a folder.

Each tick first files away the files whose run has finished (``processed/`` for a completed or
partial run, ``failed/`` for a failed or cancelled one), then requests one run per new file. The
run key is the SHA-256 of the file's content, so the same list is never run twice: a file whose
content already ran goes to ``failed/`` with a report naming that run. The cursor (kept by Dagster
in the instance's storage, so it survives restarts) maps each requested content key to its file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sync_pipelines.config.elasticsearch import HostFileDrop
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.cmdb import RESULTS_TABLE, CmdbWriter
from sync_pipelines.engine.host_files import (
    HOST_FILE_TAG,
    SKIPPED_LINES_TAG,
    FileOutcome,
    content_key,
    file_away,
    parse_host_list,
    skipped_lines_tag,
)
from sync_pipelines.errors import SyncError
from sync_pipelines.kinds import kind_of
from sync_pipelines.orchestration.failures import run_error
from sync_pipelines.orchestration.names import Tag
from sync_pipelines.types import HostStatus

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

HOST_FILE_KEY_TAG = "sync/host_file_sha256"
INVALID_LINES_TAG = "sync/host_file_invalid_lines"
SETTLE_S = 2.0
"""Files modified more recently than this are left for the next tick (they may still be written)."""
_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def sensor_name(sync: str) -> str:
    """``<name>_host_files``."""
    return f"{sync}_host_files"


def watches_host_files(cfg: SyncConfig) -> bool:
    """Whether a sync has a host-file folder to watch."""
    return kind_of(cfg).host_files(cfg) is not None


def _drop(cfg: SyncConfig) -> HostFileDrop:
    drop = kind_of(cfg).host_files(cfg)
    assert drop is not None
    return drop


def _run_for(context: SensorEvaluationContext, sync: str, key: str) -> Any:
    records = context.instance.get_run_records(
        RunsFilter(tags={Tag.SYNC_NAME.value: sync, HOST_FILE_KEY_TAG: key}), limit=1
    )
    return records[0].dagster_run if records else None


def _report(path: Path, lines: list[str]) -> str:
    return "\n".join([f"host list file: {path.name}", *lines, ""])


def _failure_reason(context: SensorEvaluationContext, run: Any) -> str:
    """Why the run of a file did not complete, for the file's report."""
    if run.status is DagsterRunStatus.CANCELED:
        return "the run was cancelled"
    return run_error(context.instance, run.run_id) or f"the run ended {run.status.value}"


REPORTED_HOST_ERRORS = 20
"""Failed hosts listed with their error in a file's report (every host is in ``_sync_host_results``)."""


def _failed_hosts(cfg: SyncConfig, run_id: str) -> list[str]:
    """``failed host <ip>: <error>`` lines of a run, as recorded in the CMDB (none if it is unreachable)."""
    writer = CmdbWriter(cfg)
    try:
        rows = writer.host_results(run_id)
    except SyncError as exc:
        return [f"(host results unavailable: {redact(str(exc))})"]
    finally:
        writer.engine.dispose()
    failed = [row for row in rows if row["status"] == HostStatus.FAILED.value]
    lines = [f"failed host {row['host_ip']}: {redact(row['error'] or '')}" for row in failed[:REPORTED_HOST_ERRORS]]
    if len(failed) > REPORTED_HOST_ERRORS:
        lines.append(f"... and {len(failed) - REPORTED_HOST_ERRORS} more failed host(s) in {RESULTS_TABLE}")
    return lines


def _settle(context: SensorEvaluationContext, cfg: SyncConfig, pending: dict[str, str]) -> dict[str, str]:
    """File away the files whose run finished; returns the entries still waiting."""
    waiting: dict[str, str] = {}
    for key, name in pending.items():
        path = Path(name)
        run = _run_for(context, cfg.name, key)
        if run is None or run.status not in _FINISHED:
            if path.exists():
                waiting[key] = name
            continue
        if not path.exists():
            context.log.warning(f"{name}: gone before it could be filed away (run {run.run_id})")
            continue
        status = run.tags.get(Tag.STATUS.value, run.status.value.lower())
        ok = run.status is DagsterRunStatus.SUCCESS
        outcome = FileOutcome.PROCESSED if ok else FileOutcome.FAILED
        invalid = parse_host_list(path.read_text(encoding="utf-8", errors="replace")).invalid
        lines = [f"run: {run.run_id}", f"status: {status}"]
        if not ok:
            lines += [f"error: {_failure_reason(context, run)}", *_failed_hosts(cfg, run.run_id)]
        report = _report(path, [*lines, *[f"skipped {line}" for line in invalid]])
        moved = file_away(path, outcome, report)
        context.log.info(f"{name}: run {run.run_id} ended {status}; moved to {moved}")
    return waiting


def build_host_file_sensor(cfg: SyncConfig, job: UnresolvedAssetJobDefinition) -> SensorDefinition:
    """``<name>_host_files``: runs ``job`` once per host list file dropped into the configured folder."""
    drop = _drop(cfg)

    @sensor(
        name=sensor_name(cfg.name),
        job=job,
        minimum_interval_seconds=drop.interval_s,
        default_status=DefaultSensorStatus.RUNNING if drop.enabled else DefaultSensorStatus.STOPPED,
        description=f"Runs sync `{cfg.name}` for each host list file dropped into `{drop.folder}` "
        f"(`{drop.pattern}`; one IP per line, blank lines and # comments allowed), once per content; "
        "finished files move to processed/ or failed/.",
    )
    def _host_files(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        folder = Path(drop.folder)
        if not folder.is_dir():
            return SkipReason(f"folder {folder} does not exist")
        state = json.loads(context.cursor) if context.cursor else {}
        pending = _settle(context, cfg, dict(state.get("pending", {})))
        requests: list[RunRequest] = []
        now = time.time()
        for path in sorted(p for p in folder.glob(drop.pattern) if p.is_file()):
            name = str(path)
            if name in pending.values() or now - path.stat().st_mtime < SETTLE_S:
                continue
            data = path.read_bytes()
            key = content_key(data)
            earlier = _run_for(context, cfg.name, key)
            if earlier is not None or key in pending:
                run_id = earlier.run_id if earlier is not None else "a pending run"
                file_away(path, FileOutcome.FAILED, _report(path, [f"same content as the list of {run_id}; not run"]))
                context.log.warning(f"{name}: same content as the host list of {run_id}; moved to failed/")
                continue
            hosts = parse_host_list(data.decode("utf-8", errors="replace"))
            for line in hosts.invalid:
                context.log.warning(f"{name}: {line}; skipped")
            if not hosts.ips:
                problems = [str(line) for line in hosts.invalid] or ["no IP address in the file"]
                file_away(path, FileOutcome.FAILED, _report(path, ["no valid host; not run", *problems]))
                context.log.warning(f"{name}: no valid host; moved to failed/")
                continue
            invalid = ", ".join(str(line.number) for line in hosts.invalid)
            tags = {HOST_FILE_TAG: name[-255:], HOST_FILE_KEY_TAG: key}
            if invalid:
                tags[INVALID_LINES_TAG] = invalid[:255]
                tags[SKIPPED_LINES_TAG] = skipped_lines_tag(hosts.invalid)
            requests.append(RunRequest(run_key=key, run_config={"host_ip_list": hosts.ips}, tags=tags))
            pending[key] = name
        cursor = json.dumps({"pending": pending}, sort_keys=True)
        if not requests:
            return SensorResult(skip_reason=SkipReason("no new host list file"), cursor=cursor)
        return SensorResult(run_requests=requests, cursor=cursor)

    return _host_files


__all__ = [
    "HOST_FILE_KEY_TAG",
    "HOST_FILE_TAG",
    "INVALID_LINES_TAG",
    "SKIPPED_LINES_TAG",
    "build_host_file_sensor",
    "sensor_name",
    "watches_host_files",
]
