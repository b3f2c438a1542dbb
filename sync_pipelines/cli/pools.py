"""``sync-pipelines pools``: set the queue's per-sync run limits on the Dagster instance and print them."""

from __future__ import annotations

import click

from sync_pipelines.cli.shared import load_configs
from sync_pipelines.orchestration import get_instance
from sync_pipelines.orchestration.names import pool_name
from sync_pipelines.orchestration.pools import apply_pool_limits, pool_limit


@click.command()
@click.pass_context
def pools(ctx: click.Context) -> None:
    """Give each sync's pool its limit on the instance ($DAGSTER_HOME): how many of its runs the queue starts
    at once (one, or `partitions.max_parallel` partition runs). `sync-pipelines ui` does this on start; run it
    once after changing `max_parallel` on a deployment whose daemon you start yourself."""
    configs = load_configs(ctx)
    with get_instance() as instance:
        apply_pool_limits(instance, configs)
    for cfg in configs:
        click.echo(f"{pool_name(cfg.name)}  {pool_limit(cfg)}")
