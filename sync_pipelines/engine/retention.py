"""Staging retention: what a run staged is kept for re-execution only as long as configured.

A completed load removes its run's batches (:func:`sync_pipelines.engine.staging.remove`). A failed
or killed run keeps them, so that re-executing it from its failed step does not read the source
again; they expire after ``$SYNC_PIPELINES_STAGING_RETENTION_HOURS`` (default 72) hours without a
write. :func:`clear_expired` removes expired run folders, never one whose run is still active.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sync_pipelines.engine.manifest import default_staging_root
from sync_pipelines.engine.staging import StagingPath, staging_path
from sync_pipelines.errors import ConfigError

RETENTION_ENV = "SYNC_PIPELINES_STAGING_RETENTION_HOURS"
DEFAULT_RETENTION = dt.timedelta(hours=72)


def retention() -> dt.timedelta:
    """How long a failed run's staged batches are kept: ``$SYNC_PIPELINES_STAGING_RETENTION_HOURS``, else 72 h.

    Raises:
        ConfigError: the variable is not a non-negative number of hours.
    """
    raw = os.environ.get(RETENTION_ENV)
    if not raw:
        return DEFAULT_RETENTION
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not hours >= 0:
        raise ConfigError([f"{RETENTION_ENV}: {raw!r} is not a number of hours (0 or more)"])
    return dt.timedelta(hours=hours)


@dataclass(frozen=True)
class StagedRun:
    """The staging folder of one run: its size and when anything in it was last written."""

    run_id: str
    path: Path
    size_bytes: int
    last_write: dt.datetime


def _walk(folder: Path) -> Iterator[os.stat_result]:
    for entry in folder.rglob("*"):
        try:
            yield entry.stat()
        except OSError:  # removed meanwhile
            continue


def staged_runs(root: StagingPath | None = None) -> list[StagedRun]:
    """Every run folder under the staging root (local staging only; a missing root has none)."""
    folder = staging_path(root if root is not None else default_staging_root())
    if not isinstance(folder, Path):
        raise ConfigError([f"staging at {folder} is not a local folder; clear it with the store's own lifecycle rules"])
    if not folder.is_dir():
        return []
    runs = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        stats = [run_dir.stat(), *_walk(run_dir)]
        runs.append(
            StagedRun(
                run_id=run_dir.name,
                path=run_dir,
                size_bytes=sum(s.st_size for s in stats[1:] if not _is_dir(s)),
                last_write=dt.datetime.fromtimestamp(max(s.st_mtime for s in stats), dt.UTC),
            )
        )
    return runs


def _is_dir(status: os.stat_result) -> bool:
    return stat.S_ISDIR(status.st_mode)


def clear_expired(
    *,
    active: Callable[[str], bool],
    older_than: dt.timedelta | None = None,
    root: StagingPath | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> list[StagedRun]:
    """Remove the run folders not written for ``older_than`` (default :func:`retention`); returns them.

    A folder whose run ``active(run_id)`` says is still queued or running is kept, however old.
    """
    limit = (now or dt.datetime.now(dt.UTC)) - (older_than if older_than is not None else retention())
    expired = [run for run in staged_runs(root) if run.last_write <= limit and not active(run.run_id)]
    if not dry_run:
        for run in expired:
            shutil.rmtree(run.path, ignore_errors=True)
    return expired


__all__ = ["DEFAULT_RETENTION", "RETENTION_ENV", "StagedRun", "clear_expired", "retention", "staged_runs"]
