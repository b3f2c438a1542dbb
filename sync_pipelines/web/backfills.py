"""Backfills: one row per backfill of a sync, and one row per partition run of a backfill with its counts."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sync_pipelines.history.ledger import RunFilter
from sync_pipelines.history.queries import list_backfills, list_runs
from sync_pipelines.history.stats import PARTITION_PREFIX
from sync_pipelines.web.site import site_of

MAX_PARTITION_RUNS = 1000


def backfills_page(request: Request) -> Response:
    """Every backfill, newest first: sync, partition runs, statuses and record counts."""
    site = site_of(request)
    return site.render(request, "backfills.html", backfills=list_backfills(site.configs()))


def backfill_page(request: Request) -> Response:
    """One backfill: each partition run with its status and counts (seed 002's per-batch statistics)."""
    site = site_of(request)
    backfill_id = request.path_params["backfill_id"]
    configs = site.configs()
    page = list_runs(configs, page_size=MAX_PARTITION_RUNS, where=RunFilter(backfill_id=backfill_id))
    launched = request.query_params.get("launched") == "1"
    if not page.entries and not launched:
        raise HTTPException(404, f"no run of backfill {backfill_id!r} in the ledger of any sync")
    runs = sorted(page.entries, key=lambda e: (e.sync, e.mode))
    return site.render(
        request,
        "backfill.html",
        backfill_id=backfill_id,
        runs=runs,
        partition_of=lambda e: e.mode.removeprefix(PARTITION_PREFIX),
        total=page.total,
        launched=launched,
        launch=request.query_params,
    )
