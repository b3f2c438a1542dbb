"""Run a sync now from its page: a plain run of its Dagster job, launched through the GraphQL API.

Dagster's launchpad asks to confirm a run of a partitioned job without a partition; this form
launches exactly that run (the schedule's kind: from the watermark, or everything with *Full sync*),
so the sync page offers it without a dialog. Every launch is still a Dagster run with its event log.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sync_pipelines.errors import LaunchError
from sync_pipelines.web.site import check_same_origin, site_of


async def run_now(request: Request) -> Response:
    """Launch the sync's job with the form's *Full sync*, *Dry run* and *Run by*; back to the sync's page."""
    check_same_origin(request)
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
    back = f"/syncs/{cfg.name}"
    user = form.get("user", "").strip()
    if not user:
        return RedirectResponse(f"{back}?{urlencode({'error': 'enter who runs the sync'})}", 303)
    full_sync, dry_run = form.get("full_sync") == "1", form.get("dry_run") == "1"
    try:
        run_id = await run_in_threadpool(
            site.dagster.launch_sync,
            cfg.name,
            partitioned=cfg.partitions is not None,
            full_sync=full_sync,
            dry_run=dry_run,
            user=user,
        )
    except LaunchError as exc:
        return RedirectResponse(f"{back}?{urlencode({'error': str(exc), 'by': user})}", 303)
    return RedirectResponse(f"{back}?{urlencode({'launched': run_id, 'by': user})}", 303)
