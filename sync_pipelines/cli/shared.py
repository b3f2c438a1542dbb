"""What every command of ``sync-pipelines`` shares: exit codes, the configuration loader, the sync
selector, the table renderer and the options used by more than one command."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from sync_pipelines.config import ConfigFolder, SyncConfig, config_dir, read_configs
from sync_pipelines.errors import ConfigError, UnknownSyncError
from sync_pipelines.types import RunStatus

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    """Process exit codes of every command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3


def exit_code(status: RunStatus) -> ExitCode:
    """0 for completed, 3 for partial, 1 for anything else."""
    if status is RunStatus.COMPLETED:
        return ExitCode.OK
    if status is RunStatus.PARTIAL:
        return ExitCode.PARTIAL
    return ExitCode.FAILED


# ----------------------------------------------------------------------------- configurations


def given_config_dir(ctx: click.Context) -> Path | None:
    """The ``--config-dir`` of the main group, None when it was not given."""
    root = ctx.find_root()
    folder: Path | None = root.obj.get("config_dir") if root.obj else None
    return folder


def config_folder(ctx: click.Context) -> Path:
    """The ``--config-dir`` of the main group, else ``$SYNC_PIPELINES_CONFIG_DIR`` or ``./syncs``."""
    return given_config_dir(ctx) or config_dir()


def exit_with_problems(ctx: click.Context, error: ConfigError, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    """Print each problem of ``error`` on stderr and exit with ``code``."""
    for line in error.problems:
        click.echo(line, err=True)
    ctx.exit(code)


def read_folder_or_exit(ctx: click.Context) -> ConfigFolder:
    """Every file of the configuration folder, valid or not; exit 1 when the folder does not exist."""
    try:
        return read_configs(config_folder(ctx))
    except ConfigError as exc:
        exit_with_problems(ctx, exc)


def load_configs(ctx: click.Context, *, quiet: bool = False) -> list[SyncConfig]:
    """The valid configurations; each problem of an invalid file is printed on stderr, never skipped silently.

    One invalid file does not stop the commands that use the others (``validate`` alone fails on it).
    ``quiet`` is for commands that only use the configurations on the side (``status`` closing the
    ledger rows of dead runs): nothing is printed, and a missing folder gives no configuration.
    """
    if quiet:
        try:
            return list(read_configs(config_folder(ctx)).configs)
        except ConfigError:
            return []
    folder = read_folder_or_exit(ctx)
    for problem in folder.problems:
        click.echo(f"warning: {problem} (file not loaded)", err=True)
    return list(folder.configs)


def select_syncs(ctx: click.Context, names: Sequence[str] | None) -> list[SyncConfig]:
    """The configurations of the syncs ``names`` (every sync when None), in the order given.

    Unknown names exit with a usage error (2) naming each of them and the known syncs.
    """
    configs = {cfg.name: cfg for cfg in load_configs(ctx)}
    if names is None:
        return list(configs.values())
    unknown = [name for name in names if name not in configs]
    if unknown:
        click.echo(str(UnknownSyncError(unknown, configs)), err=True)
        ctx.exit(ExitCode.USAGE)
    return [configs[name] for name in dict.fromkeys(names)]


def select_sync(ctx: click.Context, name: str) -> SyncConfig:
    """The configuration of sync ``name``; exits 2 naming the known syncs when there is none."""
    [cfg] = select_syncs(ctx, [name])
    return cfg


# ----------------------------------------------------------------------------- output


def render_table(rows: Sequence[Sequence[object]]) -> str:
    """``rows`` (the first one the header) as left-aligned columns two spaces apart."""
    text = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in text
    )


def utc_text(timestamp: float) -> str:
    """A POSIX timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ----------------------------------------------------------------------------- options


def json_option(help: str) -> Callable[[F], F]:
    """``--json`` (parameter ``as_json``): print JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def verbose_option(help: str) -> Callable[[F], F]:
    """``-v/--verbose``."""
    return click.option("-v", "--verbose", is_flag=True, help=help)


def demo_dir_option(name: str, help: str) -> Callable[[F], F]:
    """The demo folder (``./demo`` by default) under the option ``name``."""
    return click.option(
        name, type=click.Path(path_type=Path, file_okay=False), default=Path("demo"), show_default=True, help=help
    )


__all__ = [
    "ExitCode",
    "config_folder",
    "demo_dir_option",
    "exit_code",
    "exit_with_problems",
    "given_config_dir",
    "json_option",
    "load_configs",
    "read_folder_or_exit",
    "render_table",
    "select_sync",
    "select_syncs",
    "utc_text",
    "verbose_option",
]
