"""The demo's directory API: the staff directory's users and departments as a paged JSON API.

A small Starlette app over the demo's ``directory.db`` (built by :mod:`sync_pipelines.demo.sources`),
served by Uvicorn on a free local port while the demo or the UI runs, the way a third-party directory
platform would serve them: ``GET /api/v1/users`` and ``GET /api/v1/departments``, pages of
``page_size`` records (``page``), an inclusive ``updated_since`` filter on users, and a bearer token.
Records are nested (``profile.email``, ``department.id``), as such APIs return them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.demo.local_es import free_port
from sync_pipelines.errors import LocalEsError

API_URL_ENV = "SYNC_DEMO_API_URL"
"""The variable the demo's API syncs read the server's base URL from."""
API_TOKEN_ENV = "SYNC_DEMO_API_TOKEN"  # noqa: S105 - the name of a variable, not a token
"""The bearer token the server accepts (a random one unless set)."""
MAX_PAGE_SIZE = 500
STARTUP_TIMEOUT_S = 15.0


def _page(request: Request) -> tuple[int, int]:
    try:
        page = max(int(request.query_params.get("page", "1")), 1)
        size = min(max(int(request.query_params.get("page_size", "50")), 1), MAX_PAGE_SIZE)
    except ValueError:
        raise ValueError("page and page_size must be whole numbers") from None
    return page, size


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment.replace(microsecond=0).isoformat() + "Z"


def _user(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "profile": {"display_name": row.full_name, "email": row.email},
        "department": {"id": row.department_id},
        "active": bool(row.active),
        "updated_at": _iso(row.updated_at),
    }


def _department(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "parent_id": row.parent_id, "manager": row.manager}


def create_app(engine: sa.Engine, token: str) -> Starlette:
    """The API over the directory database of ``engine``, accepting ``Authorization: Bearer <token>``."""

    def listing(table: str, convert: Any, filtered: bool) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            if not secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
                return JSONResponse({"error": "invalid or missing bearer token"}, status_code=401)
            try:
                page, size = _page(request)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            query = f"SELECT * FROM {table}"
            params: dict[str, Any] = {"limit": size, "offset": (page - 1) * size}
            since = request.query_params.get("updated_since")
            if filtered and since:
                try:
                    bound = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).replace(tzinfo=None)
                except ValueError:
                    return JSONResponse({"error": f"updated_since {since!r} is not an ISO-8601 time"}, 400)
                query += " WHERE updated_at >= :since"
                params["since"] = bound.isoformat(sep=" ")
            with engine.connect() as conn:
                rows = conn.execute(sa.text(f"{query} ORDER BY id LIMIT :limit OFFSET :offset"), params).all()
            items = [convert(row) for row in rows]
            return JSONResponse({"data": {"items": items}, "meta": {"page": page, "page_size": size}})

        return endpoint

    return Starlette(
        routes=[
            Route("/api/v1/users", listing("users", _user, filtered=True)),
            Route("/api/v1/departments", listing("departments", _department, filtered=False)),
        ]
    )


@contextlib.contextmanager
def serving(database: Path, token: str) -> Iterator[str]:
    """The API served on a free local port for the duration of a ``with`` block; yields its base URL."""
    port = free_port()
    engine = sa.create_engine(f"sqlite:///{database}")
    app = create_app(engine, token)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-directory-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise LocalEsError(f"the demo directory API did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def needs_directory_api(configs: Sequence[SyncConfig]) -> bool:
    """Whether a sync reads the demo API (``${SYNC_DEMO_API_URL}``) and no server is set."""
    if os.environ.get(API_URL_ENV):
        return False
    return any(f"${{{API_URL_ENV}}}" in str(getattr(cfg.source, "url", "")) for cfg in configs)


@contextlib.contextmanager
def directory_api_demo(configs: Sequence[SyncConfig], directory: Path) -> Iterator[str | None]:
    """While the demo runs: the directory API served over ``directory/directory.db``, with
    ``$SYNC_DEMO_API_URL`` (and ``$SYNC_DEMO_API_TOKEN``, unless set) pointing at it.

    Yields a line describing the server, or None when no sync reads it.
    """
    if not needs_directory_api(configs):
        yield None
        return
    from sync_pipelines.demo.sources import build_demo_databases

    build_demo_databases(directory)  # kept when they exist
    saved = {name: os.environ.get(name) for name in (API_URL_ENV, API_TOKEN_ENV)}
    token = os.environ.get(API_TOKEN_ENV) or secrets.token_urlsafe(24)
    try:
        with serving(directory / "directory.db", token) as url:
            os.environ[API_URL_ENV], os.environ[API_TOKEN_ENV] = url, token
            yield f"local directory API at {url}/api/v1 (users, departments; bearer ${API_TOKEN_ENV})"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


__all__ = ["API_TOKEN_ENV", "API_URL_ENV", "create_app", "directory_api_demo", "needs_directory_api", "serving"]
