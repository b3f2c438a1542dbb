"""A real local JSON API for the ``rest`` tests: a threaded ``http.server`` on 127.0.0.1 serving records
paged every way the ``rest`` source reads them, behind a configurable auth, with scripted failures.

Routes (records sorted by ``id``, filtered by ``updated_since`` inclusively, i.e. ``>=``):
``/page`` (``page``/``page_size``), ``/offset`` (``offset``/``limit``), ``/cursor`` (``cursor``, next in
``meta.next_cursor``), ``/link`` (``page``, next in the ``Link`` header), ``/next`` (next in ``links.next``,
relative), ``/list`` (the bare list). Paged bodies hold the records in ``data.items``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

DROP = "drop"
"""A scripted reply that closes the connection without answering."""


@dataclass
class Reply:
    """A scripted reply, served instead of the real one to the next request."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiState:
    """What the server serves and what it saw."""

    records: list[dict[str, Any]] = field(default_factory=list)
    provider: Callable[[], list[dict[str, Any]]] | None = None
    """Reads the records afresh for each request (e.g. from a database) instead of ``records``."""
    auth: tuple[str, ...] | None = None
    """``("bearer", token)``, ``("basic", user, password)``, ``("header", name, value)``, ``("query", name, value)``."""
    page_size: int = 2
    script: deque[Reply | str] = field(default_factory=deque)
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    """``(path, query, headers)`` of every request, scripted ones included."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queries(self, path: str) -> list[dict[str, str]]:
        """The query parameters of each request of ``path``."""
        return [query for seen, query, _ in self.requests if seen == path]


def _since(records: list[dict[str, Any]], since: str | None) -> list[dict[str, Any]]:
    if since is None:
        return records
    bound = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    return [r for r in records if dt.datetime.fromisoformat(r["updated_at"].replace("Z", "+00:00")) >= bound]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with state.lock:
            state.requests.append((parts.path, query, dict(self.headers)))
            scripted = state.script.popleft() if state.script else None
        if scripted == DROP:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if isinstance(scripted, Reply):
            self._send(scripted.status, scripted.body, scripted.headers)
            return
        if not self._authorised(state, query):
            self._send(401, json.dumps({"error": "unauthorised"}), {"Content-Type": "application/json"})
            return
        self._route(state, parts.path, query)

    def _authorised(self, state: ApiState, query: dict[str, str]) -> bool:
        if state.auth is None:
            return True
        kind, *values = state.auth
        if kind == "bearer":
            return self.headers.get("Authorization") == f"Bearer {values[0]}"
        if kind == "basic":
            token = base64.b64encode(f"{values[0]}:{values[1]}".encode()).decode()
            return self.headers.get("Authorization") == f"Basic {token}"
        if kind == "header":
            return self.headers.get(values[0]) == values[1]
        return query.get(values[0]) == values[1]

    def _route(self, state: ApiState, path: str, query: dict[str, str]) -> None:
        served = state.provider() if state.provider is not None else state.records
        records = _since(sorted(served, key=lambda r: r["id"]), query.get("updated_since"))
        size = state.page_size
        if path == "/list":
            self._json(records)
        elif path == "/page":
            page, size = int(query.get("page", "1")), int(query.get("page_size", str(size)))
            self._json({"data": {"items": records[(page - 1) * size : page * size]}})
        elif path == "/offset":
            offset, limit = int(query.get("offset", "0")), int(query.get("limit", str(size)))
            self._json({"data": {"items": records[offset : offset + limit]}})
        elif path == "/cursor":
            start = int(query.get("cursor", "0"))
            following = start + size if start + size < len(records) else None
            self._json({"data": {"items": records[start : start + size]}, "meta": {"next_cursor": following}})
        elif path == "/link":
            page = int(query.get("page", "1"))
            headers = {}
            if page * size < len(records):
                headers["Link"] = f'<{self._base()}/link?page={page + 1}&{_carry(query)}>; rel="next"'
            self._json({"data": {"items": records[(page - 1) * size : page * size]}}, headers)
        elif path == "/next":
            page = int(query.get("page", "1"))
            following = f"/next?page={page + 1}&{_carry(query)}" if page * size < len(records) else None
            self._json({"data": {"items": records[(page - 1) * size : page * size]}, "links": {"next": following}})
        else:
            self._send(404, json.dumps({"error": f"no route {path}"}), {"Content-Type": "application/json"})

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _json(self, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, body: bytes | str, headers: dict[str, str]) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _carry(query: dict[str, str]) -> str:
    """The query parameters a next link keeps (every one but the page)."""
    return "&".join(f"{k}={v}" for k, v in query.items() if k != "page")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ApiState):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class LocalApi:
    """A running server: its base URL and its :class:`ApiState`."""

    url: str
    state: ApiState


def person(i: int, updated: str = "2024-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    """Directory user ``i``: nested profile, department and update time."""
    return {
        "id": i,
        "profile": {"name": f"user {i}", "email": f"user{i}@example.com"},
        "department": {"id": 10 + i % 3},
        "updated_at": updated,
        **extra,
    }


@pytest.fixture
def local_api() -> Iterator[LocalApi]:
    """A local JSON API with five users, two per page, no auth."""
    state = ApiState(records=[person(i) for i in range(1, 6)])
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield LocalApi(f"http://{host}:{port}", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


__all__ = ["DROP", "ApiState", "LocalApi", "Reply", "local_api", "person"]
