"""``sync-pipelines run | demo``: run syncs through Dagster in this process and print their outcome.

Runs execute on the persistent Dagster instance (``$DAGSTER_HOME``, or ``./.dagster_home``), so they
show in the UI with their metadata.

What a run prints on stderr is Dagster's log, without the failure records the summary repeats. A
step that fails on a handled error (``dagster.Failure`` with a one-line description naming the sync,
the stage and the cause) makes Dagster's console logger print the failure with its stack trace, the
run's failure with the same message, and a line per step left out. The summary already prints that
description as ``error: ...``, so by default those records are dropped, and any other ``Stack
Trace:`` block is cut; ``run -v`` prints them all. The full trace always stays in the run's event log.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from sync_pipelines.cli.hosts import host_run_config, print_host_results
from sync_pipelines.cli.shared import (
    ExitCode,
    config_folder,
    demo_dir_option,
    exit_code,
    json_option,
    load_configs,
    select_sync,
    verbose_option,
)
from sync_pipelines.config import SyncConfig
from sync_pipelines.errors import UnknownPartitionError
from sync_pipelines.orchestration import RunReport, Tag, execute_sync, get_instance
from sync_pipelines.orchestration.dead_runs import close_dead_runs
from sync_pipelines.types import RunStatus

_REPEATED = (" - STEP_FAILURE - ", " - RUN_FAILURE - ", "were not executed:", "failed: ['")
"""Records the summary repeats: the step and run failures, and the steps skipped after them."""
_TRACE = "\nStack Trace:"


class TraceFilter:
    """A text stream passing on what is written to it, minus step-failure records and stack traces."""

    def __init__(self, target: TextIO):
        self._target = target

    def write(self, text: str) -> int:
        """Pass ``text`` on (one log record per call, as logging handlers write) unless it is filtered out."""
        if not any(marker in text for marker in _REPEATED):
            head, cut, _ = text.partition(_TRACE)
            self._target.write(head + ("\n" if cut else ""))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


@contextlib.contextmanager
def quiet_failures(verbose: bool) -> Iterator[None]:
    """Filter stderr through :class:`TraceFilter` for the duration, unless ``verbose``."""
    if verbose:
        yield
        return
    with contextlib.redirect_stderr(TraceFilter(sys.stderr)):
        yield


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
            config_directory=config_folder(ctx),
            full_sync=full_sync,
            dry_run=dry_run,
            tags={Tag.USER.value: user or _os_user()},
            run_config=extra,
            partition=partition,
        )


@click.command()
@click.argument("name")
@click.option("--full-sync", is_flag=True, help="Ignore the watermark and read the whole source.")
@click.option("--dry-run", is_flag=True, help="Compute the plan and the sample changes, write nothing.")
@json_option("Print one JSON object: run_id, sync, status, counts, watermark.")
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
@verbose_option("Also print Dagster's failure records with their stack traces.")
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
    cfg = select_sync(ctx, name)
    extra = host_run_config(cfg, hosts, hosts_file, time_range)
    if partition is not None and cfg.partitions is None:
        click.echo(f"sync {name} has no partitions; --partition needs `partitions:` in its file", err=True)
        ctx.exit(ExitCode.USAGE)
    try:
        run_sync = functools.partial(
            _run, ctx, cfg, full_sync=full_sync, dry_run=dry_run, user=user, extra=extra, partition=partition
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
        print_host_results(cfg, report)
    ctx.exit(exit_code(report.status))


@click.command()
@demo_dir_option("--directory", "Where the demo source databases are created (kept when they exist).")
@click.pass_context
def demo(ctx: click.Context, directory: Path) -> None:
    """Create the demo databases when missing, then run every configured sync through Dagster."""
    from sync_pipelines.demo.directory_api import directory_api_demo
    from sync_pipelines.demo.hosts import host_metrics_demo
    from sync_pipelines.demo.sources import build_demo_databases

    databases = build_demo_databases(directory)
    click.echo(f"demo databases in {directory}: {', '.join(sorted(databases))}")
    failed = []
    summary = []
    configs = load_configs(ctx)
    with host_metrics_demo(configs, directory) as es_note, directory_api_demo(configs, directory) as api_note:
        for note in (es_note, api_note):
            if note:
                click.echo(note)
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


__all__ = ["TraceFilter", "demo", "quiet_failures", "run"]
