"""Invalid configuration files, shown in the UI instead of failing the whole code location.

Each file that cannot be used becomes an asset of the group ``invalid_sync_configs`` whose
description lists the file's problems, with the asset check ``config_valid`` that fails with the
same message whenever it is executed. The valid syncs of the folder load as usual.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    AssetSpec,
    MetadataValue,
    asset_check,
)

from sync_pipelines.config.loader import InvalidFile

INVALID_GROUP_NAME = "invalid_sync_configs"
"""Asset group of the invalid configuration files."""
INVALID_KEY_PREFIX = "invalid_sync_config"
"""First part of the asset key of an invalid file: ``invalid_sync_config/<file name>``."""
CONFIG_CHECK_NAME = "config_valid"
"""The asset check of an invalid file; it always fails with the file's problems."""

logger = logging.getLogger(__name__)


def invalid_file_keys(invalid: Sequence[InvalidFile]) -> list[AssetKey]:
    """One asset key per file, from its name (``orders.yaml`` -> ``invalid_sync_config/orders_yaml``), unique."""
    keys: list[AssetKey] = []
    seen: set[str] = set()
    for file in invalid:
        base = re.sub(r"[^A-Za-z0-9_]", "_", file.path.name) or "file"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        keys.append(AssetKey([INVALID_KEY_PREFIX, name]))
    return keys


def _message(file: InvalidFile) -> str:
    return "\n".join(file.problems)


def _verbatim(file: InvalidFile) -> str:
    """The problems as a markdown code block: a name in them may hold markdown (a backtick, a star)."""
    return f"~~~~text\n{_message(file)}\n~~~~"


def build_invalid_file_asset(file: InvalidFile, key: AssetKey) -> AssetSpec:
    """The asset standing for one invalid file: its description says what is wrong."""
    return AssetSpec(
        key,
        group_name=INVALID_GROUP_NAME,
        description=f"Invalid sync configuration {file.display}; its sync is not loaded until it is fixed:\n\n"
        + _verbatim(file),
        metadata={"file": MetadataValue.path(str(file.path)), "problems": MetadataValue.md(_verbatim(file))},
        tags={"sync/config": "invalid"},
    )


def build_invalid_file_check(file: InvalidFile, key: AssetKey) -> AssetChecksDefinition:
    """The check ``config_valid`` of an invalid file: it fails with the file's problems."""

    @asset_check(
        asset=key,
        name=CONFIG_CHECK_NAME,
        description=f"Fails while {file.display} is invalid; fix the file and reload the code location.",
    )
    def _config_valid() -> AssetCheckResult:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=_message(file),
            metadata={"file": MetadataValue.path(str(file.path))},
        )

    return _config_valid


def invalid_file_definitions(invalid: Sequence[InvalidFile]) -> tuple[list[AssetSpec], list[AssetChecksDefinition]]:
    """The assets and checks of every invalid file; each problem is also logged when the location loads."""
    specs: list[AssetSpec] = []
    checks: list[AssetChecksDefinition] = []
    for file, key in zip(invalid, invalid_file_keys(invalid), strict=True):
        for problem in file.problems:
            logger.error("invalid sync configuration, not loaded: %s", problem)
        specs.append(build_invalid_file_asset(file, key))
        checks.append(build_invalid_file_check(file, key))
    return specs, checks


__all__ = [
    "CONFIG_CHECK_NAME",
    "INVALID_GROUP_NAME",
    "INVALID_KEY_PREFIX",
    "build_invalid_file_asset",
    "build_invalid_file_check",
    "invalid_file_definitions",
    "invalid_file_keys",
]
