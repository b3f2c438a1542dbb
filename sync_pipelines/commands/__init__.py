"""CLI commands beyond running syncs: ``check``, ``status``, ``new`` and ``schema``."""

from __future__ import annotations

import click

from sync_pipelines.commands.authoring import new, schema
from sync_pipelines.commands.check import check
from sync_pipelines.commands.status import status


def register(group: click.Group) -> None:
    """Add the commands of this package to the ``sync-pipelines`` group."""
    for command in (check, status, new, schema):
        group.add_command(command)


__all__ = ["register"]
