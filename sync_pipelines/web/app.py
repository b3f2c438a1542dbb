"""The history view's Starlette application: routes, static files and error pages."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sync_pipelines.errors import BadQueryParameter, ConfigError, SyncError, UnknownSyncError
from sync_pipelines.web import (
    backfill_form,
    backfills,
    conflicts,
    connection,
    control,
    host_lists,
    launch,
    live,
    pages,
    statistics,
)
from sync_pipelines.web.dagster_api import DagsterApi
from sync_pipelines.web.site import HERE, Site, site_of


def _error(request: Request, status: int, title: str, lines: list[str]) -> Response:
    return site_of(request).render(request, "error.html", status_code=status, title=title, lines=lines)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.status_code, "Not found" if exc.status_code == 404 else "Bad request", [exc.detail])


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    return _error(request, 400, "Bad request", [str(exc)])


async def _unknown_sync(request: Request, exc: Exception) -> Response:
    return _error(request, 404, "Not found", [str(exc)])


async def _config_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConfigError)
    return _error(request, 500, "Invalid sync configuration", list(exc.problems))


async def _sync_error(request: Request, exc: Exception) -> Response:
    return _error(request, 502, "A ledger database did not answer", [str(exc)])


async def _favicon(request: Request) -> Response:
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


def create_app(config_dir: Path, dagster_url: str) -> Starlette:
    """The history view of the syncs in ``config_dir``; its buttons launch runs on Dagster at ``dagster_url``."""
    routes = [
        Route("/", pages.sync_list, name="syncs"),
        Route("/runs", pages.run_history, name="runs"),
        Route("/runs/{run_id}", pages.run_page, name="run"),
        Route("/runs/{run_id}/records.{fmt:str}", pages.export, name="export"),
        Route("/runs/{run_id}/progress.json", live.progress_json, name="progress"),
        Route("/runs/{run_id}/cancel", control.cancel, methods=["POST"], name="cancel"),
        Route("/runs/{run_id}/retry", control.retry, methods=["POST"], name="retry"),
        Route("/syncs/{name}", pages.sync_page, name="sync"),
        Route("/syncs/{name}/run", launch.run_now, methods=["POST"], name="run_now"),
        Route("/syncs/{name}/schedule", control.toggle_schedule, methods=["POST"], name="schedule"),
        Route("/syncs/{name}/backfill", backfill_form.start_backfill, methods=["POST"], name="start_backfill"),
        Route("/syncs/{name}/check", connection.connection_test_page, name="connection_test"),
        Route("/syncs/{name}/check", connection.start_connection_test, methods=["POST"]),
        Route("/syncs/{name}/statistics", statistics.statistics_page, name="statistics"),
        Route("/syncs/{name}/hosts", host_lists.host_run_page, name="host_run"),
        Route("/syncs/{name}/hosts", host_lists.launch_host_run, methods=["POST"]),
        Route("/syncs/{name}/conflicts", conflicts.conflicts_page, name="conflicts"),
        Route("/syncs/{name}/conflicts/{conflict_id:int}/resolve", conflicts.resolve, methods=["POST"]),
        Route("/backfills", backfills.backfills_page, name="backfills"),
        Route("/backfills/{backfill_id}", backfills.backfill_page, name="backfill"),
        Route("/favicon.ico", _favicon),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers = {
        HTTPException: _http_error,
        BadQueryParameter: _bad_parameter,
        UnknownSyncError: _unknown_sync,
        ConfigError: _config_error,
        SyncError: _sync_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.site = Site(config_dir, DagsterApi(dagster_url))
    app.state.site.templates.env.globals.update(
        takes_host_list=host_lists.takes_host_list, partition_example=backfill_form.partition_example
    )
    return app
