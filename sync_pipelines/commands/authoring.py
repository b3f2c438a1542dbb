"""``sync-pipelines new`` (a commented config template) and ``sync-pipelines schema`` (its JSON Schema)."""

from __future__ import annotations

import json
import re

import click

from sync_pipelines.commands.common import Exit, config_folder
from sync_pipelines.commands.templates import render_template
from sync_pipelines.config.models import NAME_PATTERN
from sync_pipelines.config.schema import json_schema
from sync_pipelines.errors import ConfigError


@click.command()
@click.argument("name")
@click.option("--source", "source_kind", default="sql", show_default=True, help="Source kind: sql or elasticsearch.")
@click.option("--target", "target_kind", default="sql", show_default=True, help="Target kind, e.g. sql.")
@click.option("--force", is_flag=True, help="Overwrite an existing file of that name.")
@click.pass_context
def new(ctx: click.Context, name: str, source_kind: str, target_kind: str, force: bool) -> None:
    """Write a commented template for a new sync NAME into the config folder.

    Fill in its `<fill in: ...>` values (`validate` names those left), then `check NAME` and `run NAME`.
    """
    if not re.match(NAME_PATTERN, name):
        click.echo(f"invalid sync name {name!r}: lower-case letters, digits and _, starting with a letter", err=True)
        ctx.exit(Exit.USAGE)
    folder = config_folder(ctx)
    try:
        text = render_template(name, source_kind, target_kind, folder)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        ctx.exit(Exit.USAGE)
    path = folder / f"{name}.yaml"
    if path.exists() and not force:
        click.echo(f"{path} already exists (use --force to overwrite it)", err=True)
        ctx.exit(Exit.FAILED)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}: fill in its <fill in: ...> values, then run `sync-pipelines validate`")


@click.command()
def schema() -> None:
    """Print the JSON Schema of a sync configuration file (for editor completion and checks)."""
    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))
