"""What the commands of this package share with the main CLI: the config folder and exit codes."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

import click

from sync_pipelines.config import SyncConfig, config_dir, load_configs
from sync_pipelines.errors import ConfigError


class Exit(IntEnum):
    """Exit codes (the same as the main CLI's)."""

    OK = 0
    FAILED = 1
    USAGE = 2


def config_folder(ctx: click.Context) -> Path:
    """The ``--config-dir`` of the main group, else ``$SYNC_PIPELINES_CONFIG_DIR`` or ``./syncs``."""
    root = ctx.find_root()
    folder: Path | None = root.obj.get("config_dir") if root.obj else None
    return folder or config_dir()


def load_or_exit(ctx: click.Context) -> list[SyncConfig]:
    """Every configuration, or exit 1 printing each problem on its own line."""
    try:
        return load_configs(config_folder(ctx))
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        ctx.exit(Exit.FAILED)


__all__ = ["Exit", "config_folder", "load_or_exit"]
