"""Host resource metrics from Elasticsearch: group discovery and per-host max/avg aggregations.

Every query is valid for a real cluster: ``term`` filters and a ``terms`` aggregation on keyword
fields, ``max`` / ``avg`` on numeric fields, a ``range`` in date math. No ``composite`` aggregation.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from sync_pipelines.config.elasticsearch import ElasticsearchHostsSource, es_date_math
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.es_client import (
    check_complete,
    display_endpoint,
    error_text,
    es_client,
    translate_es_errors,
)
from sync_pipelines.connectors.json_paths import dig
from sync_pipelines.errors import ConnectorError, PermanentConnectorError
from sync_pipelines.types import HostStatus

METRICS = ("cpu", "memory", "disk")

HOST_SCHEMA = pa.schema(
    [
        ("host_ip", pa.string()),
        ("host_name", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("max_cpu", pa.float64()),
        ("avg_cpu", pa.float64()),
        ("max_memory", pa.float64()),
        ("avg_memory", pa.float64()),
        ("max_disk", pa.float64()),
        ("avg_disk", pa.float64()),
        ("data_points", pa.int64()),
    ]
)
"""One row per host: the staged form of a host-metrics read."""


@dataclass
class HostMetrics:
    """What Elasticsearch says about one host over the time range."""

    host_ip: str
    status: HostStatus
    host_name: str | None = None
    error: str | None = None
    max_cpu: float | None = None
    avg_cpu: float | None = None
    max_memory: float | None = None
    avg_memory: float | None = None
    max_disk: float | None = None
    avg_disk: float | None = None
    data_points: int = 0

    def row(self) -> dict[str, Any]:
        """The staged row (``status`` as its text)."""
        values = asdict(self)
        values["status"] = self.status.value
        return values


def hosts_table(hosts: Iterable[HostMetrics]) -> pa.Table:
    """An Arrow table of :data:`HOST_SCHEMA` from per-host results."""
    return pa.Table.from_pylist([h.row() for h in hosts], schema=HOST_SCHEMA)


def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class EsHostMetricsReader:
    """Queries host metrics; one host's failure is that host's status, never the run's."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.source, ElasticsearchHostsSource)
        self.config = config
        self.source: ElasticsearchHostsSource = config.source
        self.endpoint = display_endpoint(self.source.endpoint)
        self.client = es_client(self.source, where=f"{config.name}: source", connections=self.source.max_concurrency)

    def _range(self, time_range: str) -> dict[str, Any]:
        return {"range": {self.source.fields.timestamp: {"gte": es_date_math(time_range)}}}

    def discover(self, group: str, time_range: str) -> list[str]:
        """Every host IP with data for ``group`` in the range, sorted.

        Raises:
            PermanentConnectorError: if the group has more hosts than ``max_hosts`` (the list would be
                truncated) or the search was partial.
        """
        fields = self.source.fields
        what = f"discovering the hosts of group {group!r}"
        with translate_es_errors(self.endpoint, what):
            response = self.client.search(
                index=self.source.index,
                size=0,
                query={"bool": {"filter": [{"term": {fields.group: group}}, self._range(time_range)]}},
                aggs={"hosts": {"terms": {"field": fields.host, "size": self.source.max_hosts}}},
            )
        check_complete(response, what)
        agg = (response.get("aggregations") or {}).get("hosts") or {}
        if agg.get("sum_other_doc_count") or agg.get("doc_count_error_upper_bound"):
            raise PermanentConnectorError(
                f"{what}: more than max_hosts={self.source.max_hosts} hosts; the host list would be truncated "
                f"({agg.get('sum_other_doc_count')} data points of other hosts left out). Raise `max_hosts`.",
                endpoint=self.endpoint,
            )
        return sorted(str(bucket["key"]) for bucket in agg.get("buckets", []))

    def query_host(self, host_ip: str, time_range: str) -> HostMetrics:
        """Max and avg of cpu, memory and disk plus the data point count of one host."""
        if not is_ip(host_ip):
            return HostMetrics(host_ip, HostStatus.FAILED, error=f"{host_ip!r} is not an IP address")
        fields = self.source.fields
        aggs: dict[str, Any] = {}
        for metric in METRICS:
            field = getattr(fields, metric)
            aggs[f"max_{metric}"] = {"max": {"field": field}}
            aggs[f"avg_{metric}"] = {"avg": {"field": field}}
        try:
            response = self.client.search(
                index=self.source.index,
                size=1,
                track_total_hits=True,
                source_includes=[fields.host_name],
                sort=[{fields.timestamp: {"order": "desc"}}],
                query={"bool": {"filter": [{"term": {fields.host: host_ip}}, self._range(time_range)]}},
                aggs=aggs,
            )
            check_complete(response, f"host {host_ip}")
        except ConnectorError as exc:
            return HostMetrics(host_ip, HostStatus.FAILED, error=str(exc))
        except Exception as exc:
            return HostMetrics(host_ip, HostStatus.FAILED, error=error_text(exc))
        total = response["hits"]["total"]
        count = int(total["value"] if isinstance(total, dict) else total)
        if count == 0:
            return HostMetrics(host_ip, HostStatus.NO_DATA, error="no data point in the time range")
        values = {name: (agg or {}).get("value") for name, agg in (response.get("aggregations") or {}).items()}
        hits = response["hits"]["hits"]
        name = dig(hits[0].get("_source") or {}, fields.host_name) if hits else None
        metrics = HostMetrics(host_ip, HostStatus.SUCCESS, host_name=None if name is None else str(name))
        metrics.data_points = count
        for key in _METRIC_KEYS:
            value = values.get(key)
            setattr(metrics, key, None if value is None else float(value))
        return metrics

    def query_hosts(
        self, host_ips: list[str], time_range: str, stop_requested: threading.Event | None = None
    ) -> list[HostMetrics]:
        """Query every host, at most ``max_concurrency`` at once; results in ``host_ips`` order."""

        def one(ip: str) -> HostMetrics:
            if stop_requested is not None and stop_requested.is_set():
                return HostMetrics(ip, HostStatus.FAILED, error="the run was stopped before this host was queried")
            return self.query_host(ip, time_range)

        with ThreadPoolExecutor(max_workers=self.source.max_concurrency, thread_name_prefix="es-host") as pool:
            return list(pool.map(one, host_ips))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


_METRIC_KEYS = {f"{kind}_{metric}" for kind in ("max", "avg") for metric in METRICS}


__all__ = ["HOST_SCHEMA", "EsHostMetricsReader", "HostMetrics", "error_text", "hosts_table", "is_ip"]
