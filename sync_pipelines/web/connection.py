"""The connection test of a sync from its page: the checks of ``sync-pipelines check``, run in a thread.

The button starts :func:`sync_pipelines.kinds.check_sync` in a background thread (a source or target
that does not answer may take the connector's timeout) and the page reloads itself until the table
is there: per endpoint OK or FAILED, the latency, what was verified and the error. Endpoints are
shown without their password and errors have credentials removed, as the CLI prints them.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sync_pipelines.config import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.check import EndpointCheck
from sync_pipelines.kinds import check_sync
from sync_pipelines.web.site import check_same_origin, site_of

TESTS_KEPT = 100
"""Finished connection tests kept in memory (each page of a test reads its results by id)."""
REFRESH_S = 1


@dataclass
class ConnectionTest:
    """One connection test of one sync: running until ``results`` (or ``error``) is set."""

    test_id: str
    sync: str
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None
    results: list[EndpointCheck] | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """Whether the test has ended (with results, or with an error outside the endpoint checks)."""
        return self.finished_at is not None

    @property
    def ok(self) -> bool:
        """Every endpoint answered as the sync needs."""
        return self.results is not None and all(r.ok for r in self.results)


class ConnectionTests:
    """The connection tests started from the view, newest last, run one thread each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tests: OrderedDict[str, ConnectionTest] = OrderedDict()

    def start(self, cfg: SyncConfig) -> ConnectionTest:
        """Start testing ``cfg``'s endpoints in a thread; returns the test, still running."""
        test = ConnectionTest(uuid.uuid4().hex[:12], cfg.name)
        with self._lock:
            self._tests[test.test_id] = test
            while len(self._tests) > TESTS_KEPT:
                self._tests.popitem(last=False)
        threading.Thread(target=self._run, args=(cfg, test), name=f"check-{cfg.name}", daemon=True).start()
        return test

    @staticmethod
    def _run(cfg: SyncConfig, test: ConnectionTest) -> None:
        try:
            test.results = check_sync(cfg)
        except Exception as exc:  # check_sync reports endpoint failures itself; anything else ends the test
            test.error = redact(f"{type(exc).__name__}: {exc}")
        test.finished_at = dt.datetime.now(dt.UTC)

    def get(self, test_id: str) -> ConnectionTest | None:
        """The test ``test_id``, if it is still kept."""
        with self._lock:
            return self._tests.get(test_id)


def tests_of(request: Request) -> ConnectionTests:
    """The connection tests of the app serving ``request`` (created with the first one)."""
    state = request.app.state
    tests: ConnectionTests | None = getattr(state, "connection_tests", None)
    if tests is None:
        tests = state.connection_tests = ConnectionTests()
    return tests


def connection_test_page(request: Request) -> Response:
    """The sync's connection test: a button, and the results of the test ``?test=<id>`` (reloading while it runs)."""
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    test_id = request.query_params.get("test")
    test = tests_of(request).get(test_id) if test_id else None
    if test_id and (test is None or test.sync != cfg.name):
        raise HTTPException(404, f"no connection test {test_id!r} of sync {cfg.name!r} (the view keeps the last ones)")
    return site.render(request, "connection_test.html", cfg=cfg, test=test, refresh_s=REFRESH_S)


async def start_connection_test(request: Request) -> Response:
    """Start a connection test of the sync; to its page, which shows the table when the test ends."""
    check_same_origin(request)
    cfg = site_of(request).sync(request.path_params["name"])
    test = tests_of(request).start(cfg)
    return RedirectResponse(f"/syncs/{cfg.name}/check?test={test.test_id}", 303)
