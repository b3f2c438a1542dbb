"""Queries over every ledger of a set of syncs (syncs may keep their ledgers in different databases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.errors import SyncError
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


@dataclass
class Page(Paged):
    """One page of runs, newest first, and the number of runs matching the filters."""

    entries: list[RunEntry] = field(default_factory=list)


def list_runs(
    configs: Sequence[SyncConfig],
    *,
    status: RunStatus | None = None,
    page: int = 1,
    page_size: int = 20,
    where: RunFilter | None = None,
) -> Page:
    """Page ``page`` (from 1) of the runs of ``configs``, newest first, optionally of one status and ``where``."""
    if page < 1 or page_size < 1:
        raise ValueError("page and page size start at 1")
    wanted = page * page_size
    entries: list[RunEntry] = []
    total = 0
    for group in ledger_groups(list(configs)):
        names = [cfg.name for cfg in group]
        with open_ledger(group[0]) as ledger:
            total += ledger.count(syncs=names, status=status, where=where)
            entries.extend(ledger.select(syncs=names, status=status, limit=wanted, where=where))
    entries.sort(key=lambda e: (e.started_at, e.run_id), reverse=True)
    start = (page - 1) * page_size
    return Page(total=total, page=page, page_size=page_size, entries=entries[start : start + page_size])


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
