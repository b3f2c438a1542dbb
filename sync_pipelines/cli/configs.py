"""``sync-pipelines validate | list | new | schema``: the sync configurations, their state, and new ones."""

from __future__ import annotations

import json
import re

import click

from sync_pipelines.cli.shared import (
    ExitCode,
    config_folder,
    exit_with_problems,
    load_configs,
    read_folder_or_exit,
    render_table,
    utc_text,
)
from sync_pipelines.cli.templates import render_template
from sync_pipelines.config import SyncConfig
from sync_pipelines.config.models import NAME_PATTERN
from sync_pipelines.config.schema import json_schema
from sync_pipelines.errors import ConfigError
from sync_pipelines.orchestration import get_instance, last_runs


@click.command()
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


@click.command("list")
@click.pass_context
def list_syncs(ctx: click.Context) -> None:
    """List the syncs: name, mode, schedule, and the status of their latest run."""
    configs = load_configs(ctx)
    with get_instance() as instance:
        latest = last_runs(instance, [cfg.name for cfg in configs])
    rows = [("NAME", "MODE", "SCHEDULE", "LAST STATUS", "LAST RUN")]
    for cfg in configs:
        last = latest.get(cfg.name)
        when = utc_text(last.started) if last is not None and last.started is not None else ""
        run = f"{when} ({last.run_id[:8]})" if last else "-"
        rows.append((cfg.name, cfg.mode.value, _schedule_text(cfg), last.status if last else "never run", run))
    click.echo(render_table(rows))


@click.command()
@click.argument("name")
@click.option(
    "--source",
    "source_kind",
    default="sql",
    show_default=True,
    help="Source kind: sql, elasticsearch or elasticsearch_hosts.",
)
@click.option(
    "--target", "target_kind", default="sql", show_default=True, help="Target kind: sql (cmdb for elasticsearch_hosts)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing file of that name.")
@click.pass_context
def new(ctx: click.Context, name: str, source_kind: str, target_kind: str, force: bool) -> None:
    """Write a commented template for a new sync NAME into the config folder.

    Fill in its `<fill in: ...>` values (`validate` names those left), then `check NAME` and `run NAME`.
    """
    if not re.match(NAME_PATTERN, name):
        click.echo(f"invalid sync name {name!r}: lower-case letters, digits and _, starting with a letter", err=True)
        ctx.exit(ExitCode.USAGE)
    folder = config_folder(ctx)
    try:
        text = render_template(name, source_kind, target_kind, folder)
    except ConfigError as exc:
        exit_with_problems(ctx, exc, ExitCode.USAGE)
    path = folder / f"{name}.yaml"
    if path.exists() and not force:
        click.echo(f"{path} already exists (use --force to overwrite it)", err=True)
        ctx.exit(ExitCode.FAILED)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}: fill in its <fill in: ...> values, then run `sync-pipelines validate`")


@click.command()
def schema() -> None:
    """Print the JSON Schema of a sync configuration file (for editor completion and checks)."""
    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


__all__ = ["list_syncs", "new", "schema", "validate"]
