"""SQL table: a table or query of a SQL database into a SQL table (source kind ``sql``, target ``sql``)."""

from __future__ import annotations

from collections.abc import Mapping

from sync_pipelines.config.models import SqlSource, SqlTarget, SyncConfig
from sync_pipelines.config.placeholders import placeholder
from sync_pipelines.config.urls import display_url
from sync_pipelines.connectors.check import check_sql_source, check_sql_target
from sync_pipelines.connectors.sql_source import open_sql_source
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.kinds.base import Pipeline, SourceSummary, SyncKind

SOURCE_TEMPLATE = f"""\
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
"""

TABLE_TARGET_TEMPLATE = f"""\
target:
  kind: sql
  url: "{placeholder("target SQLAlchemy URL")}"
  table: "{placeholder("target table")}"
  # schema: public
  # Target columns that identify a record: the primary key or a unique index of the table.
  key: [id]
  # Create the table (key as primary key) when it does not exist yet.
  create: true
"""
"""The ``target:`` block of every kind that writes a SQL table."""

TABLE_BODY_TEMPLATE = """
# Target column -> where its value comes from and the type it is cast to (string, integer, float,
# boolean, date, datetime, decimal(p,s)). `column: source_column` is a shorthand for {source: ...}.
# Leave `mapping` out to copy every source column as it is.
mapping:
  id: {source: id, type: integer}
  # name: {type: string}
  # amount: {source: total, type: "decimal(12,2)"}
  # updated_at: {type: datetime}
  # origin: {constant: erp}

# `full` reads every source row on each run. `incremental` reads rows after the last watermark of
# `cursor`, a column that grows whenever a row changes:
mode: full
# mode: incremental
# cursor: updated_at

# Only rows matching every condition are read (eq, ne, lt, le, gt, ge, in, not_in, is_null, not_null):
# filter:
#   - {column: status, op: ne, value: cancelled}

# Rows per batch; each batch is one transaction on the target.
batch_size: 10000
# Delete target rows gone from the source, refusing runs that would delete more than
# `max_delete_ratio` of the target. An incremental sync also reads every source key to find them,
# on each run or less often (`delete_scan: every_run | hourly | daily`).
delete_missing: false
# delete_scan: every_run
max_delete_ratio: 0.2
# Share of records allowed to fail (bad values) before the run counts as failed instead of partial.
max_failure_ratio: 0.0

# Run on a cron (5-field, or Quartz such as `0 0 2 * * ?`) in `timezone`; leave out for manual runs.
# schedule:
#   cron: "0 2 * * *"
#   enabled: true
timezone: UTC
"""
"""What ``new`` writes after the endpoints of a table sync."""


def table_descriptions(cfg: SyncConfig) -> Mapping[str, str]:
    """The steps of a sync into a SQL table."""
    return {
        "extract": f"Read the source of sync `{cfg.name}` in batches of {cfg.batch_size} rows into "
        "Arrow IPC files staged for this run, from the last committed watermark (or all of it in a full sync).",
        "transform": f"Map the staged batches of sync `{cfg.name}` to the columns and types of "
        f"`{cfg.target.table}`; records that cannot be converted are kept with their reason.",
        "load": f"Upsert the transformed batches into `{cfg.target.table}`, one transaction per batch "
        "(rows, record outcomes and watermark together), and report counts and sample changes.",
    }


def sql_summary(cfg: SyncConfig) -> SourceSummary:
    """A SQL source: its table (schema-qualified) or query, and its dialect."""
    source = cfg.source
    assert isinstance(source, SqlSource)
    if source.table:
        what = f"{source.db_schema}.{source.table}" if source.db_schema else source.table
    else:
        what = "query: " + " ".join(str(source.query).split())
    dialect = source.url.split(":", 1)[0].split("+", 1)[0].lower()
    return SourceSummary(
        url=display_url(source.url), what=what, label=source.table or "a query", system=dialect or "sql"
    )


KIND = SyncKind(
    name="sql_table",
    title="SQL table",
    source_model=SqlSource,
    target_model=SqlTarget,
    reader=open_sql_source,
    writer=SqlTargetWriter,
    pipeline=Pipeline.TABLE,
    source_check=check_sql_source,
    target_check=check_sql_target,
    source_template=SOURCE_TEMPLATE,
    target_template=TABLE_TARGET_TEMPLATE,
    body_template=TABLE_BODY_TEMPLATE,
    descriptions=table_descriptions,
    summary=sql_summary,
    supports_parallel_read=True,
    keeps_conflicts=True,
)
"""A table or query of a SQL database into a SQL table."""

__all__ = ["KIND", "TABLE_BODY_TEMPLATE", "TABLE_TARGET_TEMPLATE", "sql_summary", "table_descriptions"]
