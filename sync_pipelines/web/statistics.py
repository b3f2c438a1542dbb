"""A sync's statistics page: success rate, p50/p95 duration, runs per status and per-partition counts.

The figures are :mod:`sync_pipelines.history.stats`'s, computed from the sync's run ledger over a window
of days, the same the ``sync_statistics`` asset shows in Dagster (dry runs left out).
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from sync_pipelines.history.ledger import utcnow
from sync_pipelines.history.queries import runs_since
from sync_pipelines.history.stats import ACTION_COUNTS, compute_partition_stats, compute_stats
from sync_pipelines.types import RunStatus
from sync_pipelines.web import params
from sync_pipelines.web.site import site_of

DEFAULT_DAYS = 30
MAX_DAYS = 3660


def statistics_page(request: Request) -> Response:
    """The statistics of one sync over the last ``?days=`` days (30 by default)."""
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    days = params.number(request.query_params, "days", DEFAULT_DAYS, 1, MAX_DAYS)
    entries = runs_since([cfg], utcnow() - dt.timedelta(days=days))
    stats = compute_stats(entries, [cfg.name])[cfg.name]
    return site.render(
        request,
        "statistics.html",
        cfg=cfg,
        days=days,
        stats=stats,
        partitions=compute_partition_stats(entries),
        dry_runs=sum(1 for e in entries if e.dry_run),
        statuses=list(RunStatus),
        actions=ACTION_COUNTS,
    )
