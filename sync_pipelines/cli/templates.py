"""Commented config templates written by ``sync-pipelines new``.

A template is the common part plus one block per endpoint kind: :data:`SOURCE_BLOCKS` and
:data:`TARGET_BLOCKS`, keyed by ``kind``. Supporting a new kind in ``new`` means adding its block
here (the kind must also be in the connector registry). Values the user must choose are
``<fill in: ...>`` placeholders, which ``validate`` reports by field until they are replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_pipelines.config.placeholders import placeholder
from sync_pipelines.config.schema import SCHEMA_FILENAME
from sync_pipelines.connectors.registry import SOURCES, TARGETS
from sync_pipelines.errors import ConfigError

SOURCE_BLOCKS: dict[str, str] = {
    "sql": f"""\
source:
  kind: sql
  # SQLAlchemy URL. Keep passwords out of the file: ${{VAR}} references are read from the
  # environment when the sync runs, e.g. postgresql://reader:${{{{ENV}}_SOURCE_PASSWORD}}@db:5432/erp,
  # mysql://reader:${{{{ENV}}_SOURCE_PASSWORD}}@db:3306/erp or sqlite:///data/erp.db
  url: "{placeholder("source SQLAlchemy URL")}"
  table: "{placeholder("source table")}"
  # schema: public
  # Or read a query instead of a table (remove `table`); filters and the cursor wrap it:
  # query: SELECT id, name, updated_at FROM orders WHERE deleted = 0
""",
    "elasticsearch": f"""\
source:
  kind: elasticsearch
  # Cluster URL and index pattern. Credentials come from the environment when the sync runs.
  endpoint: "{placeholder("Elasticsearch URL, e.g. https://es.example.com:9200")}"
  index: "{placeholder("index pattern, e.g. app-logs-*")}"
  # username: ${{{{ENV}}_ES_USER}}
  # password: ${{{{ENV}}_ES_PASSWORD}}
  # api_key: ${{{{ENV}}_ES_API_KEY}}
  request_timeout_s: 30
  # Only documents of the last 7d / 30d / 24h / 1h... of `time_field` (the cursor by default):
  # query_time_range: 30d
  # time_field: "@timestamp"
  # Documents are read with a point in time and `search_after`; columns are `_id` plus the mapped
  # fields (dotted paths for objects), so a sync keyed on the document id maps `id: _id`.
""",
}
"""Source block of the template per source ``kind``."""

TARGET_BLOCKS: dict[str, str] = {
    "sql": f"""\
target:
  kind: sql
  url: "{placeholder("target SQLAlchemy URL")}"
  table: "{placeholder("target table")}"
  # schema: public
  # Target columns that identify a record: the primary key or a unique index of the table.
  key: [id]
  # Create the table (key as primary key) when it does not exist yet.
  create: true
""",
}
"""Target block of the template per target ``kind``."""

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

_BODY = """
# Target column -> where its value comes from and the type it is cast to (string, integer, float,
# boolean, date, datetime, decimal(p,s)). `column: source_column` is a shorthand for {{source: ...}}.
# Leave `mapping` out to copy every source column as it is.
mapping:
  id: {{source: id, type: integer}}
  # name: {{type: string}}
  # amount: {{source: total, type: "decimal(12,2)"}}
  # updated_at: {{type: datetime}}
  # origin: {{constant: erp}}

# `full` reads every source row on each run. `incremental` reads rows after the last watermark of
# `cursor`, a column that grows whenever a row changes:
mode: full
# mode: incremental
# cursor: updated_at

# Only rows matching every condition are read (eq, ne, lt, le, gt, ge, in, not_in, is_null, not_null):
# filter:
#   - {{column: status, op: ne, value: cancelled}}

# Rows per batch; each batch is one transaction on the target.
batch_size: 10000
# Full syncs only: delete target rows gone from the source, refusing runs that would delete more
# than `max_delete_ratio` of the target.
delete_missing: false
max_delete_ratio: 0.2
# Share of records allowed to fail (bad values) before the run counts as failed instead of partial.
max_failure_ratio: 0.0

# Run on a cron (5-field, or Quartz such as `0 0 2 * * ?`) in `timezone`; leave out for manual runs.
# schedule:
#   cron: "0 2 * * *"
#   enabled: true
timezone: UTC
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
        ConfigError: when a kind is not available in this version or has no template.
    """
    problems = []
    for role, kind, registry, blocks in (
        ("source", source, SOURCES, SOURCE_BLOCKS),
        ("target", target, TARGETS, TARGET_BLOCKS),
    ):
        if kind not in registry:
            problems.append(
                f"{role} kind {kind!r} is not available in this version; available: {', '.join(sorted(registry))}"
            )
        elif kind not in blocks:
            problems.append(f"{role} kind {kind!r} has no template yet; available: {', '.join(sorted(blocks))}")
    if problems:
        raise ConfigError(problems)
    header = _HEADER.format(
        modeline=_modeline(folder),
        name=name,
        description=placeholder("one sentence shown on the job and asset in the Dagster UI"),
    )
    env = name.upper()
    source_block = SOURCE_BLOCKS[source].replace("{ENV}", env)
    return header + source_block + "\n" + TARGET_BLOCKS[target].replace("{ENV}", env) + _BODY.format()


__all__ = ["SOURCE_BLOCKS", "TARGET_BLOCKS", "render_template"]
