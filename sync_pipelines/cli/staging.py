"""``sync-pipelines staging list | clean``: the staged batches kept for re-execution, and their retention."""

from __future__ import annotations

import datetime as dt

import click

from sync_pipelines.cli.shared import exit_with_problems
from sync_pipelines.engine.retention import RETENTION_ENV, clear_expired, retention, staged_runs
from sync_pipelines.errors import ConfigError
from sync_pipelines.orchestration import get_instance
from sync_pipelines.orchestration.staging_cleanup import run_is_active


def _size(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size} bytes"


@click.group()
def staging() -> None:
    """Staged batches of failed runs, kept for re-execution for a retention period."""


@staging.command("list")
@click.pass_context
def list_staging(ctx: click.Context) -> None:
    """List the run folders of the staging area with their size and last write."""
    try:
        runs = staged_runs()
    except ConfigError as exc:
        exit_with_problems(ctx, exc)
    for run in runs:
        click.echo(f"{run.run_id}  {_size(run.size_bytes):>10}  last write {run.last_write:%Y-%m-%d %H:%M:%S} UTC")
    click.echo(f"{len(runs)} run folder(s), {_size(sum(r.size_bytes for r in runs))}")


@staging.command("clean")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Hours without a write after which a folder expires [default: ${RETENTION_ENV} or 72].",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
def clean(ctx: click.Context, older_than: float | None, dry_run: bool) -> None:
    """Remove the staged batches of runs that expired; never those of a run still in progress."""
    try:
        window = dt.timedelta(hours=older_than) if older_than is not None else retention()
        with get_instance() as instance:
            cleared = clear_expired(
                active=lambda run_id: run_is_active(instance, run_id), older_than=window, dry_run=dry_run
            )
    except ConfigError as exc:
        exit_with_problems(ctx, exc)
    verb = "would remove" if dry_run else "removed"
    for run in cleared:
        click.echo(f"{verb} {run.path} ({_size(run.size_bytes)})")
    click.echo(f"{verb} {len(cleared)} run folder(s), {_size(sum(r.size_bytes for r in cleared))}")


__all__ = ["staging"]
