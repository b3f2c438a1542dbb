"""Read every sync configuration file once, and report every problem of every file together."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.placeholders import find_placeholders
from sync_pipelines.errors import ConfigError

CONFIG_DIR_ENV = "SYNC_PIPELINES_CONFIG_DIR"


def _union_fields(schema: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The fields holding a tagged union (``source``, ``target``, ``auth``...) and the tags of those unions.

    Read from the JSON Schema of :class:`SyncConfig`, so that a new kind's models need no entry here.
    """
    fields: set[str] = set()
    tags: set[str] = set()

    def unions(node: Any) -> list[dict[str, Any]]:
        if not isinstance(node, dict):
            return []
        found = [node["discriminator"]] if isinstance(node.get("discriminator"), dict) else []
        for option in node.get("anyOf", []):
            found += unions(option)
        return found

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                for union in unions(prop):
                    fields.add(name)
                    tags.update(union.get("mapping", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return frozenset(fields), frozenset(tags)


_UNION_FIELDS, _UNION_TAGS = _union_fields(SyncConfig.model_json_schema())


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
        # The folder is resolved, not the file: a link is named as the link, and a looping one resolves too.
        return str((path.parent.resolve() / path.name).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _format_validation(where: str, error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        parts = [str(p) for p in item["loc"]]
        loc = [
            part
            for i, part in enumerate(parts)
            if not (i and part in _UNION_TAGS and parts[i - 1] in _UNION_FIELDS) and not part.startswith("function-")
        ]
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


@dataclass(frozen=True)
class InvalidFile:
    """A configuration file that cannot be used, with every problem found in it."""

    path: Path
    problems: tuple[str, ...]

    @property
    def display(self) -> str:
        """The file as problems name it (relative to the working folder when inside it)."""
        return _display(self.path)


@dataclass(frozen=True)
class ConfigFolder:
    """What a folder of configurations holds: the valid syncs and the files that could not be used."""

    configs: tuple[SyncConfig, ...]
    invalid: tuple[InvalidFile, ...]

    @property
    def problems(self) -> list[str]:
        """Every problem of every invalid file, in file order."""
        return [problem for file in self.invalid for problem in file.problems]


def _config_files(folder: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` entry, sorted: files, links (broken ones included) and anything else so named."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))


def _parse_entry(path: Path) -> tuple[SyncConfig | None, list[str]]:
    if path.is_symlink() and not path.exists():
        try:
            target = os.readlink(path)
        except OSError as exc:
            target = f"an unreadable target ({exc.strerror})"
        return None, [f"{_display(path)}: broken symbolic link to {target}"]
    if path.is_dir():
        return None, [f"{_display(path)}: is a folder, not a configuration file"]
    if not path.is_file():  # reading a FIFO would wait for a writer for ever
        return None, [f"{_display(path)}: is not a regular file (a FIFO, socket or device), so it cannot be read"]
    return parse_config(path)


def read_configs(directory: Path | str | None = None) -> ConfigFolder:
    """Read every ``*.yaml`` / ``*.yml`` file of the folder, sorted by name, keeping the invalid ones apart.

    One invalid file never hides the others: each valid sync is returned, and each invalid file with
    its problems (file, field path, message). A sync name already used by an earlier file makes the
    later file invalid.

    Raises:
        ConfigError: the folder itself does not exist.
    """
    folder = Path(directory) if directory is not None else config_dir()
    if not folder.is_dir():
        raise ConfigError([f"{_display(folder)}: configuration folder does not exist (set {CONFIG_DIR_ENV})"])
    configs: list[SyncConfig] = []
    invalid: list[InvalidFile] = []
    owners: dict[str, str] = {}
    for path in _config_files(folder):
        config, errors = _parse_entry(path)
        if config is not None and config.name in owners:
            errors = [f"{_display(path)}: name: sync {config.name!r} is already defined in {owners[config.name]}"]
        if errors:
            invalid.append(InvalidFile(path, tuple(errors)))
            continue
        assert config is not None
        owners[config.name] = _display(path)
        configs.append(config)
    return ConfigFolder(tuple(configs), tuple(invalid))


def load_configs(directory: Path | str | None = None) -> list[SyncConfig]:
    """Load every ``*.yaml`` / ``*.yml`` file of the folder, sorted by name; every file must be valid.

    Raises:
        ConfigError: listing every problem of every file (file, field path, message), including
            sync names used by more than one file, broken links and unreadable files.
    """
    folder = read_configs(directory)
    if folder.invalid:
        raise ConfigError(folder.problems)
    return list(folder.configs)
