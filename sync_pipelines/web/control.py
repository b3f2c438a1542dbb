"""Cancel and retry a run, and turn a sync's schedule on or off, through Dagster's GraphQL API.

Each is a POST from the view's own pages (same-origin check) that redirects back with a notice. A retry
is a Dagster re-execution of the run tagged with the user who asked (``sync/user``, as *Run now* does), so
the ledger records it as a ``retry`` by that user.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sync_pipelines.errors import LaunchError
from sync_pipelines.web.dagster_api import SCHEDULE_SUFFIX
from sync_pipelines.web.site import check_same_origin, site_of


async def _form(request: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}


def _back(path: str, **values: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode(values)}", 303)


async def cancel(request: Request) -> Response:
    """Cancel a queued or running run; back to its page."""
    check_same_origin(request)
    site = site_of(request)
    run_id = request.path_params["run_id"]
    back = f"/runs/{run_id}"
    try:
        await run_in_threadpool(site.dagster.terminate, run_id)
    except LaunchError as exc:
        return _back(back, error=str(exc))
    return _back(back, notice="Cancellation requested: a running load stops after the batch it is writing.")


async def retry(request: Request) -> Response:
    """Re-execute a finished run (all steps, or from the failed step) under the form's user; to the new run's page."""
    check_same_origin(request)
    site = site_of(request)
    run_id = request.path_params["run_id"]
    form = await _form(request)
    back = f"/runs/{run_id}"
    user = form.get("user", "").strip()
    if not user:
        return _back(back, error="enter who retries the run")
    from_failure = form.get("from_failure") == "1"
    try:
        new_id = await run_in_threadpool(site.dagster.reexecute, run_id, from_failure=from_failure, user=user)
    except LaunchError as exc:
        return _back(back, error=str(exc), by=user)
    how = "from its failed step" if from_failure else "all steps, reading the source again"
    return _back(f"/runs/{new_id}", notice=f"Retry of run {run_id[:8]} ({how}) launched by {user}.")


async def toggle_schedule(request: Request) -> Response:
    """Turn the sync's schedule on (``on=1``) or off; back to the page the form was on."""
    check_same_origin(request)
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    form = await _form(request)
    back = form.get("back", "/")
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    if cfg.schedule is None:
        raise HTTPException(400, f"sync {cfg.name!r} has no schedule (it runs when launched)")
    on = form.get("on") == "1"
    try:
        await run_in_threadpool(site.dagster.set_schedule, f"{cfg.name}{SCHEDULE_SUFFIX}", on)
    except LaunchError as exc:
        return _back(back, error=str(exc))
    return _back(back, notice=f"Schedule of {cfg.name} turned {'on' if on else 'off'}.")
