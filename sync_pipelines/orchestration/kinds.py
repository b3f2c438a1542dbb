"""What differs between the kinds of sync in Dagster, declared once per kind.

Every kind is built by the one op factory (:mod:`sync_pipelines.orchestration.ops`) and gets the same
three steps, ``<name>_extract -> _transform -> _load``; an :class:`OpKind` names what is its own:
the run-config class of its ops, its launchpad form, the descriptions of its steps and the metadata its
load step adds to the result. :func:`run_config_mapping` turns the launchpad form into run config, for
the graph asset and the job alike. The engine picks each kind's stages itself (:mod:`sync_pipelines.engine.runner`).

No postponed annotations here: Dagster reads the `Config` class of an op or config mapping from its annotation.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    Config,
    ConfigMapping,
    MetadataValue,
    OpExecutionContext,
    TableColumn,
    TableRecord,
    TableSchema,
    config_mapping,
)
from pydantic import Field

from sync_pipelines.config.elasticsearch import ElasticsearchHostsSource
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.engine.host_metrics import is_host_metrics
from sync_pipelines.engine.manifest import SyncResult
from sync_pipelines.orchestration.host_sensors import HOST_FILE_TAG, INVALID_LINES_TAG
from sync_pipelines.orchestration.names import Stage
from sync_pipelines.types import HostStatus

FULL_SYNC_DESCRIPTION = (
    "Ignore the watermark and read the whole source (a full sync also deletes target rows missing "
    "from the source when the sync has `delete_missing`)."
)
DRY_RUN_DESCRIPTION = "Compute the plan and the sample changes, write nothing, keep the watermark."
USER_DESCRIPTION = (
    "Who launches this run. Recorded as the run's user (tag `sync/user`, the run ledger) when Dagster "
    "knows no identity, as open-source Dagster never does."
)


class SyncRunConfig(Config):
    """Options of one sync run, given to each of its three ops."""

    full_sync: bool = Field(default=False, description=FULL_SYNC_DESCRIPTION)
    dry_run: bool = Field(default=False, description=DRY_RUN_DESCRIPTION)
    user: str = Field(default="", description=USER_DESCRIPTION)

    def engine_options(self) -> dict[str, Any]:
        """Run options of this kind beyond ``full_sync`` and ``dry_run`` (keyword arguments of ``RunOptions``)."""
        return {}


class HostRunConfig(SyncRunConfig):
    """Options of one host-metrics run (the same for its three ops)."""

    full_sync: bool = Field(
        default=False,
        description="Group full sync: query every host of the configured `group` in Elasticsearch and register "
        "the hosts missing from hosts_pool (ignored when `host_ip_list` is given).",
    )
    host_ip_list: list[str] | None = Field(
        default=None,
        description="Query only these host IPs (a manual run). Hosts missing from hosts_pool are reported "
        "`not_in_pool` and not written. Empty: the configured selection (the pool, or the group).",
    )
    query_time_range: str | None = Field(
        default=None, description="Overrides the configured range for this run: 7d, 30d, 1h, 24h..."
    )

    def engine_options(self) -> dict[str, Any]:
        return {
            "host_ips": list(self.host_ip_list) if self.host_ip_list else None,
            "query_time_range": self.query_time_range or None,
        }


def _host_launchpad(cfg: SyncConfig) -> type[SyncRunConfig]:
    """The launchpad form of one host-metrics sync: ``host_ip_list`` and ``query_time_range`` have defaults
    (no hosts: the configured selection; the configured range), so the launchpad pre-fills them."""
    assert isinstance(cfg.source, ElasticsearchHostsSource)
    configured = cfg.source.query_time_range

    class HostLaunchpadConfig(HostRunConfig):
        # Plain defaults, so the launchpad shows both (it ignores a default_factory); pydantic copies the list.
        host_ip_list: list[str] = Field(
            default=[],
            description="Query only these host IPs (a manual run), e.g. [10.1.1.1, 10.1.1.2]. Hosts missing from "
            "hosts_pool are reported `not_in_pool` and not written. Empty: the configured selection (the pool, "
            "or the group).",
        )
        query_time_range: str = Field(
            default=configured,
            description=f"How far back to aggregate for this run: 7d, 30d, 1h, 24h... (configured: {configured}).",
        )

    return HostLaunchpadConfig


# ----------------------------------------------------------------------------- host-metrics result metadata

HOST_TABLE_ROWS = 500
"""Hosts shown in the run's `hosts` table (failures first); every host is in `_sync_host_results`."""
METRIC_DECIMALS = 2
_METRIC_COLUMNS = ("max_cpu", "avg_cpu", "max_memory", "avg_memory", "max_disk", "avg_disk")

HOSTS_SCHEMA = TableSchema(
    columns=[
        TableColumn("host_ip", "string", description="Host IP."),
        TableColumn("host_name", "string", description="Host name in Elasticsearch (latest data point)."),
        TableColumn("status", "string", description="success, failed, no_data or not_in_pool."),
        TableColumn("action", "string", description="What happened to its server_resources row."),
        TableColumn("registered", "bool", description="Newly registered in hosts_pool by this run."),
        *[
            TableColumn(name, "float", description=name.replace("_", " ") + " over the range.")
            for name in _METRIC_COLUMNS
        ],
        TableColumn("data_points", "int", description="Data points found in the range."),
        TableColumn("error", "string", description="The Elasticsearch error, or why nothing was written."),
    ]
)


def _rounded(value: Any) -> float | None:
    """A metric as the table shows it: two decimals (a percentage or a size, never more precise)."""
    return None if value is None else round(float(value), METRIC_DECIMALS)


def _ip_list(values: Any) -> MetadataValue:
    return MetadataValue.json(list(values or []))


def host_metadata(result: SyncResult) -> dict[str, Any]:
    """Per-host metadata: status counts, the IP lists and a table of hosts (failures first)."""
    details = result.details
    counts = details.get("status_counts") or {}
    metadata: dict[str, Any] = {
        "host_source": MetadataValue.text(str(details.get("host_source", ""))),
        "query_time_range": MetadataValue.text(str(details.get("query_time_range", ""))),
        "hosts_total": MetadataValue.int(int(details.get("hosts_total", 0))),
    }
    for status in HostStatus:
        metadata[f"hosts_{status.value}"] = MetadataValue.int(int(counts.get(status.value, 0)))
    for name in ("new_host_ip_list", "updated_host_ip_list", "failed_ip_list", "not_in_pool_ip_list"):
        metadata[name] = _ip_list(details.get(name))
    records = [
        TableRecord(
            {
                "host_ip": host["host_ip"],
                "host_name": host.get("host_name"),
                "status": host["status"],
                "action": host["action"],
                "registered": bool(host.get("registered")),
                **{name: _rounded(host.get(name)) for name in _METRIC_COLUMNS},
                "data_points": int(host.get("data_points") or 0),
                "error": redact(host["error"]) if host.get("error") else None,
            }
        )
        for host in (details.get("hosts") or [])[:HOST_TABLE_ROWS]
    ]
    metadata["hosts"] = MetadataValue.table(records=records, schema=HOSTS_SCHEMA)
    return metadata


def _host_load_metadata(context: OpExecutionContext, result: SyncResult) -> dict[str, Any]:
    """The per-host report, and the host file a file-drop run came from."""
    extra = host_metadata(result)
    for tag, key in ((HOST_FILE_TAG, "host_file"), (INVALID_LINES_TAG, "host_file_invalid_lines")):
        if tag in context.run.tags:
            extra[key] = MetadataValue.text(context.run.tags[tag])
    return extra


# ----------------------------------------------------------------------------- the kinds


def _no_metadata(context: OpExecutionContext, result: SyncResult) -> dict[str, Any]:
    return {}


def _table_descriptions(cfg: SyncConfig) -> Mapping[Stage, str]:
    return {
        Stage.EXTRACT: f"Read the source of sync `{cfg.name}` in batches of {cfg.batch_size} rows into "
        "Parquet files staged for this run, from the last committed watermark (or all of it in a full sync).",
        Stage.TRANSFORM: f"Map the staged batches of sync `{cfg.name}` to the columns and types of "
        f"`{cfg.target.table}`; records that cannot be converted are kept with their reason.",
        Stage.LOAD: f"Upsert the transformed batches into `{cfg.target.table}`, one transaction per batch "
        "(rows, record outcomes and watermark together), and report counts and sample changes.",
    }


def _host_descriptions(cfg: SyncConfig) -> Mapping[Stage, str]:
    return {
        Stage.EXTRACT: f"Pick the hosts of sync `{cfg.name}` (the run's host list, hosts_pool, or the group in "
        "Elasticsearch), query their max/avg cpu, memory and disk over the time range, a bounded number at "
        "once, and stage one row per host with its status.",
        Stage.TRANSFORM: f"Pass the host rows of sync `{cfg.name}` on: the CMDB columns are fixed.",
        Stage.LOAD: f"Upsert `{cfg.target.table}` by pool_id from each host's maxima, register new hosts in a "
        "group sync, and record every host's status (success, failed, no_data, not_in_pool), one transaction "
        "per batch of hosts.",
    }


@dataclass(frozen=True)
class OpKind:
    """The Dagster side of one kind of sync."""

    run_config: type[SyncRunConfig]
    """The `Config` class of the kind's three ops."""
    launchpad: Callable[[SyncConfig], type[SyncRunConfig]]
    """The launchpad form of one sync (a subclass of ``run_config`` whose defaults the launchpad pre-fills)."""
    descriptions: Callable[[SyncConfig], Mapping[Stage, str]]
    """What each step does, shown on the ops."""
    load_metadata: Callable[[OpExecutionContext, SyncResult], dict[str, Any]]
    """Metadata the load step adds to the result's counts, watermarks and samples."""


SQL_TABLE = OpKind(
    run_config=SyncRunConfig,
    launchpad=lambda cfg: SyncRunConfig,
    descriptions=_table_descriptions,
    load_metadata=_no_metadata,
)
"""A SQL (or Elasticsearch documents) source into a SQL table."""
HOST_METRICS = OpKind(
    run_config=HostRunConfig,
    launchpad=_host_launchpad,
    descriptions=_host_descriptions,
    load_metadata=_host_load_metadata,
)
"""Host metrics from Elasticsearch into the CMDB."""


def op_kind(cfg: SyncConfig) -> OpKind:
    """The kind of ``cfg``."""
    return HOST_METRICS if is_host_metrics(cfg) else SQL_TABLE


def run_values(config: SyncRunConfig) -> dict[str, Any]:
    """The options a config mapping hands to each op of the sync (those set)."""
    return {key: value for key, value in config.model_dump().items() if value is not None}


def run_config_mapping(cfg: SyncConfig, route: Callable[[dict[str, Any]], dict[str, Any]]) -> ConfigMapping:
    """The sync's launchpad form, its values placed in run config by ``route`` (the graph's ops, or the job's asset)."""
    form = op_kind(cfg).launchpad(cfg)

    @config_mapping
    def _run_config(config: form) -> dict[str, Any]:  # type: ignore[valid-type]
        return route(run_values(config))

    return _run_config


__all__ = [
    "HOSTS_SCHEMA",
    "HOST_METRICS",
    "SQL_TABLE",
    "HostRunConfig",
    "OpKind",
    "SyncRunConfig",
    "host_metadata",
    "op_kind",
    "run_config_mapping",
    "run_values",
]
