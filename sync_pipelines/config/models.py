"""Typed models of one sync configuration file (one YAML file per sync)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync_pipelines.config.cron import to_dagster_cron
from sync_pipelines.config.elasticsearch import CmdbTarget, ElasticsearchHostsSource, ElasticsearchSource
from sync_pipelines.config.identifiers import check_identifier, check_identifiers, check_optional_identifier
from sync_pipelines.config.operations import Partitions, RealtimeSensor, Retry
from sync_pipelines.config.rest import RestSource
from sync_pipelines.config.urls import check_url
from sync_pipelines.types import ConflictPolicy, DeleteScan, SyncDirection, SyncMode

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
SIMPLE_TYPES = ("string", "integer", "float", "boolean", "date", "datetime")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_type(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text == "decimal":
        return "decimal(38,9)"
    match = _DECIMAL_RE.match(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"decimal({precision},{scale}): precision must be 1-38 and scale <= precision")
        return f"decimal({precision},{scale})"
    if text not in SIMPLE_TYPES:
        raise ValueError(f"unknown type {value!r}; expected one of {', '.join(SIMPLE_TYPES)}, decimal(p,s)")
    return text


class FieldSpec(_Model):
    """How one target column is filled: from a source column (renamed and cast), or a constant."""

    source: str | None = Field(
        default=None,
        description="Source column to read. Defaults to the target column's own name unless `constant` is set.",
    )
    type: str | None = Field(
        default=None,
        description="Declared type to cast to: string, integer, float, boolean, date, datetime or decimal(p,s). "
        "Left out, the source's type is kept.",
    )
    default: Any = Field(default=None, description="Value used when the source value is NULL.")
    constant: Any = Field(default=None, description="A fixed value for every record; no source column is read.")

    _check = field_validator("type")(lambda cls, v: _check_type(v))
    _name = field_validator("source")(lambda cls, v: check_optional_identifier(v))

    @model_validator(mode="after")
    def _source_or_constant(self) -> FieldSpec:
        if self.constant is not None and self.source is not None:
            raise ValueError("set either `source` or `constant`, not both")
        return self


class SqlSource(_Model):
    """Read rows from a SQL database (any SQLAlchemy URL), from a table or a query."""

    kind: Literal["sql"] = "sql"
    url: str = Field(description="SQLAlchemy URL. Put secrets in `${ENV_VAR}` references, resolved at run time.")
    table: str | None = Field(default=None, description="Table to read. Set this or `query`.")
    db_schema: str | None = Field(default=None, alias="schema", description="Database schema of `table`.")
    query: str | None = Field(
        default=None, description="A SELECT statement to read instead of a table (filters and cursor wrap it)."
    )

    _url = field_validator("url")(lambda cls, v: check_url(v))
    _names = field_validator("table", "db_schema")(lambda cls, v: check_optional_identifier(v))

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of `table` or `query`")
        return self


class SqlTarget(_Model):
    """Write rows into a SQL table, upserting on its key columns."""

    kind: Literal["sql"] = "sql"
    url: str = Field(description="SQLAlchemy URL. Put secrets in `${ENV_VAR}` references, resolved at run time.")
    table: str = Field(description="Target table. Bookkeeping tables `_sync_*` are kept beside it.")
    db_schema: str | None = Field(default=None, alias="schema", description="Database schema of `table`.")
    key: list[str] = Field(min_length=1, description="Target columns that identify a record (unique on the target).")
    create: bool = Field(default=True, description="Create the table (key as primary key) when it does not exist yet.")

    _url = field_validator("url")(lambda cls, v: check_url(v))
    _names = field_validator("table", "db_schema")(lambda cls, v: check_optional_identifier(v))
    _key = field_validator("key")(lambda cls, v: check_identifiers(v))


Source = Annotated[SqlSource | ElasticsearchSource | ElasticsearchHostsSource | RestSource, Field(discriminator="kind")]
Target = Annotated[SqlTarget | CmdbTarget, Field(discriminator="kind")]

FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null"]


class FilterCondition(_Model):
    """One condition on a source column; a sync's conditions are combined with AND."""

    column: str = Field(description="Source column.")
    op: FilterOp = Field(default="eq", description="eq, ne, lt, le, gt, ge, in, not_in, is_null or not_null.")
    value: Any = Field(default=None, description="Compared value (a list for `in` / `not_in`).")

    _column = field_validator("column")(lambda cls, v: check_identifier(v))

    @model_validator(mode="after")
    def _value_fits_op(self) -> FilterCondition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"`{self.op}` needs a list `value`")
        if self.op in ("is_null", "not_null") and self.value is not None:
            raise ValueError(f"`{self.op}` takes no `value`")
        if self.op not in ("in", "not_in", "is_null", "not_null") and (
            self.value is None or isinstance(self.value, list)
        ):
            raise ValueError(f"`{self.op}` needs a single `value`")
        return self


class Schedule(_Model):
    """When the sync runs on its own."""

    cron: str = Field(description="5-field cron, or Quartz 6/7-field cron such as `0 0 2 * * ?`.")
    enabled: bool = Field(default=True, description="Default status of the schedule; the UI toggle still works.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        to_dagster_cron(value)
        return value

    @property
    def dagster_cron(self) -> str:
        """The schedule as the 5-field cron Dagster runs."""
        return to_dagster_cron(self.cron)


class HistoryOptions(_Model):
    """What the per-record history (`_sync_records`) keeps of each run."""

    store_unchanged: bool = Field(
        default=False,
        description="Also store one row per unchanged record (they are always counted). Off keeps the table small.",
    )
    entity: str | None = Field(
        default=None,
        description="Entity type written beside each record (e.g. `users`, `departments`); default: the target table.",
    )


class Parallel(_Model):
    """Split a full read into key-range chunks that are extracted, transformed and loaded in parallel processes."""

    workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Worker processes per stage; 1 keeps the serial path. At most the CPU cores.",
    )
    chunks: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Key ranges the source is split into (about equal row counts); default: `workers`.",
    )

    @model_validator(mode="after")
    def _enough_chunks(self) -> Parallel:
        if self.chunks is not None and self.chunks < self.workers:
            raise ValueError(f"chunks: {self.chunks} is fewer than workers ({self.workers}); some would stay idle")
        return self

    @property
    def chunk_count(self) -> int:
        """How many key ranges a full read is split into."""
        return self.chunks or self.workers


class SyncConfig(_Model):
    """One sync: read a source, map the fields, write the target."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique name; names the Dagster job and asset.")
    description: str = Field(default="", description="Shown on the job and asset in the Dagster UI.")
    source: Source
    target: Target
    mapping: dict[str, FieldSpec] = Field(
        default_factory=dict,
        description="Target column -> field spec (or just the source column's name). Empty: copy every source column.",
    )
    filter: list[FilterCondition] = Field(default_factory=list, description="Source conditions, combined with AND.")
    mode: SyncMode = Field(default=SyncMode.FULL, description="`incremental` (on `cursor`) or `full`.")
    cursor: str | None = Field(
        default=None, description="Source column that grows when a row changes (e.g. updated_at). Incremental only."
    )
    batch_size: int = Field(default=10_000, ge=1, le=1_000_000, description="Rows per batch and per transaction.")
    delete_missing: bool = Field(
        default=False,
        description="Delete target rows whose key is gone from the source (or no longer matches `filter`). A full "
        "sync compares the keys it read; an incremental one (SQL sources) also scans the source's keys, see "
        "`delete_scan`.",
    )
    delete_scan: DeleteScan = Field(
        default=DeleteScan.EVERY_RUN,
        description="Mode `incremental` with `delete_missing`: when a run also reads every source key to find "
        "deletes. `every_run` (default), `hourly` (the first run of each UTC hour) or `daily` (the first run of "
        "each day in `timezone`); the other runs delete nothing.",
    )
    max_delete_ratio: float = Field(
        default=0.2, ge=0, le=1, description="Refuse a run that would delete more than this share of the target."
    )
    max_failure_ratio: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A run with more failed records than this share is `failed`, else `partial`.",
    )
    on_conflict: ConflictPolicy = Field(
        default=ConflictPolicy.MANUAL,
        description="A record changed on both sides since the last write: `manual` keeps the target and records "
        "a conflict for a person to resolve; `source_wins` overwrites the target; `target_wins` keeps the target.",
    )
    direction: SyncDirection = Field(
        default=SyncDirection.ONE_WAY,
        description="`one_way` (source to target) or `bidirectional`: changes made on the target are written "
        "back to the source as well (SQL tables on both sides, mode `full`, deletes only with `delete_missing`).",
    )
    block_on_conflicts: bool = Field(
        default=False,
        description="Make the `no_open_conflicts` check blocking, so downstream assets wait while conflicts are open.",
    )
    schedule: Schedule | None = Field(default=None, description="Cron schedule; none means manual runs only.")
    timezone: str = Field(default="UTC", description="IANA timezone of the schedule, e.g. Asia/Shanghai.")
    history: HistoryOptions = Field(
        default_factory=HistoryOptions, description="What the per-record history of each run keeps."
    )
    partitions: Partitions | None = Field(
        default=None, description="Daily or hourly partitions of the cursor, for backfills. Incremental only."
    )
    realtime: RealtimeSensor | None = Field(
        default=None, description="Start a run whenever the source's `MAX(cursor)` moves. Incremental only."
    )
    retry: Retry = Field(default_factory=Retry, description="Retries of a step after a transient connector error.")
    parallel: Parallel | None = Field(
        default=None,
        description="Full reads only (mode `full`, or a forced full sync): split the source into ranges of the "
        "single-column key, processed by several worker processes. SQL source and target, one-way syncs.",
    )

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    _cursor = field_validator("cursor")(lambda cls, v: check_optional_identifier(v))

    @field_validator("mapping")
    @classmethod
    def _mapped_names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        check_identifiers(list(value))
        return value

    @field_validator("mapping", mode="before")
    @classmethod
    def _mapping_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"source": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SyncConfig:
        # Errors raised here have no location of their own: each message starts with its field.
        if self.mode is SyncMode.INCREMENTAL and not self.cursor:
            raise ValueError("cursor: mode `incremental` needs a `cursor` column")
        if self.mode is SyncMode.FULL and self.cursor:
            raise ValueError("cursor: only used with mode `incremental`")
        _check_host_metrics(self)
        if self.partitions is not None and self.mode is not SyncMode.INCREMENTAL:
            raise ValueError("partitions: need mode `incremental` (partitions are windows of the cursor)")
        if self.realtime is not None and self.mode is not SyncMode.INCREMENTAL:
            raise ValueError("realtime: needs mode `incremental` (the sensor polls the cursor's maximum)")
        if (self.partitions is not None or self.realtime is not None) and not isinstance(self.source, SqlSource):
            raise ValueError("partitions/realtime: only SQL sources can read a cursor window or poll its maximum")
        if self.delete_missing and self.mode is SyncMode.INCREMENTAL and not isinstance(self.source, SqlSource):
            raise ValueError(
                "delete_missing: with mode `incremental` needs a SQL source (each run scans the source's keys)"
            )
        if self.delete_scan is not DeleteScan.EVERY_RUN and not (
            self.delete_missing and self.mode is SyncMode.INCREMENTAL
        ):
            raise ValueError("delete_scan: only used by mode `incremental` with `delete_missing: true`")
        if self.direction is SyncDirection.BIDIRECTIONAL:
            self._check_bidirectional()
        if self.parallel is not None:
            self._check_parallel()
        if self.mapping:
            missing = [k for k in self.target.key if k not in self.mapping]
            if missing:
                raise ValueError(f"target.key: column(s) {', '.join(missing)} are not in `mapping`")
            constant_keys = [k for k in self.target.key if self.field(k).constant is not None]
            if constant_keys:
                raise ValueError(f"target.key: column(s) {', '.join(constant_keys)} cannot be constants")
        return self

    def _check_bidirectional(self) -> None:
        if self.source.kind != "sql" or self.source.table is None:
            raise ValueError("direction: `bidirectional` needs a SQL source `table` (not a query)")
        if self.mode is not SyncMode.FULL:
            raise ValueError("direction: `bidirectional` needs mode `full` (edits on the target have no cursor)")
        if self.filter:
            raise ValueError(
                "direction: `bidirectional` cannot use `filter` (rows created on the target may not match)"
            )
        constants = [name for name, spec in self.mapping.items() if spec.constant is not None]
        if constants:
            raise ValueError(f"direction: `bidirectional` cannot write constant column(s) {', '.join(constants)} back")

    def _check_parallel(self) -> None:
        if not isinstance(self.source, SqlSource) or not isinstance(self.target, SqlTarget):
            raise ValueError("parallel: needs a SQL source and a SQL target (chunks are ranges of a SQL key)")
        if len(self.target.key) != 1:
            raise ValueError("parallel: needs a single-column target.key (chunks are ranges of that column)")
        if self.direction is SyncDirection.BIDIRECTIONAL:
            raise ValueError("parallel: not available with direction `bidirectional`")

    def field(self, target_column: str) -> FieldSpec:
        """The field spec of a mapped target column."""
        return self.mapping[target_column]

    def source_column(self, target_column: str) -> str | None:
        """The source column feeding ``target_column`` (None for a constant)."""
        if not self.mapping:
            return target_column
        spec = self.field(target_column)
        if spec.constant is not None:
            return None
        return spec.source or target_column

    @property
    def source_key(self) -> list[str]:
        """Source columns that carry the target key, in key order."""
        return [self.source_column(k) or k for k in self.target.key]

    @property
    def history_entity(self) -> str:
        """The entity the run history files this sync's records under: ``history.entity``, else the target table."""
        return self.history.entity or self.target.table


def _check_host_metrics(config: SyncConfig) -> None:
    """A CMDB target takes host metrics (and only it does); they need no mapping, cursor or deletes."""
    hosts_source = isinstance(config.source, ElasticsearchHostsSource)
    if isinstance(config.target, CmdbTarget) != hosts_source:
        raise ValueError(
            "target.kind: a `cmdb` target goes with an `elasticsearch_hosts` source, and that source with that target"
        )
    if hosts_source:
        for name in ("mapping", "cursor", "filter", "delete_missing"):
            if getattr(config, name):
                raise ValueError(f"{name}: not used by a host-metrics sync (the CMDB columns are fixed)")
        if config.mode is not SyncMode.FULL:
            raise ValueError("mode: a host-metrics sync always reads its whole time range (`full`)")
    elif config.filter and not isinstance(config.source, SqlSource):
        raise ValueError("filter: only SQL sources take filters")


def decimal_parts(type_name: str) -> tuple[int, int] | None:
    """``(precision, scale)`` of a ``decimal(p,s)`` type name, else None."""
    match = _DECIMAL_RE.match(type_name)
    return (int(match.group(1)), int(match.group(2))) if match else None


__all__ = [
    "FieldSpec",
    "FilterCondition",
    "HistoryOptions",
    "Parallel",
    "Schedule",
    "SqlSource",
    "SqlTarget",
    "SyncConfig",
    "decimal_parts",
]
