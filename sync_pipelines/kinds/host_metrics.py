"""Host metrics: per-host cpu, memory and disk aggregated in Elasticsearch into the CMDB (source
``elasticsearch_hosts``, target ``cmdb``).

A run takes a host list and a time range beyond ``full_sync`` (which discovers the configured group);
its result reports every host's status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from sync_pipelines.config.elasticsearch import CmdbTarget, ElasticsearchHostsSource, HostFileDrop
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.placeholders import placeholder
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.check import check_cmdb_target, check_es_hosts
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.connectors.es_hosts import EsHostMetricsReader
from sync_pipelines.kinds.base import KindOptions, Pipeline, ResultColumn, ResultTable, ResultValue, SyncKind
from sync_pipelines.kinds.es_documents import es_summary
from sync_pipelines.types import HostStatus


class HostOptions(KindOptions):
    """Options of one host-metrics run."""

    host_ip_list: list[str] | None = Field(
        default=None,
        description="Query only these host IPs (a manual run). Hosts missing from hosts_pool are reported "
        "`not_in_pool` and not written. Empty: the configured selection (the pool, or the group).",
    )
    query_time_range: str | None = Field(
        default=None, description="Overrides the configured range for this run: 7d, 30d, 1h, 24h..."
    )

    @property
    def host_ips(self) -> list[str] | None:
        """The hosts to query, or None for the configured selection (an empty list selects none given)."""
        return list(self.host_ip_list) if self.host_ip_list else None

    @property
    def time_range(self) -> str | None:
        """The run's range, or None for the configured one."""
        return self.query_time_range or None


def launchpad(cfg: SyncConfig) -> type[HostOptions]:
    """The launchpad form of one host-metrics sync: ``host_ip_list`` and ``query_time_range`` have defaults
    (no hosts: the configured selection; the configured range), so the launchpad pre-fills them."""
    assert isinstance(cfg.source, ElasticsearchHostsSource)
    configured = cfg.source.query_time_range

    class HostLaunchpadOptions(HostOptions):
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

    return HostLaunchpadOptions


def descriptions(cfg: SyncConfig) -> Mapping[str, str]:
    """The steps of a host-metrics sync."""
    return {
        "extract": f"Pick the hosts of sync `{cfg.name}` (the run's host list, hosts_pool, or the group in "
        "Elasticsearch), query their max/avg cpu, memory and disk over the time range, a bounded number at "
        "once, and stage one row per host with its status.",
        "transform": f"Pass the host rows of sync `{cfg.name}` on: the CMDB columns are fixed.",
        "load": f"Upsert `{cfg.target.table}` by pool_id from each host's maxima, register new hosts in a "
        "group sync, and record every host's status (success, failed, no_data, not_in_pool), one transaction "
        "per batch of hosts.",
    }


# ----------------------------------------------------------------------------- result metadata

HOST_TABLE_ROWS = 500
"""Hosts shown in the run's `hosts` table (failures first); every host is in `_sync_host_results`."""
METRIC_DECIMALS = 2
METRIC_COLUMNS = ("max_cpu", "avg_cpu", "max_memory", "avg_memory", "max_disk", "avg_disk")

HOST_COLUMNS = (
    ResultColumn("host_ip", "string", "Host IP."),
    ResultColumn("host_name", "string", "Host name in Elasticsearch (latest data point)."),
    ResultColumn("status", "string", "success, failed, no_data or not_in_pool."),
    ResultColumn("action", "string", "What happened to its server_resources row."),
    ResultColumn("registered", "bool", "Newly registered in hosts_pool by this run."),
    *[ResultColumn(name, "float", name.replace("_", " ") + " over the range.") for name in METRIC_COLUMNS],
    ResultColumn("data_points", "int", "Data points found in the range."),
    ResultColumn("error", "string", "The Elasticsearch error, or why nothing was written."),
)
"""The columns of a run's ``hosts`` table."""

IP_LISTS = (
    "new_host_ip_list",
    "updated_host_ip_list",
    "unchanged_host_ip_list",
    "failed_ip_list",
    "not_in_pool_ip_list",
)


def _rounded(value: Any) -> float | None:
    """A metric as the table shows it: two decimals (a percentage or a size, never more precise)."""
    return None if value is None else round(float(value), METRIC_DECIMALS)


def result_metadata(details: Mapping[str, Any]) -> dict[str, ResultValue]:
    """Per-host metadata of a run's ``details``: status counts, the IP lists and a table of hosts (failures first)."""
    counts = details.get("status_counts") or {}
    metadata: dict[str, ResultValue] = {
        "host_source": str(details.get("host_source", "")),
        "query_time_range": str(details.get("query_time_range", "")),
        "hosts_total": int(details.get("hosts_total", 0)),
    }
    for status in HostStatus:
        metadata[f"hosts_{status.value}"] = int(counts.get(status.value, 0))
    for name in IP_LISTS:
        metadata[name] = list(details.get(name) or [])
    rows = [
        {
            "host_ip": host["host_ip"],
            "host_name": host.get("host_name"),
            "status": host["status"],
            "action": host["action"],
            "registered": bool(host.get("registered")),
            **{name: _rounded(host.get(name)) for name in METRIC_COLUMNS},
            "data_points": int(host.get("data_points") or 0),
            "error": redact(host["error"]) if host.get("error") else None,
        }
        for host in (details.get("hosts") or [])[:HOST_TABLE_ROWS]
    ]
    metadata["hosts"] = ResultTable(HOST_COLUMNS, rows)
    return metadata


# ----------------------------------------------------------------------------- the `new` template

SOURCE_TEMPLATE = f"""\
source:
  kind: elasticsearch_hosts
  # Cluster URL and the index pattern of the metric documents. Credentials come from the environment.
  endpoint: "{placeholder("Elasticsearch URL, e.g. https://es.example.com:9200")}"
  index: "{placeholder("index pattern of the metrics, e.g. host-metrics-*")}"
  # username: ${{{{ENV}}_ES_USER}}
  # password: ${{{{ENV}}_ES_PASSWORD}}
  # How far back to aggregate each host's max/avg cpu, memory and disk (7d, 30d, 1h, 24h...):
  query_time_range: 30d
  # `pool`: the hosts registered in hosts_pool; `group`: every host of `group` found in Elasticsearch,
  # registering the new ones. A run's host list overrides both; a full sync discovers the group.
  hosts: pool
  # group: default
  # Hosts queried at the same time:
  max_concurrency: 10
  # Field names of the metric documents:
  # fields:
  #   host: hostIp
  #   host_name: hostName
  #   group: group
  #   timestamp: "@timestamp"
  #   cpu: cpu
  #   memory: memory
  #   disk: disk
  # Start one run per host list file (one IP a line) dropped into a folder:
  # host_files: {{folder: /data/host-lists}}
"""

TARGET_TEMPLATE = f"""\
target:
  kind: cmdb
  # SQLAlchemy URL of the CMDB database, e.g. mysql://cmdb:${{{{ENV}}_CMDB_PASSWORD}}@db:3306/cmdb
  url: "{placeholder("CMDB SQLAlchemy URL")}"
  # table: server_resources     # upserted by pool_id
  # hosts_table: hosts_pool
  # Create hosts_pool and server_resources when they do not exist yet.
  create: true
"""

BODY_TEMPLATE = """
# Hosts per batch; each batch is one transaction on the CMDB.
batch_size: 500
# Share of hosts allowed to fail before the run counts as failed instead of partial.
max_failure_ratio: 0.0

# Run on a cron (5-field, or Quartz such as `0 0 2 * * ?`) in `timezone`; leave out for manual runs.
# schedule:
#   cron: "0 0 2 * * ?"
#   enabled: true
timezone: UTC
"""


def host_files(cfg: SyncConfig) -> HostFileDrop | None:
    """The folder of host list files of a sync (``source.host_files``), if any."""
    assert isinstance(cfg.source, ElasticsearchHostsSource)
    return cfg.source.host_files


KIND = SyncKind(
    name="host_metrics",
    title="Host metrics",
    source_model=ElasticsearchHostsSource,
    target_model=CmdbTarget,
    reader=EsHostMetricsReader,
    writer=CmdbWriter,
    pipeline=Pipeline.HOSTS,
    source_check=check_es_hosts,
    target_check=check_cmdb_target,
    source_template=SOURCE_TEMPLATE,
    target_template=TARGET_TEMPLATE,
    body_template=BODY_TEMPLATE,
    descriptions=descriptions,
    summary=es_summary,
    host_files=host_files,
    options=HostOptions,
    launchpad=launchpad,
    full_sync_description="Group full sync: query every host of the configured `group` in Elasticsearch and "
    "register the hosts missing from hosts_pool (ignored when `host_ip_list` is given).",
    result_metadata=result_metadata,
)
"""Per-host metrics from Elasticsearch into the CMDB."""

__all__ = ["HOST_COLUMNS", "KIND", "HostOptions", "descriptions", "host_files", "launchpad", "result_metadata"]
