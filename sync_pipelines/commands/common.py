"""What the commands of this package share with the main CLI: the config folder and exit codes."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

import click

from sync_pipelines.config import ConfigFolder, SyncConfig, config_dir, read_configs
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


def read_folder_or_exit(ctx: click.Context) -> ConfigFolder:
    """Every file of the configuration folder, valid or not; exit 1 when the folder does not exist."""
    try:
        return read_configs(config_folder(ctx))
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        ctx.exit(Exit.FAILED)


def load_or_exit(ctx: click.Context) -> list[SyncConfig]:
    """The valid configurations; each problem of an invalid file is printed on stderr, never skipped silently.

    One invalid file does not stop the commands that use the others (``validate`` alone fails on it).
    """
    folder = read_folder_or_exit(ctx)
    for problem in folder.problems:
        click.echo(f"warning: {problem} (file not loaded)", err=True)
    return list(folder.configs)


__all__ = ["Exit", "config_folder", "load_or_exit", "read_folder_or_exit"]
