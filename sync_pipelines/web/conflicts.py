"""A sync's conflicts, labelled source / target / baseline per field, resolved through a Dagster run."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sync_pipelines.connectors.conflict_store import Conflict
from sync_pipelines.engine.conflicts import list_conflicts
from sync_pipelines.errors import LaunchError
from sync_pipelines.history.records import format_key
from sync_pipelines.types import ConflictChoice, ConflictStatus
from sync_pipelines.web.site import check_same_origin, has_conflicts, site_of


def conflicts_page(request: Request) -> Response:
    """The sync's open conflicts (``?all=1``: resolved ones too), each with Keep source / Keep target."""
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    if not has_conflicts(cfg):
        raise HTTPException(404, f"sync {cfg.name!r} keeps no conflicts (it is not a SQL-to-SQL sync)")
    show_all = request.query_params.get("all") == "1"
    found = list_conflicts(cfg, status=None if show_all else ConflictStatus.OPEN)
    return site.render(
        request,
        "conflicts.html",
        cfg=cfg,
        conflicts=found,
        show_all=show_all,
        key_of=_key,
        launched=request.query_params.get("launched"),
        error=request.query_params.get("error"),
        resolved_by=request.query_params.get("by", ""),
        choices=list(ConflictChoice),
    )


def _key(conflict: Conflict) -> str:
    return format_key(json.dumps(conflict.record_key, default=str, ensure_ascii=False))


async def resolve(request: Request) -> Response:
    """Launch ``resolve_conflicts`` for one conflict with the chosen side; back to the conflicts page."""
    check_same_origin(request)
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    conflict_id = int(request.path_params["conflict_id"])
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
    back = f"/syncs/{cfg.name}/conflicts"
    try:
        choice = ConflictChoice(form.get("choice", ""))
    except ValueError:
        allowed = ", ".join(c.value for c in ConflictChoice)
        raise HTTPException(400, f"field 'choice': {form.get('choice')!r} is not one of {allowed}") from None
    user = form.get("resolved_by", "").strip()
    if not user:
        return RedirectResponse(f"{back}?{urlencode({'error': 'enter who resolves the conflict'})}", 303)
    try:
        run_id = await run_in_threadpool(site.dagster.resolve_conflicts, cfg.name, [conflict_id], choice, user)
    except LaunchError as exc:
        return RedirectResponse(f"{back}?{urlencode({'error': str(exc), 'by': user})}", 303)
    return RedirectResponse(f"{back}?{urlencode({'launched': run_id, 'by': user})}", 303)
