"""Read every sync configuration file once, and report every problem of every file together."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.placeholders import find_placeholders
from sync_pipelines.errors import ConfigError

CONFIG_DIR_ENV = "SYNC_PIPELINES_CONFIG_DIR"
_UNION_TAGS = {"sql", "elasticsearch", "elasticsearch_hosts", "cmdb"}


def config_dir() -> Path:
    """The folder of sync configurations: ``$SYNC_PIPELINES_CONFIG_DIR`` or ``./syncs``."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or "syncs")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one silently."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _format_validation(where: str, error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"] if str(p) not in _UNION_TAGS and not str(p).startswith("function-")]
        message = item["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        message = message[:1].lower() + message[1:]
        lines.append(f"{where}: {'.'.join(loc)}: {message}" if loc else f"{where}: {message}")
    return lines


def parse_config(path: Path) -> tuple[SyncConfig | None, list[str]]:
    """Parse one file. Returns the config (None if invalid) and its problems."""
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{where}: cannot read file: {exc}"]
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        return None, [f"{where}: {line}invalid YAML: {problem}"]
    if data is None:
        return None, [f"{where}: file is empty; expected a mapping of sync settings"]
    if not isinstance(data, dict):
        return None, [f"{where}: expected a mapping of sync settings, got {type(data).__name__}"]
    unfilled = find_placeholders(data)
    if unfilled:
        return None, [f"{where}: {problem}" for problem in unfilled]
    try:
        return SyncConfig.model_validate(data), []
    except ValidationError as exc:
        return None, _format_validation(where, exc)


def load_configs(directory: Path | str | None = None) -> list[SyncConfig]:
    """Load every ``*.yaml`` / ``*.yml`` file of the folder, sorted by name.

    Raises:
        ConfigError: listing every problem of every file (file, field path, message), including
            sync names used by more than one file.
    """
    folder = Path(directory) if directory is not None else config_dir()
    if not folder.is_dir():
        raise ConfigError([f"{_display(folder)}: configuration folder does not exist (set {CONFIG_DIR_ENV})"])
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    configs: list[SyncConfig] = []
    problems: list[str] = []
    owners: dict[str, str] = {}
    for path in files:
        config, errors = parse_config(path)
        problems.extend(errors)
        if config is None:
            continue
        if config.name in owners:
            problems.append(f"{_display(path)}: name: sync {config.name!r} is already defined in {owners[config.name]}")
            continue
        owners[config.name] = _display(path)
        configs.append(config)
    if problems:
        raise ConfigError(problems)
    return configs
