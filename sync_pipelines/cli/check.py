"""``sync-pipelines check``: the connection test of syncs, one line per endpoint."""

from __future__ import annotations

import click

from sync_pipelines.cli.shared import ExitCode, select_syncs, verbose_option
from sync_pipelines.connectors.check import EndpointCheck
from sync_pipelines.kinds import check_sync


def _line(result: EndpointCheck, verbose: bool) -> str:
    verdict = f"{result.role.value:<6} {result.status.value:<6} {result.latency_ms:6.0f} ms"
    text = f"{result.sync:<24} {verdict}  {result.endpoint}"
    if result.error:
        text += f"\n    error: {result.error}"
    elif verbose:
        text += f"\n    {'; '.join(result.passed)}"
    return text


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Check every configured sync.")
@verbose_option("Also list what was verified on endpoints that passed.")
@click.pass_context
def check(ctx: click.Context, names: tuple[str, ...], check_all: bool, verbose: bool) -> None:
    """Test the source and target of the syncs NAMES (or --all).

    Resolves the secrets, connects, checks that the table and the mapped columns exist with types
    that can be cast, that the target key is a primary key or unique index, and that the account
    can read the source and write the target (test writes are rolled back). Prints OK or the error
    and the latency per endpoint, never a credential. Exit code 1 when any endpoint fails.
    """
    if bool(names) == check_all:
        click.echo("name the syncs to check, or use --all (not both)", err=True)
        ctx.exit(ExitCode.USAGE)
    selected = select_syncs(ctx, None if check_all else names)
    results = []
    for cfg in selected:
        for result in check_sync(cfg):
            results.append(result)
            click.echo(_line(result, verbose))
    failed = sum(1 for r in results if not r.ok)
    click.echo(f"{len(results) - failed} of {len(results)} endpoint(s) OK")
    ctx.exit(ExitCode.FAILED if failed else ExitCode.OK)
