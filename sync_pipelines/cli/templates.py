"""Commented config templates written by ``sync-pipelines new``.

A template is a common header plus what the kind of sync declares (:mod:`sync_pipelines.kinds`): its
source block, its target block and the rest of its settings. Values the user must choose are
``<fill in: ...>`` placeholders, which ``validate`` reports by field until they are replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_pipelines.config.placeholders import placeholder
from sync_pipelines.config.schema import SCHEMA_FILENAME
from sync_pipelines.errors import ConfigError
from sync_pipelines.kinds import KINDS, known_kinds

_HEADER = """\
{modeline}# Sync `{name}`, written by `sync-pipelines new`.
#
# Replace every <fill in: ...> value, then:
#   sync-pipelines validate          # the file is well-formed
#   sync-pipelines check {name}      # source and target answer, tables and columns fit
#   sync-pipelines run {name}        # run it through Dagster
# Reload the code location in the Dagster UI to see the new job `sync_{name}`.

name: {name}
description: >-
  {description}

"""


def _modeline(folder: Path) -> str:
    """The YAML language server's schema comment, when the project has the schema file."""
    schema = Path.cwd() / SCHEMA_FILENAME
    if not schema.is_file():
        return ""
    relative = os.path.relpath(schema.resolve(), folder.resolve())
    return f"# yaml-language-server: $schema={Path(relative).as_posix()}\n"


def render_template(name: str, source: str, target: str, folder: Path) -> str:
    """The commented template of a new sync ``name`` reading a ``source`` kind into a ``target`` kind.

    Raises:
        ConfigError: when the source kind is not available in this version, or does not go with the target kind.
    """
    kind = KINDS.get(source)
    if kind is None:
        raise ConfigError([f"source kind {source!r} is not available in this version; available: {known_kinds()}"])
    if target != kind.target_kind:
        raise ConfigError(
            [
                f"target kind {target!r} does not go with a {source!r} source ({kind.title}); "
                f"use --target {kind.target_kind}"
            ]
        )
    header = _HEADER.format(
        modeline=_modeline(folder),
        name=name,
        description=placeholder("one sentence shown on the job and asset in the Dagster UI"),
    )
    blocks = kind.source_template + "\n" + kind.target_template + kind.body_template
    return header + blocks.replace("{ENV}", name.upper())


__all__ = ["render_template"]
