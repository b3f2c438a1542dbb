"""Queries over every ledger of a set of syncs (syncs may keep their ledgers in different databases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.config.urls import display_url
from sync_pipelines.errors import ConnectorError, SyncError
from sync_pipelines.history.ledger import BackfillSummary, RunEntry, RunFilter, ledger_groups, open_ledger
from sync_pipelines.types import RunStatus


@dataclass
class Paged:
    """Where one page stands among the pages of a paged listing."""

    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class UnreachableLedger:
    """A ledger database that could not be read: the syncs whose runs it holds, where it is, and why."""

    syncs: tuple[str, ...]
    endpoint: str
    """The target URL as written, its password hidden."""
    error: str
    """The database error, with secrets removed."""

    def __str__(self) -> str:
        return f"ledger of {', '.join(self.syncs)} unreachable at {self.endpoint}: {self.error}"

    @classmethod
    def of(cls, group: Sequence[SyncConfig], error: SyncError) -> UnreachableLedger:
        """The ledger of ``group`` (syncs sharing one target database) that failed with ``error``."""
        endpoint = display_url(group[0].target.url)
        text = str(error)
        if isinstance(error, ConnectorError) and error.endpoint:
            text = text.removeprefix(f"{error.endpoint}: ")
        return cls(tuple(cfg.name for cfg in group), endpoint, redact(text))


@dataclass
class Page(Paged):
    """One page of runs, newest first, and the number of runs matching the filters."""

    entries: list[RunEntry] = field(default_factory=list)
    unreachable: list[UnreachableLedger] = field(default_factory=list)
    """Ledgers left out because their database could not be read (only with ``skip_unreachable``)."""


def list_runs(
    configs: Sequence[SyncConfig],
    *,
    status: RunStatus | None = None,
    page: int = 1,
    page_size: int = 20,
    where: RunFilter | None = None,
    skip_unreachable: bool = False,
) -> Page:
    """Page ``page`` (from 1) of the runs of ``configs``, newest first, optionally of one status and ``where``.

    Syncs may keep their ledgers in different databases. With ``skip_unreachable``, a database that
    cannot be read is left out and listed in :attr:`Page.unreachable`; the page holds the runs of the
    others.

    Raises:
        SyncError: a ledger database cannot be read (without ``skip_unreachable``).
    """
    if page < 1 or page_size < 1:
        raise ValueError("page and page size start at 1")
    wanted = page * page_size
    entries: list[RunEntry] = []
    unreachable: list[UnreachableLedger] = []
    total = 0
    for group in ledger_groups(list(configs)):
        names = [cfg.name for cfg in group]
        try:
            with open_ledger(group[0]) as ledger:
                count = ledger.count(syncs=names, status=status, where=where)
                found = ledger.select(syncs=names, status=status, limit=wanted, where=where)
        except SyncError as exc:
            if not skip_unreachable:
                raise
            unreachable.append(UnreachableLedger.of(group, exc))
            continue
        total += count
        entries.extend(found)
    entries.sort(key=lambda e: (e.started_at, e.run_id), reverse=True)
    start = (page - 1) * page_size
    return Page(
        total=total,
        page=page,
        page_size=page_size,
        entries=entries[start : start + page_size],
        unreachable=unreachable,
    )


def runs_since(configs: Sequence[SyncConfig], since: dt.datetime) -> list[RunEntry]:
    """Every run of ``configs`` started at or after ``since`` (naive UTC)."""
    entries: list[RunEntry] = []
    for group in ledger_groups(list(configs)):
        with open_ledger(group[0]) as ledger:
            entries.extend(ledger.select(syncs=[cfg.name for cfg in group], since=since))
    return entries


def find_run(configs: Sequence[SyncConfig], run_id: str) -> tuple[SyncConfig, RunEntry] | None:
    """The ledger row of ``run_id`` (a full id, or a unique prefix of at least 8 characters) and its sync."""
    unreachable: list[SyncError] = []
    for group in ledger_groups(list(configs)):
        names = {cfg.name: cfg for cfg in group}
        try:
            with open_ledger(group[0]) as ledger:
                entry = ledger.get(run_id)
                if entry is None and len(run_id) >= 8:
                    entry = ledger.get_by_prefix(run_id)
        except SyncError as exc:  # another database may hold the run: look there before failing
            unreachable.append(exc)
            continue
        if entry is not None and entry.sync in names:
            return names[entry.sync], entry
    if unreachable:
        raise unreachable[0]
    return None


def last_runs(configs: Sequence[SyncConfig], *, dry_run: bool | None = False) -> dict[str, RunEntry]:
    """The latest ledger row of each sync (by default the latest real run: dry runs left out)."""
    latest: dict[str, RunEntry] = {}
    for cfg in configs:
        with open_ledger(cfg) as ledger:
            found = ledger.select(syncs=[cfg.name], limit=1, where=RunFilter(dry_run=dry_run))
        if found:
            latest[cfg.name] = found[0]
    return latest


def list_backfills(configs: Sequence[SyncConfig]) -> list[BackfillSummary]:
    """Every backfill of the syncs of ``configs``, newest first, with its runs and record counts."""
    found: list[BackfillSummary] = []
    for group in ledger_groups(list(configs)):
        with open_ledger(group[0]) as ledger:
            found.extend(ledger.backfills([cfg.name for cfg in group]))
    found.sort(key=lambda b: b.started_at, reverse=True)
    return found
