"""Runs in every state: queued runs (from Dagster's queue, before the ledger has a row) and the live progress of
a running run, read from the progress lines the engine logs to the run's event log.

A running run's ledger row holds zeros until its load step ends; its page polls ``/runs/<id>/progress.json``,
which adds up the records the run has committed so far (each batch commits its records with the rows) and
the latest progress line of each stage (rows done, total, rows/s, ETA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.progress import ProgressSnapshot, parse_progress
from sync_pipelines.errors import LaunchError, SyncError
from sync_pipelines.history.ledger import RunEntry, open_ledger
from sync_pipelines.history.queries import find_run
from sync_pipelines.types import COUNT_KEYS, RunStatus
from sync_pipelines.web.dagster_api import FINISHED, DagsterApi, DagsterRun
from sync_pipelines.web.site import Site, site_of

STAGES = ("extract", "transform", "load")
POLL_MS = 1000
"""How often a live page asks for the run's progress."""


@dataclass(frozen=True)
class QueuedRun:
    """A run waiting in Dagster's queue, and its place in line (1 = next to start)."""

    run: DagsterRun
    position: int


def queued_runs(site: Site, sync: str | None = None) -> tuple[list[QueuedRun], str | None]:
    """The runs of syncs waiting in Dagster's queue (of ``sync`` only, when given), with their positions in the
    whole queue; and why the queue could not be read (None when it was)."""
    try:
        pending = site.dagster.pending_runs()
    except LaunchError as exc:
        return [], str(exc)
    return [QueuedRun(r, i) for i, r in enumerate(pending, 1) if sync is None or r.sync == sync], None


def queue_position(site: Site, run_id: str) -> int | None:
    """The place of ``run_id`` in Dagster's queue (1 = next), None when it is not waiting."""
    found, _ = queued_runs(site)
    return next((q.position for q in found if q.run.run_id == run_id), None)


def stage_progress(site: Site, run_id: str) -> dict[str, ProgressSnapshot]:
    """The latest progress line of each stage of a run, read from its event log after the last cursor read."""
    cursor, stages = site.progress.get(run_id, (None, {}))
    logs = site.dagster.logs(run_id, cursor)
    stages = dict(stages)
    for message in logs.messages:
        snapshot = parse_progress(message)
        if snapshot is not None:
            stages[snapshot.stage] = snapshot
    site.remember_progress(run_id, logs.cursor, stages)
    return stages


def _snapshot_json(snapshot: ProgressSnapshot) -> dict[str, Any]:
    return {
        "stage": snapshot.stage,
        "batches": snapshot.batches,
        "rows": snapshot.rows,
        "total": snapshot.total,
        "percent": snapshot.percent,
        "rows_per_s": round(snapshot.rows_per_s, 1),
        "eta_s": snapshot.eta_s,
    }


def live_state(
    site: Site, cfg: SyncConfig | None, entry: RunEntry | None, dagster: DagsterRun | None
) -> dict[str, Any]:
    """What a live page shows of a run: status, counts so far and the progress of each stage."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    stages: dict[str, ProgressSnapshot] = {}
    run_id = entry.run_id if entry else dagster.run_id if dagster else ""
    if entry is not None:
        counts.update(entry.counts)
    running = entry is not None and entry.status is RunStatus.RUNNING
    if running and cfg is not None and entry is not None:
        with open_ledger(cfg) as ledger:
            counts.update(ledger.live_counts(entry))
    if running or (dagster is not None and not dagster.pending):
        try:
            stages = stage_progress(site, run_id)
        except LaunchError:
            stages = {}
    load = stages.get("load")
    if running and load is not None:
        counts["processed"] = load.rows
        # Unchanged rows are not stored one by one: what the load read and did not fail, skip or hold succeeded.
        held = sum(counts[k] for k in ("failed", "skipped", "conflicted", "target_modified"))
        counts["succeeded"] = max(load.rows - held, 0)
    current = next((stages[s] for s in reversed(STAGES) if s in stages), None)
    status = entry.status.value if entry else "queued" if dagster is not None and dagster.pending else "starting"
    return {
        "run_id": run_id,
        "status": status,
        "dagster_status": dagster.status if dagster else None,
        "finished": entry is not None and entry.status is not RunStatus.RUNNING,
        "position": queue_position(site, run_id) if dagster is not None and dagster.pending else None,
        "counts": counts,
        "stages": [_snapshot_json(stages[s]) for s in STAGES if s in stages],
        "current": _snapshot_json(current) if current else None,
    }


def _ledger_entry(site: Site, run_id: str) -> tuple[SyncConfig, RunEntry] | None:
    try:
        return find_run(site.configs(), run_id)
    except SyncError:
        return None


async def progress_json(request: Request) -> Response:
    """``/runs/<id>/progress.json``: the live state of a queued, starting or running run (and of a finished one)."""
    site = site_of(request)
    run_id = request.path_params["run_id"]
    found = await run_in_threadpool(_ledger_entry, site, run_id)
    cfg, entry = found if found else (None, None)
    dagster: DagsterRun | None = None
    if entry is None or entry.status is RunStatus.RUNNING:
        try:
            dagster = await run_in_threadpool(site.dagster.run, entry.run_id if entry else run_id)
        except LaunchError:
            dagster = None
    if entry is None and dagster is None:
        raise HTTPException(404, f"no run {run_id!r} in the ledger of any sync nor in Dagster")
    state = await run_in_threadpool(live_state, site, cfg, entry, dagster)
    if entry is None and dagster is not None and dagster.status in FINISHED:
        state["finished"] = True  # ended before its first step wrote a ledger row (cancelled in the queue)
        state["status"] = "cancelled" if dagster.status == "CANCELED" else dagster.status.lower()
    return JSONResponse(state, headers={"Cache-Control": "no-store"})


def pending_page(request: Request, site: Site, api: DagsterApi, run: DagsterRun) -> Response:
    """The page of a run the ledger does not hold yet: queued, starting, or cancelled before it started."""
    cfgs = {cfg.name: cfg for cfg in site.configs()}
    cfg = cfgs.get(run.sync or "")
    if cfg is None:
        raise HTTPException(404, f"run {run.run_id!r} in Dagster belongs to no sync of this view")
    state = live_state(site, cfg, None, run)
    if run.status in FINISHED:
        state["finished"] = True
        state["status"] = "cancelled" if run.status == "CANCELED" else run.status.lower()
    return site.render(
        request,
        "pending.html",
        cfg=cfg,
        run=run,
        state=state,
        poll_ms=POLL_MS,
        dagster_run_url=api.run_url(run.run_id),
        notice=request.query_params.get("notice"),
        error=request.query_params.get("error"),
    )
