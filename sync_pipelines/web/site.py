"""What every page of the history view shares: the configurations, templates and the Dagster webserver."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from sync_pipelines.config import SyncConfig, load_configs
from sync_pipelines.engine.progress import ProgressSnapshot
from sync_pipelines.errors import UnknownSyncError
from sync_pipelines.history.ledger import Ledger, RunEntry
from sync_pipelines.history.links import history_url
from sync_pipelines.history.records import RecordStatus, RunCounts, RunRecords, ensure_record_indexes, status_of
from sync_pipelines.kinds import kind_of
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines.web.dagster_api import DagsterApi

HERE = Path(__file__).parent
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
DAGSTER_URL_ENV = "SYNC_PIPELINES_DAGSTER_URL"
COUNTS_KEPT = 256
"""Finished runs whose record counts per (entity, action) and record sets are kept in memory."""
PROGRESS_KEPT = 64
"""Running runs whose event log cursor and latest progress lines are kept between two polls."""
_ISO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(?:Z|[+-]00:?00)?$")


def entity_label(cfg: SyncConfig) -> str:
    """The entity type a sync's records are written under: ``history.entity``, else the target table."""
    return cfg.history_entity


def has_conflicts(cfg: SyncConfig) -> bool:
    """Whether the sync keeps baselines and conflicts that a person resolves (its kind says)."""
    return kind_of(cfg).keeps_conflicts


def when(value: dt.datetime | None) -> str:
    """A naive UTC time as ``YYYY-MM-DD HH:MM:SS``; ``-`` for none."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def epoch(value: float | None) -> dt.datetime | None:
    """A Unix timestamp (as Dagster gives times) as an aware UTC time, for :func:`when`."""
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def shown(value: object) -> object:
    """A record's field value as the view shows it: a time (a datetime, or an ISO text such as
    ``2026-11-20T08:06:00.000000``) as ``2026-11-20 08:06:00`` like every other time in the view (with its
    fraction of a second only when there is one); anything else unchanged."""
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        return value
    match = _ISO_TIME.match(value)
    if match is None:
        return value
    day, clock, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    return f"{day} {clock}.{fraction}" if fraction else f"{day} {clock}"


def batch(value: int | None) -> str:
    """A record's batch number; the records a run writes after its last batch (batch -1 in the ledger, such as
    the deletes of a full sync) read ``after the last``."""
    if value is None:
        return "-"
    return "after the last" if value < 0 else str(value)


def seconds(value: float | None) -> str:
    """A duration: ``0.42 s``, ``3 min 05 s``; ``-`` for none."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s"


def number(value: int) -> str:
    """``12,345``."""
    return f"{value:,}"


@dataclass
class Site:
    """The history view's configuration: where the syncs are, and the Dagster webserver to launch runs on."""

    config_dir: Path
    dagster: DagsterApi
    templates: Jinja2Templates = field(init=False)
    _indexed: set[tuple[str, str | None]] = field(default_factory=set, init=False)
    _counts: OrderedDict[str, RunCounts] = field(default_factory=OrderedDict, init=False)
    progress: OrderedDict[str, tuple[str | None, dict[str, ProgressSnapshot]]] = field(
        default_factory=OrderedDict, init=False
    )
    """Per running run: the event log cursor read up to, and the latest progress line of each stage."""

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(when=when, seconds=seconds, number=number, epoch=epoch, shown=shown, batch=batch)
        env.globals.update(
            dagster_url=self.dagster.url, RecordAction=RecordAction, RecordStatus=RecordStatus, status_of=status_of
        )

    def configs(self) -> list[SyncConfig]:
        """Every sync configuration, read again on each request (a new file shows without a restart)."""
        return load_configs(self.config_dir)

    def sync(self, name: str) -> SyncConfig:
        """The configuration of sync ``name``; an :class:`UnknownSyncError` (a 404) when there is none."""
        configs = {cfg.name: cfg for cfg in self.configs()}
        if name not in configs:
            raise UnknownSyncError(name, configs)
        return configs[name]

    def index_once(self, cfg: SyncConfig, ledger: Ledger) -> None:
        """Create the record index of the sync's ledger database, once per process."""
        key = (cfg.target.url, cfg.target.db_schema)
        if key not in self._indexed:
            ensure_record_indexes(ledger)
            self._indexed.add(key)

    def run_records(self, ledger: Ledger, entry: RunEntry) -> RunRecords:
        """The records of a run; the counts of a finished run are kept (it writes no more records)."""
        key = f"{entry.run_id}@{entry.finished_at}"
        records = RunRecords(ledger, entry, self._counts.get(key))
        if entry.status is not RunStatus.RUNNING:
            self._counts[key] = records.counts
            self._counts.move_to_end(key)
            while len(self._counts) > COUNTS_KEPT:
                self._counts.popitem(last=False)
        return records

    def remember_progress(self, run_id: str, cursor: str | None, stages: dict[str, ProgressSnapshot]) -> None:
        """Keep where a run's event log was read up to, so the next poll reads only what came after."""
        self.progress[run_id] = (cursor, stages)
        self.progress.move_to_end(run_id)
        while len(self.progress) > PROGRESS_KEPT:
            self.progress.popitem(last=False)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        """The page ``template`` with ``context``."""
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)


def check_same_origin(request: Request) -> None:
    """Refuse a form posted from another site (a page elsewhere cannot launch runs through this view).

    Browsers send ``Origin`` with every POST; a request without one (a script, a test client) passes.
    The origin must name this view: the request's host, the host a proxy forwarded
    (``X-Forwarded-Host``), or ``$SYNC_PIPELINES_HISTORY_URL``'s.
    """
    origin = request.headers.get("origin")
    if not origin:
        return
    allowed = {request.headers.get("host"), request.headers.get("x-forwarded-host"), urlsplit(history_url()).netloc}
    if urlsplit(origin).netloc not in allowed:
        raise HTTPException(403, f"a form posted from {origin} is refused: launch runs from this view's own pages")


def site_of(request: Request) -> Site:
    """The :class:`Site` of the app serving ``request``."""
    site: Site = request.app.state.site
    return site


def dagster_url_from_env() -> str:
    """``$SYNC_PIPELINES_DAGSTER_URL``, else the Dagster UI that ``make ui`` starts."""
    return os.environ.get(DAGSTER_URL_ENV, DEFAULT_DAGSTER_URL)
