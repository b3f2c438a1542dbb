"""``sync-pipelines conflicts list|show|resolve``: records changed both by the source and on the target.

Errors exit 1 (unknown or already resolved conflicts, unreachable target); an unknown sync is a
usage error (exit 2), reported like every other command's.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from sync_pipelines.cli.shared import json_option, render_table, select_sync
from sync_pipelines.connectors.conflict_store import Conflict
from sync_pipelines.engine.conflicts import describe, get_conflict, list_conflicts, resolve_conflicts
from sync_pipelines.errors import SyncError
from sync_pipelines.types import ConflictChoice, ConflictStatus


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _key(conflict: Conflict) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in conflict.record_key.items())


@click.group()
def conflicts() -> None:
    """List, show and resolve conflicts: records that both the source and a person on the target changed."""


@conflicts.command("list")
@click.argument("sync")
@click.option("--all", "show_all", is_flag=True, help="Include resolved conflicts.")
@json_option("Print a JSON list of conflicts.")
@click.pass_context
def list_command(ctx: click.Context, sync: str, show_all: bool, as_json: bool) -> None:
    """List the open conflicts of SYNC (with --all, resolved ones too)."""
    cfg = select_sync(ctx, sync)
    try:
        found = list_conflicts(cfg, status=None if show_all else ConflictStatus.OPEN)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([describe(c) for c in found], default=str, ensure_ascii=False))
        return
    if not found:
        click.echo(f"{cfg.name}: no {'' if show_all else 'open '}conflicts")
        return
    rows = [("ID", "KEY", "FIELDS", "STATUS", "DETECTED (UTC)", "RESOLUTION")]
    for c in found:
        resolution = f"{c.resolution.value if c.resolution else '-'} by {c.resolved_by}" if c.resolved_by else ""
        detected = c.detected_at.strftime("%Y-%m-%d %H:%M:%S")
        rows.append((str(c.id), _key(c), ", ".join(c.changed_fields), c.status.value, detected, resolution))
    click.echo(render_table(rows))


@conflicts.command()
@click.argument("sync")
@click.argument("conflict_id", type=int)
@json_option("Print the conflict as one JSON object.")
@click.pass_context
def show(ctx: click.Context, sync: str, conflict_id: int, as_json: bool) -> None:
    """Show conflict CONFLICT_ID of SYNC: each differing field's source, target and baseline value."""
    cfg = select_sync(ctx, sync)
    try:
        conflict = get_conflict(cfg, conflict_id)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(describe(conflict), default=str, ensure_ascii=False))
        return
    click.echo(f"conflict {conflict.id} of {cfg.name}: {_key(conflict)} ({conflict.status.value})")
    click.echo(f"  found by run {conflict.run_id}, first detected {conflict.detected_at:%Y-%m-%d %H:%M:%S} UTC")
    if conflict.resolved_by:
        choice = conflict.resolution.value if conflict.resolution else "-"
        click.echo(f"  resolved: {choice} by {conflict.resolved_by} at {conflict.resolved_at:%Y-%m-%d %H:%M:%S} UTC")
    rows = [("FIELD", "SOURCE", "TARGET", "BASELINE")]
    for name, values in conflict.differences().items():
        baseline = _show(values["baseline"]) if values["baseline_known"] else "(changed on both sides)"
        rows.append((name, _show(values["source"]), _show(values["target"]), baseline))
    click.echo("\n".join("  " + line for line in render_table(rows).splitlines()))


@conflicts.command()
@click.argument("sync")
@click.argument("conflict_ids", nargs=-1, type=int)
@click.option("--all", "resolve_all", is_flag=True, help="Resolve every open conflict of SYNC.")
@click.option(
    "--choice",
    type=click.Choice([c.value for c in ConflictChoice]),
    required=True,
    help="keep_source writes the source's values; keep_target keeps the target's.",
)
@click.option("--by", "resolved_by", required=True, help="Who resolves them (stored with each conflict).")
@click.pass_context
def resolve(
    ctx: click.Context, sync: str, conflict_ids: tuple[int, ...], resolve_all: bool, choice: str, resolved_by: str
) -> None:
    """Resolve conflicts CONFLICT_IDS (or --all) of SYNC, and record the check's new state in Dagster."""
    from sync_pipelines.orchestration import get_instance
    from sync_pipelines.orchestration.checks import record_conflict_check

    cfg = select_sync(ctx, sync)
    if resolve_all == bool(conflict_ids):
        raise click.UsageError("give conflict ids, or --all (not both)")
    try:
        resolution = resolve_conflicts(
            cfg,
            None if resolve_all else list(conflict_ids),
            ConflictChoice(choice),
            resolved_by,
            run_id=f"cli-{uuid.uuid4().hex[:12]}",
        )
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    with get_instance() as instance:
        passed = record_conflict_check(instance, cfg)
    ids = ", ".join(map(str, resolution.resolved))
    click.echo(f"{cfg.name}: resolved conflict(s) {ids} with {resolution.choice.value} (by {resolved_by})")
    state = "passed" if passed else "still failing"
    click.echo(f"  {resolution.remaining_open} open conflict(s) left; check no_open_conflicts {state}")
