"""CLI commands beyond running syncs: ``check``, ``status``, ``new``, ``schema``, ``worker``, ``ui`` and ``staging``."""

from __future__ import annotations

import click

from sync_pipelines.commands.authoring import new, schema
from sync_pipelines.commands.check import check
from sync_pipelines.commands.staging import staging
from sync_pipelines.commands.status import status
from sync_pipelines.commands.ui import ui
from sync_pipelines.commands.worker import worker


def register(group: click.Group) -> None:
    """Add the commands of this package to the ``sync-pipelines`` group."""
    for command in (check, status, new, schema, worker, ui, staging):
        group.add_command(command)


__all__ = ["register"]
