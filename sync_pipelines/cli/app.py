"""The ``sync-pipelines`` command group: its global options, and every command registered on it.

Runs started by the commands execute in this process on the persistent Dagster instance
(``$DAGSTER_HOME``, or ``./.dagster_home``), so they show in the UI with their metadata.

Exit codes (:class:`~sync_pipelines.cli.shared.ExitCode`): 0 completed, 1 failed (or invalid
configuration), 2 usage error (e.g. an unknown sync), 3 partial (some records failed, within
``max_failure_ratio``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sync_pipelines.cli.check import check
from sync_pipelines.cli.configs import list_syncs, new, schema, validate
from sync_pipelines.cli.conflicts import conflicts
from sync_pipelines.cli.history import export, history, show, stats
from sync_pipelines.cli.pools import pools
from sync_pipelines.cli.run import demo, run
from sync_pipelines.cli.staging import staging
from sync_pipelines.cli.status import status
from sync_pipelines.cli.ui import ui
from sync_pipelines.cli.worker import worker
from sync_pipelines.signals import restore_default_signals

COMMANDS: tuple[click.Command, ...] = (
    validate,
    list_syncs,
    run,
    demo,
    check,
    status,
    new,
    schema,
    worker,
    pools,
    ui,
    staging,
    history,
    show,
    stats,
    export,
    conflicts,
)
"""Every command of ``sync-pipelines`` (``--help`` lists them alphabetically)."""


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


for _command in COMMANDS:
    main.add_command(_command)


__all__ = ["COMMANDS", "main"]
