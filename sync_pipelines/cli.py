"""``sync-pipelines``: validate and list the sync configurations, run syncs through Dagster, run the demo.

Runs started here execute in this process on the persistent Dagster instance (``$DAGSTER_HOME``,
or ``./.dagster_home``), so they show in the UI with their metadata.

Exit codes: 0 completed, 1 failed (or invalid configuration), 2 usage error (e.g. an unknown sync),
3 partial (some records failed, within ``max_failure_ratio``).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import click

from sync_pipelines.cli_hosts import host_run_config, print_host_results
from sync_pipelines.cli_output import quiet_failures
from sync_pipelines.commands.common import load_or_exit, read_folder_or_exit
from sync_pipelines.config import SyncConfig, config_dir
from sync_pipelines.conflicts_cli import conflicts
from sync_pipelines.orchestration import RunReport, Tag, execute_sync, get_instance, last_runs
from sync_pipelines.orchestration.dead_runs import close_dead_runs
from sync_pipelines.orchestration.runs import UnknownPartitionError
from sync_pipelines.signals import restore_default_signals
from sync_pipelines.types import RunStatus


class ExitCode(IntEnum):
    """Process exit codes of the CLI."""

    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3


def exit_code(status: RunStatus) -> ExitCode:
    """0 for completed, 3 for partial, 1 for anything else."""
    if status is RunStatus.COMPLETED:
        return ExitCode.OK
    if status is RunStatus.PARTIAL:
        return ExitCode.PARTIAL
    return ExitCode.FAILED


def _config_folder(ctx: click.Context) -> Path:
    folder: Path | None = ctx.obj.get("config_dir") if ctx.obj else None
    return folder or config_dir()


def _load(ctx: click.Context) -> list[SyncConfig]:
    """The valid configurations, each problem of an invalid file printed on stderr (see ``load_or_exit``)."""
    return load_or_exit(ctx)


class _EchoHandler(logging.Handler):
    """Shows the warnings of sync_pipelines' own loggers (e.g. the instance settings written) on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _show_project_warnings() -> None:
    project_logger = logging.getLogger("sync_pipelines")
    if not any(isinstance(handler, _EchoHandler) for handler in project_logger.handlers):
        handler = _EchoHandler(logging.WARNING)
        project_logger.addHandler(handler)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of sync configurations [default: $SYNC_PIPELINES_CONFIG_DIR or ./syncs].",
)
@click.pass_context
def main(ctx: click.Context, config_dir: Path | None) -> None:
    """Data-sync pipelines (extract -> transform -> load) run by Dagster, one YAML file per sync."""
    restore_default_signals()
    _show_project_warnings()
    ctx.ensure_object(dict)
    ctx.obj["config_dir"] = config_dir


@main.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check every sync configuration; print each problem (file, field, message). Exit 1 if any file is invalid."""
    folder = read_folder_or_exit(ctx)
    for problem in folder.problems:
        click.echo(problem, err=True)
    invalid = f", {len(folder.invalid)} file(s) invalid" if folder.invalid else ""
    click.echo(f"{len(folder.configs)} sync configuration(s) valid{invalid}")
    if folder.invalid:
        ctx.exit(ExitCode.FAILED)


def _schedule_text(cfg: SyncConfig) -> str:
    if cfg.schedule is None:
        return "manual"
    state = "enabled" if cfg.schedule.enabled else "disabled"
    return f"{cfg.schedule.cron} ({state}, {cfg.timezone})"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@main.command("list")
@click.pass_context
def list_syncs(ctx: click.Context) -> None:
    """List the syncs: name, mode, schedule, and the status of their latest run."""
    configs = _load(ctx)
    with get_instance() as instance:
        latest = last_runs(instance, [cfg.name for cfg in configs])
    rows = [("NAME", "MODE", "SCHEDULE", "LAST STATUS", "LAST RUN")]
    for cfg in configs:
        last = latest.get(cfg.name)
        when = ""
        if last is not None and last.started is not None:
            when = datetime.fromtimestamp(last.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        run = f"{when} ({last.run_id[:8]})" if last else "-"
        rows.append((cfg.name, cfg.mode.value, _schedule_text(cfg), last.status if last else "never run", run))
    click.echo(_table(rows))


def _counts_text(report: RunReport, keys: Sequence[str]) -> str:
    return " ".join(f"{key}={report.counts.get(key, 0)}" for key in keys)


def _summary(report: RunReport) -> str:
    lines = [
        f"{report.sync}: {report.status.value} in {report.duration_s:.2f} s"
        + (" (dry run, nothing written)" if report.dry_run else "")
        + f"  run {report.run_id}",
        "  " + _counts_text(report, list(report.counts)),
        f"  watermark: {json.dumps(report.watermark, default=str, ensure_ascii=False)}",
    ]
    if report.error:
        lines.append(f"  error: {report.error}")
    return "\n".join(lines)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _run(
    ctx: click.Context,
    cfg: SyncConfig,
    *,
    full_sync: bool,
    dry_run: bool,
    user: str | None = None,
    extra: dict[str, Any] | None = None,
    partition: str | None = None,
) -> RunReport:
    with get_instance() as instance:
        # The op closes them too, whatever launched the run; here the user sees it.
        for closed in close_dead_runs(instance, [cfg], cfg.name):
            click.echo(f"closed run {closed.run_id}: {closed.error}", err=True)
        return execute_sync(
            cfg.name,
            instance=instance,
            config_directory=_config_folder(ctx),
            full_sync=full_sync,
            dry_run=dry_run,
            tags={Tag.USER.value: user or _os_user()},
            run_config=extra,
            partition=partition,
        )


@main.command()
@click.argument("name")
@click.option("--full-sync", is_flag=True, help="Ignore the watermark and read the whole source.")
@click.option("--dry-run", is_flag=True, help="Compute the plan and the sample changes, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: run_id, sync, status, counts, watermark.")
@click.option("--user", default=None, help="Who runs the sync, recorded in the run ledger [default: the OS user].")
@click.option("--host", "hosts", multiple=True, help="Host-metrics syncs: query this host IP (repeatable).")
@click.option(
    "--hosts-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Host-metrics syncs: query the IPs of this file (one per line, blank lines and # comments allowed).",
)
@click.option("--time-range", help="Host-metrics syncs: query range for this run (7d, 30d, 1h, 24h...).")
@click.option(
    "--partition", help="Partitioned syncs: run just this partition (e.g. 2024-03-01), as a re-run of one batch."
)
@click.option("-v", "--verbose", is_flag=True, help="Also print Dagster's failure records with their stack traces.")
@click.pass_context
def run(
    ctx: click.Context,
    name: str,
    full_sync: bool,
    dry_run: bool,
    as_json: bool,
    user: str | None,
    hosts: tuple[str, ...],
    hosts_file: Path | None,
    time_range: str | None,
    partition: str | None,
    verbose: bool,
) -> None:
    """Run the sync NAME through Dagster and print its outcome.

    For a host-metrics sync, --full-sync is a group full sync (new hosts are registered). Exit code 0
    when completed, 3 when partial, 1 when failed.
    """
    configs = {cfg.name: cfg for cfg in _load(ctx)}
    if name not in configs:
        known = ", ".join(sorted(configs)) or "(none)"
        click.echo(f"unknown sync {name!r}; known syncs: {known}", err=True)
        ctx.exit(ExitCode.USAGE)
    extra = host_run_config(configs[name], hosts, hosts_file, time_range)
    if partition is not None and configs[name].partitions is None:
        click.echo(f"sync {name} has no partitions; --partition needs `partitions:` in its file", err=True)
        ctx.exit(ExitCode.USAGE)
    try:
        run_sync = functools.partial(
            _run, ctx, configs[name], full_sync=full_sync, dry_run=dry_run, user=user, extra=extra, partition=partition
        )
        with quiet_failures(verbose):
            if as_json:
                # Only the JSON object goes to stdout; anything printed during the run goes to stderr.
                with contextlib.redirect_stdout(sys.stderr):
                    report = run_sync()
            else:
                report = run_sync()
    except UnknownPartitionError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(ExitCode.USAGE)
        return
    if as_json:
        click.echo(json.dumps(report.to_json(), default=str, ensure_ascii=False))
        if report.error:
            click.echo(f"error: {report.error}", err=True)
    else:
        click.echo(_summary(report))
        print_host_results(configs[name], report)
    ctx.exit(exit_code(report.status))


@main.command()
@click.option(
    "--directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo"),
    show_default=True,
    help="Where the demo source databases are created (kept when they exist).",
)
@click.pass_context
def demo(ctx: click.Context, directory: Path) -> None:
    """Create the demo databases when missing, then run every configured sync through Dagster."""
    from sync_pipelines.demo import build_demo_databases
    from sync_pipelines.demo_hosts import host_metrics_demo

    databases = build_demo_databases(directory)
    click.echo(f"demo databases in {directory}: {', '.join(sorted(databases))}")
    failed = []
    summary = []
    configs = _load(ctx)
    with host_metrics_demo(configs, directory) as es_note:
        if es_note:
            click.echo(es_note)
        for cfg in configs:
            report = _run(ctx, cfg, full_sync=False, dry_run=False)
            counts = _counts_text(report, ("processed", "created", "updated", "unchanged", "failed", "deleted"))
            line = f"{cfg.name:<24} {report.status.value:<10} {counts}  {report.duration_s:.2f}s"
            click.echo(line)
            summary.append(f"{line}  run {report.run_id}")
            if report.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                failed.append(cfg.name)
                if report.error:
                    click.echo(f"  error: {report.error}", err=True)
    # Dagster's step logs above interleave with the per-sync lines: repeat them together at the end.
    click.echo("\n== demo summary")
    for line in summary:
        click.echo(line)
    if failed:
        click.echo(f"failed: {', '.join(failed)}", err=True)
        ctx.exit(ExitCode.FAILED)


# check, status, new and schema live in sync_pipelines.commands; history, show, stats and export in
# sync_pipelines.cli_history.
from sync_pipelines.cli_history import COMMANDS as HISTORY_COMMANDS  # noqa: E402
from sync_pipelines.commands import register  # noqa: E402

register(main)
for _command in HISTORY_COMMANDS:
    main.add_command(_command)
main.add_command(conflicts)
