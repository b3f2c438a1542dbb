"""``sync-pipelines status``: the progress of a running or finished run, read from the Dagster instance."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from sync_pipelines.cli.shared import ExitCode, json_option, load_configs, utc_text
from sync_pipelines.engine.progress import ProgressSnapshot
from sync_pipelines.orchestration import get_instance, report_for_run
from sync_pipelines.orchestration.dead_runs import close_dead_runs
from sync_pipelines.orchestration.progress import RunProgress, latest_run_id, run_progress


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "not started"
    return utc_text(timestamp)


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _stage_line(snapshot: ProgressSnapshot, finished: bool) -> str:
    rows = (
        f"{snapshot.rows} of {snapshot.total} rows ({snapshot.percent:.0f}%)"
        if snapshot.total is not None
        else (f"{snapshot.rows} rows")
    )
    text = f"  {snapshot.stage:<10} {snapshot.batches} batch(es), {rows}, {snapshot.rows_per_s:.0f} rows/s"
    if snapshot.eta_s is not None and not finished and snapshot.total is not None and snapshot.rows < snapshot.total:
        text += f", ETA {_duration(snapshot.eta_s)}"
    return text


def render(progress: RunProgress, result: str = "") -> str:
    """The text ``status`` prints for a run."""
    state = progress.sync_status or progress.run_status.lower()
    end = progress.ended if progress.ended is not None else time.time()
    elapsed = f", {_duration(end - progress.started)}" if progress.started is not None else ""
    lines = [
        f"run {progress.run_id}  sync {progress.sync or '-'}",
        f"  status     {state} (Dagster: {progress.run_status}), started {_when(progress.started)}{elapsed}",
    ]
    if not progress.stages:
        lines.append("  no batch finished yet")
    lines.extend(_stage_line(s, progress.finished) for s in progress.stages.values())
    if result:
        lines.append(f"  result     {result}")
    return "\n".join(lines)


def progress_json(progress: RunProgress, counts: dict[str, int] | None, error: str | None) -> dict[str, Any]:
    """The JSON object ``status --json`` prints."""
    return {
        "run_id": progress.run_id,
        "sync": progress.sync,
        "status": progress.sync_status or progress.run_status.lower(),
        "dagster_status": progress.run_status,
        "started": progress.started,
        "ended": progress.ended,
        "stages": {
            name: {
                "batches": s.batches,
                "rows": s.rows,
                "total": s.total,
                "rows_per_s": round(s.rows_per_s, 1),
                "eta_s": None if progress.finished or s.eta_s is None else round(s.eta_s, 1),
            }
            for name, s in progress.stages.items()
        },
        "counts": counts,
        "error": error,
    }


@click.command()
@click.argument("run_or_sync")
@json_option("Print one JSON object instead of text.")
@click.pass_context
def status(ctx: click.Context, run_or_sync: str, as_json: bool) -> None:
    """Show the progress of run RUN_OR_SYNC, or of the latest run of the sync of that name.

    For each stage that has finished a batch: batches done, rows so far (of the total, when the
    source could count it), rows/s and, while running, the ETA. A finished run also shows its counts.
    """
    with get_instance() as instance:
        # The configurations only serve to close the ledger rows of dead runs: read quietly.
        for closed in close_dead_runs(instance, load_configs(ctx, quiet=True)):
            click.echo(f"closed run {closed.run_id}: {closed.error}", err=True)
        try:
            progress = run_progress(instance, run_or_sync)
        except KeyError:
            latest = latest_run_id(instance, run_or_sync)
            if latest is None:
                click.echo(f"no run with id {run_or_sync!r} and no run of a sync named {run_or_sync!r}", err=True)
                raise SystemExit(ExitCode.USAGE) from None
            progress = run_progress(instance, latest)
        counts: dict[str, int] | None = None
        error: str | None = None
        if progress.finished and progress.sync:
            report = report_for_run(instance, progress.run_id, progress.sync)
            counts, error = dict(report.counts), report.error
    if as_json:
        click.echo(json.dumps(progress_json(progress, counts, error), ensure_ascii=False))
        return
    result = " ".join(f"{key}={value}" for key, value in (counts or {}).items())
    if error:
        result += f"\n  error      {error}"
    click.echo(render(progress, result))
