"""The hosts section of a host-metrics run's page: the dropped file it came from, its skipped lines, and
every host by what happened to it.

The dropped file and its skipped lines (with their reasons) are the run's tags, set by the file-drop
sensor and read from Dagster's GraphQL API. The hosts are the run's rows of ``_sync_host_results`` in
the CMDB, which holds every host of a real run, the unchanged ones included (the record history keeps
unchanged hosts only with ``history.store_unchanged``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.config import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.cmdb import RESULTS_TABLE, CmdbWriter
from sync_pipelines.engine.host_files import HOST_FILE_TAG, SKIPPED_LINES_TAG, skipped_lines
from sync_pipelines.errors import LaunchError, SyncError
from sync_pipelines.history.ledger import RunEntry
from sync_pipelines.types import HostStatus, RecordAction
from sync_pipelines.web.dagster_api import DagsterApi
from sync_pipelines.web.host_lists import takes_host_list

HOST_ROWS = 500
"""Hosts listed one by one on the page (failures first); the lists by outcome name every host."""


@dataclass
class HostRun:
    """What the run page shows of a host-metrics run."""

    host_file: str | None = None
    skipped: list[str] = field(default_factory=list)
    lists: dict[str, list[str]] = field(default_factory=dict)
    """Outcome (:data:`OUTCOMES`: registered, created, updated, unchanged, failed, no_data, not_in_pool) -> host IPs."""
    hosts: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    notes: list[str] = field(default_factory=list)
    """What could not be read (Dagster or the CMDB did not answer), said plainly."""


def outcome_of(row: dict[str, Any]) -> str:
    """The list a host belongs to: ``registered`` in hosts_pool, else the action on its server_resources row
    (``created``, ``updated``, ``unchanged``) for a successful host, else its status."""
    status = HostStatus(row["status"])
    if status is not HostStatus.SUCCESS:
        return status.value
    if row.get("registered"):
        return "registered"
    return str(row["action"])


OUTCOMES = (
    "registered",
    RecordAction.CREATED.value,
    RecordAction.UPDATED.value,
    RecordAction.UNCHANGED.value,
    *(s.value for s in HostStatus if s is not HostStatus.SUCCESS),
)


def host_run(cfg: SyncConfig, entry: RunEntry, dagster: DagsterApi) -> HostRun | None:
    """The hosts section of ``entry``'s page; None for a sync that is not a host-metrics one."""
    if not takes_host_list(cfg):
        return None
    found = HostRun()
    try:
        tags = dagster.run_tags(entry.run_id)
    except LaunchError as exc:
        tags = {}
        found.notes.append(f"The run's tags (its dropped file) could not be read: {exc}")
    found.host_file = tags.get(HOST_FILE_TAG)
    found.skipped = skipped_lines(tags.get(SKIPPED_LINES_TAG, "[]"))
    if entry.dry_run:
        found.notes.append(f"A dry run records no host in {RESULTS_TABLE}: its planned hosts are its records below.")
        return found
    writer = CmdbWriter(cfg)
    try:
        rows = writer.host_results(entry.run_id)
    except SyncError as exc:
        found.notes.append(f"The hosts of the run could not be read: {redact(str(exc))}")
        return found
    finally:
        writer.engine.dispose()
    found.total = len(rows)
    found.lists = {name: [] for name in OUTCOMES}
    for row in rows:
        found.lists.setdefault(outcome_of(row), []).append(row["host_ip"])
    ordered = sorted(rows, key=lambda r: (r["status"] != HostStatus.FAILED.value, r["host_ip"]))
    found.hosts = [
        {**r, "outcome": outcome_of(r), "error": redact(r["error"]) if r["error"] else None} for r in ordered
    ]
    found.hosts = found.hosts[:HOST_ROWS]
    return found
