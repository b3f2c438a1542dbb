"""``sync-pipelines history | show | stats | export``: the run ledger and per-record history from the CLI.

Each command first closes ledger rows still ``running`` whose Dagster run has ended (the sweep), so
what it prints is the truth of the instance.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from sync_pipelines.cli.shared import ExitCode, json_option, load_configs, render_table, select_syncs
from sync_pipelines.config import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.errors import SweepError, SyncError
from sync_pipelines.history.export import ExportFormat, export_csv, export_xlsx, format_changes, format_key
from sync_pipelines.history.ledger import RunEntry, open_ledger, utcnow
from sync_pipelines.history.queries import Page, find_run, list_runs, runs_since
from sync_pipelines.history.records import RecordFilter, RunRecords
from sync_pipelines.history.stats import compute_partition_stats, compute_stats
from sync_pipelines.orchestration import get_instance
from sync_pipelines.orchestration.ledger_sensors import sweep
from sync_pipelines.types import RecordAction, RunStatus


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.2f}s" if value is not None else "-"


@contextmanager
def _ledger_errors(ctx: click.Context) -> Iterator[None]:
    """Print a ledger database error (naming the database) and exit 1."""
    try:
        yield
    except SyncError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        ctx.exit(ExitCode.FAILED)


def _sweep(configs: list[SyncConfig]) -> None:
    """Close the ledger rows of ended runs; a ledger that cannot be read is reported, and the others still swept."""
    with get_instance() as instance:
        try:
            closed = sweep(instance, configs)
        except SweepError as exc:
            closed = exc.closed
            for failure in exc.failures:
                click.echo(redact(f"warning: ledger not swept: {failure}"), err=True)
        for run_id in closed:
            click.echo(f"closed run {run_id}: its Dagster run had ended", err=True)


@click.command()
@click.argument("sync", required=False)
@click.option(
    "--status", type=click.Choice([s.value for s in RunStatus]), default=None, help="Only runs with this status."
)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Page number, from 1.")
@click.option("--page-size", type=click.IntRange(min=1, max=1000), default=20, show_default=True, help="Runs per page.")
@click.pass_context
def history(ctx: click.Context, sync: str | None, status: str | None, page: int, page_size: int) -> None:
    """List the runs (of SYNC, or of every sync), newest first, from the run ledger.

    A ledger database that cannot be read is reported (its syncs and URL) after the runs of the others; exit 1.
    """
    configs = select_syncs(ctx, None if sync is None else [sync])
    with _ledger_errors(ctx):
        _sweep(configs)
        result = list_runs(
            configs, status=RunStatus(status) if status else None, page=page, page_size=page_size, skip_unreachable=True
        )
    if not result.entries:
        click.echo(f"no runs (page {page}, {result.total} run(s) match)")
        _exit_if_unreachable(ctx, result)
        return
    rows: list[Sequence[Any]] = [
        ("RUN ID", "SYNC", "STATUS", "TRIGGER", "USER", "MODE", "STARTED (UTC)", "DURATION", "PROCESSED", "FAILED")
    ]
    for e in result.entries:
        status_text = e.status.value + (" (dry run)" if e.dry_run else "")
        rows.append(
            (
                e.run_id,
                e.sync,
                status_text,
                e.trigger.value,
                e.user or "-",
                e.mode,
                _when(e.started_at),
                _seconds(e.duration_s),
                e.counts["processed"],
                e.counts["failed"],
            )
        )
    click.echo(render_table(rows))
    click.echo(f"page {result.page} of {result.pages} ({result.total} run(s))")
    _exit_if_unreachable(ctx, result)


def _exit_if_unreachable(ctx: click.Context, result: Page) -> None:
    """Name each ledger database left out of ``result`` (its syncs and URL) and exit 1 if there is one."""
    for unreachable in result.unreachable:
        click.echo(f"error: {unreachable}", err=True)
    if result.unreachable:
        ctx.exit(ExitCode.FAILED)


def _summary_lines(entry: RunEntry) -> list[str]:
    counts = " ".join(f"{key}={value}" for key, value in entry.counts.items())
    lines = [
        f"run {entry.run_id}  sync {entry.sync}",
        f"  status: {entry.status.value}" + ("  (dry run, nothing written)" if entry.dry_run else ""),
        f"  trigger: {entry.trigger.value}  user: {entry.user or '-'}  mode: {entry.mode}"
        + (f"  parent run: {entry.parent_run_id}" if entry.parent_run_id else ""),
        f"  started: {_when(entry.started_at)} UTC  finished: {_when(entry.finished_at)} UTC  "
        f"duration: {_seconds(entry.duration_s)}",
        f"  {counts}",
    ]
    if entry.error:
        lines.append(f"  error: {redact(entry.error)}")
    return lines


@click.command()
@click.argument("run_id")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=click.Choice([a.value for a in RecordAction]),
    help="Only records with this action (repeatable).",
)
@click.option("--failed-only", is_flag=True, help="Only failed records (same as --action failed).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Records to print at most.")
@click.pass_context
def show(ctx: click.Context, run_id: str, actions: tuple[str, ...], failed_only: bool, limit: int) -> None:
    """Show one run (RUN_ID or a unique prefix of 8+ characters): who, what, when, and its records.

    Records stored by the run are listed with their field changes (before -> after) and errors;
    unchanged records are counted but only stored when the sync's `history.store_unchanged` is on.
    """
    configs = load_configs(ctx)
    wanted = [RecordAction(a) for a in actions]
    if failed_only:
        wanted = [RecordAction.FAILED]
    with _ledger_errors(ctx):
        _sweep(configs)
        cfg, entry = _find_run_or_exit(ctx, configs, run_id)
        click.echo("\n".join(_summary_lines(entry)))
        rows: list[Sequence[Any]] = [("KEY", "ENTITY", "ACTION", "TIME (UTC)", "CHANGES", "ERROR")]
        more = False
        with open_ledger(cfg) as ledger:
            chunk = min(limit + 1, 5000)
            for record in RunRecords(ledger, entry).iter_rows(RecordFilter(action=tuple(wanted)), chunk=chunk):
                if len(rows) > limit:
                    more = True
                    break
                _, changes = format_changes(record.get("changes"))
                rows.append(
                    (
                        redact(format_key(record["record_key"])),
                        record.get("entity") or "",
                        record["action"],
                        _when(record["recorded_at"]),
                        redact(changes.replace("\n", "; ")),
                        redact(record["error"] or ""),
                    )
                )
    if len(rows) == 1:
        click.echo("no stored records" + (" with action " + ", ".join(a.value for a in wanted) if wanted else ""))
        return
    click.echo(render_table(rows))
    if more:
        click.echo(f"... more records than --limit {limit}; export the run to see them all")


@click.command()
@click.argument("sync", required=False)
@click.option(
    "--days", type=click.IntRange(min=1), default=30, show_default=True, help="Window: runs started in the last N days."
)
@json_option("Print the statistics as JSON.")
@click.option(
    "--by-partition",
    is_flag=True,
    help="Per partition of partitioned syncs: runs, failed runs and the latest run (the batch view).",
)
@click.pass_context
def stats(ctx: click.Context, sync: str | None, days: int, as_json: bool, by_partition: bool) -> None:
    """Runs, success rate, records per action and p50/p95 duration per sync over a window."""
    configs = select_syncs(ctx, None if sync is None else [sync])
    with _ledger_errors(ctx):
        _sweep(configs)
        entries = runs_since(configs, utcnow() - dt.timedelta(days=days))
    if by_partition:
        _partition_stats(entries, days, as_json)
        return
    per_sync = compute_stats(entries, [cfg.name for cfg in configs])
    if as_json:
        data = {
            name: {
                "runs": s.runs,
                "success_rate": s.success_rate,
                "by_status": {k.value: v for k, v in s.by_status.items()},
                "records": s.records,
                "processed": s.processed,
                "p50_s": s.p50_s,
                "p95_s": s.p95_s,
            }
            for name, s in per_sync.items()
        }
        click.echo(json.dumps({"days": days, "syncs": data}))
        return
    rows: list[Sequence[Any]] = [
        (
            "SYNC",
            "RUNS",
            "SUCCESS",
            "FAILED RUNS",
            "CREATED",
            "UPDATED",
            "DELETED",
            "UNCHANGED",
            "FAILED RECS",
            "P50",
            "P95",
        )
    ]
    for name, s in per_sync.items():
        rate = f"{s.success_rate:.0%}" if s.success_rate is not None else "-"
        failed_runs = s.by_status.get(RunStatus.FAILED, 0) + s.by_status.get(RunStatus.CANCELLED, 0)
        r = s.records
        rows.append(
            (name, s.runs, rate, failed_runs, r["created"], r["updated"], r["deleted"], r["unchanged"], r["failed"],
             _seconds(s.p50_s), _seconds(s.p95_s))
        )  # fmt: skip
    click.echo(f"last {days} day(s)")
    click.echo(render_table(rows))


def _find_run_or_exit(ctx: click.Context, configs: Sequence[SyncConfig], run_id: str) -> tuple[SyncConfig, RunEntry]:
    """The ledger row of ``run_id`` (a unique prefix is enough); exits with a usage error when unknown."""
    found = find_run(configs, run_id)
    if found is None:
        click.echo(f"run {run_id!r} is not in the run ledger of any configured sync", err=True)
        raise click.exceptions.Exit(ExitCode.USAGE)
    return found


def _partition_stats(entries: Sequence[RunEntry], days: int, as_json: bool) -> None:
    parts = compute_partition_stats(entries)
    if as_json:
        data = [
            {
                "sync": p.sync,
                "partition": p.partition,
                "runs": p.runs,
                "failed_runs": p.failed_runs,
                "last_run_id": p.last.run_id if p.last else None,
                "last_status": p.last.status.value if p.last else None,
                "last_counts": p.last.counts if p.last else None,
                "needs_rerun": p.needs_rerun,
            }
            for p in parts
        ]
        click.echo(json.dumps({"days": days, "partitions": data}))
        return
    rows: list[Sequence[Any]] = [
        ("SYNC", "PARTITION", "RUNS", "FAILED RUNS", "LAST STATUS", "PROCESSED", "FAILED RECS", "LAST RUN")
    ]
    for p in parts:
        assert p.last is not None
        counts = p.last.counts
        rows.append(
            (p.sync, p.partition, p.runs, p.failed_runs, p.last.status.value, counts.get("processed", 0),
             counts.get("failed", 0), p.last.run_id)
        )  # fmt: skip
    click.echo(f"partitions run in the last {days} day(s)")
    click.echo(render_table(rows))
    failed = [p for p in parts if p.needs_rerun]
    if failed:
        click.echo(
            "re-run a failed partition on its own: "
            + "; ".join(f"sync-pipelines run {p.sync} --partition {p.partition}" for p in failed)
        )


@click.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), default="xlsx", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="File to write.")
@click.pass_context
def export(ctx: click.Context, run_id: str, fmt: str, output: Path) -> None:
    """Export a run's summary and records to an Excel workbook (summary + records sheets) or a CSV file."""
    configs = load_configs(ctx)
    with _ledger_errors(ctx):
        _sweep(configs)
        cfg, entry = _find_run_or_exit(ctx, configs, run_id)
        with open_ledger(cfg) as ledger:
            writer = export_xlsx if ExportFormat(fmt) is ExportFormat.XLSX else export_csv
            n = writer(output, ledger, entry)
    click.echo(f"wrote {output}: run {entry.run_id} ({entry.status.value}), {n} record(s)")


__all__ = ["export", "history", "show", "stats"]
