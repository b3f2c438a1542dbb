"""The sync list, the run history and a run's page with its records and downloads."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.conflicts import conflict_summary
from sync_pipelines.errors import LaunchError, SyncError
from sync_pipelines.history.export import ExportFormat, export_csv, export_xlsx
from sync_pipelines.history.ledger import RunEntry, Trigger, open_ledger
from sync_pipelines.history.queries import find_run, last_runs, list_runs
from sync_pipelines.history.records import RecordStatus
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines.web import live, params
from sync_pipelines.web.dagster_api import SCHEDULE_SUFFIX, ScheduleState
from sync_pipelines.web.host_runs import host_run
from sync_pipelines.web.schedule import next_fire
from sync_pipelines.web.site import Site, entity_label, has_conflicts, site_of

RUNS_PAGE_SIZE = 25
RECORDS_PAGE_SIZE = 50
_MEDIA_TYPES = {
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ExportFormat.CSV: "text/csv; charset=utf-8",
}


@dataclass
class SyncRow:
    """One line of the sync list."""

    cfg: SyncConfig
    entity: str
    schedule: str
    next_run: dt.datetime | None
    last: RunEntry | None
    conflicts: bool
    schedule_on: bool | None = None
    """Whether the schedule is on in Dagster; the configured default when Dagster did not answer; None: no
    schedule."""
    schedule_known: bool = True
    """False when Dagster did not answer and ``schedule_on`` is the configuration's default."""
    open_conflicts: int | None = None
    """Open conflicts waiting for a person; None when the sync keeps none or they could not be read."""


def _schedule_states(site: Site) -> dict[str, ScheduleState] | None:
    try:
        return site.dagster.schedules()
    except LaunchError:
        return None


def _open_conflicts(cfg: SyncConfig) -> int | None:
    if not has_conflicts(cfg):
        return None
    try:
        return conflict_summary(cfg, sample_size=0).open_count
    except SyncError:
        return None


def _row(cfg: SyncConfig, states: dict[str, ScheduleState] | None, now: dt.datetime, last: RunEntry | None) -> SyncRow:
    row = SyncRow(cfg, entity_label(cfg), "manual", None, last, has_conflicts(cfg), open_conflicts=_open_conflicts(cfg))
    if cfg.schedule is None:
        return row
    row.schedule = f"{cfg.schedule.cron} ({cfg.timezone})"
    state = (states or {}).get(f"{cfg.name}{SCHEDULE_SUFFIX}")
    row.schedule_known = state is not None
    row.schedule_on = state.on if state is not None else cfg.schedule.enabled
    if row.schedule_on:  # a schedule that is off fires no run
        row.next_run = next_fire(cfg.schedule.dagster_cron, cfg.timezone, now)
    return row


def sync_list(request: Request) -> Response:
    """Every sync: mode, schedule (on or off) with its next run, open conflicts, the last real run and its status."""
    site = site_of(request)
    configs = site.configs()
    latest = last_runs(configs)
    states = _schedule_states(site)
    now = dt.datetime.now(dt.UTC)
    rows = [_row(cfg, states, now, latest.get(cfg.name)) for cfg in configs]
    return site.render(
        request,
        "syncs.html",
        rows=rows,
        notice=request.query_params.get("notice"),
        error=request.query_params.get("error"),
    )


def run_history(request: Request) -> Response:
    """Runs, newest first, filtered by sync, status, trigger, user, real or dry, and dates; paged."""
    return _history(request, sync=None)


def sync_page(request: Request) -> Response:
    """One sync's page: what it does and its run history."""
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    return _history(request, sync=cfg)


def _history(request: Request, sync: SyncConfig | None) -> Response:
    site = site_of(request)
    configs = site.configs()
    query = dict(request.query_params)
    if sync is not None:
        query["sync"] = sync.name
    where = params.run_filter(query, [cfg.name for cfg in configs])
    paging = params.paging(query, RUNS_PAGE_SIZE, 200)
    page = list_runs(configs, page=paging.page, page_size=paging.size, where=where)
    by_name = {cfg.name: cfg for cfg in configs}
    for entry in page.entries:  # a running run's row holds zeros until its load ends: show what it did so far
        if entry.status is RunStatus.RUNNING and entry.sync in by_name:
            entry.counts = live.live_state(site, by_name[entry.sync], entry, None)["counts"]
    queued, queue_error = live.queued_runs(site, sync.name if sync else None) if paging.page == 1 else ([], None)
    row = _row(sync, _schedule_states(site), dt.datetime.now(dt.UTC), None) if sync else None
    return site.render(
        request,
        "runs.html",
        sync=sync,
        entity=entity_label(sync) if sync else None,
        conflicts=has_conflicts(sync) if sync else False,
        page=page,
        query=query,
        qs=lambda **changes: params.query_string(dict(request.query_params), **changes),
        syncs=[cfg.name for cfg in configs],
        launched=request.query_params.get("launched"),
        error=request.query_params.get("error"),
        run_by=request.query_params.get("by", ""),
        statuses=list(RunStatus),
        triggers=list(Trigger),
        kinds=list(params.RunKind),
        queued=queued,
        queue_error=queue_error,
        row=row,
        notice=request.query_params.get("notice"),
    )


def _find(request: Request) -> tuple[SyncConfig, RunEntry]:
    site = site_of(request)
    run_id = request.path_params["run_id"]
    found = find_run(site.configs(), run_id)
    if found is None:
        raise HTTPException(404, f"no run {run_id!r} in the ledger of any sync")
    return found


def run_page(request: Request) -> Response:
    """One run: counts, success/total per entity, and its records, filtered and paged. A run still waiting in
    Dagster's queue (no ledger row yet) gets a page with its place in line; a running run's page shows its
    progress live."""
    site = site_of(request)
    run_id = request.path_params["run_id"]
    if find_run(site.configs(), run_id) is None:
        try:
            pending = site.dagster.run(run_id)
        except LaunchError:
            pending = None
        if pending is not None:
            return live.pending_page(request, site, site.dagster, pending)
    cfg, entry = _find(request)
    filters = params.record_filter(request.query_params)
    paging = params.paging(request.query_params, RECORDS_PAGE_SIZE)
    with open_ledger(cfg) as ledger:
        site.index_once(cfg, ledger)
        records = site.run_records(ledger, entry)
        statuses = records.entity_statuses(entity_label(cfg))
        page = records.page(filters, page=paging.page, page_size=paging.size)
        entities = records.entities()
    qs = dict(request.query_params)
    return site.render(
        request,
        "run.html",
        cfg=cfg,
        entry=entry,
        statuses=statuses,
        page=page,
        entities=sorted({*entities, entity_label(cfg)}),
        filters=filters,
        query=qs,
        qs=lambda **changes: params.query_string(qs, **changes),
        download_qs=params.query_string(qs, page=None, page_size=None),
        actions=list(RecordAction),
        record_statuses=list(RecordStatus),
        live=live.live_state(site, cfg, entry, None) if entry.status is RunStatus.RUNNING else None,
        poll_ms=live.POLL_MS,
        can_retry_from_failure=entry.status in (RunStatus.FAILED, RunStatus.CANCELLED),
        notice=request.query_params.get("notice"),
        error=request.query_params.get("error"),
        run_by=request.query_params.get("by", ""),
        hosts=host_run(cfg, entry, site.dagster),
    )


def export(request: Request) -> Response:
    """The run's records that the page's filters show, as an Excel workbook or a CSV file."""
    cfg, entry = _find(request)
    try:
        fmt = ExportFormat(request.path_params["fmt"])
    except ValueError:
        raise HTTPException(404, f"no download format {request.path_params['fmt']!r}; use xlsx or csv") from None
    filters = params.record_filter(request.query_params)
    handle = tempfile.NamedTemporaryFile(prefix="sync-export-", suffix=f".{fmt.value}", delete=False)  # noqa: SIM115
    handle.close()
    path = Path(handle.name)
    try:
        with open_ledger(cfg) as ledger:
            (export_xlsx if fmt is ExportFormat.XLSX else export_csv)(path, ledger, entry, filters)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES[fmt],
        filename=f"{cfg.name}-{entry.run_id[:8]}{'-dry-run-plan' if entry.dry_run else ''}.{fmt.value}",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
