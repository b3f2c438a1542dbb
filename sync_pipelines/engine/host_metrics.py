"""The host-metrics sync (Elasticsearch -> CMDB) on the engine's three stages.

Extract picks the hosts (a given list, the host pool, or a group discovered in Elasticsearch),
queries them at most ``max_concurrency`` at once and stages one row per host with its status.
Transform has nothing to map (the CMDB columns are fixed) and passes the batches on. Load writes
the resources of each batch, and each host's outcome, in one transaction per batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sync_pipelines.config.elasticsearch import ElasticsearchHostsSource, HostSelection, check_time_range
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.cmdb import CmdbWriter, HostResult
from sync_pipelines.connectors.es_hosts import HOST_SCHEMA, EsHostMetricsReader, HostMetrics, hosts_table
from sync_pipelines.connectors.sql import release_engine
from sync_pipelines.connectors.values import type_name
from sync_pipelines.engine.guards import settle_status
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult
from sync_pipelines.engine.staging import prepare_dir, read_batch, remove_sync_staging, write_batch
from sync_pipelines.errors import ConfigError, RunCancelled
from sync_pipelines.types import Counts, HostStatus, RecordAction, RecordOutcome, RunStatus

HOST_LIST_LIMIT = 5000
"""Most IPs listed per outcome in a run's details (every host is in ``_sync_host_results``)."""


class HostSource(StrEnum):
    """Where a run's host list came from."""

    HOST_LIST = "host_list"
    POOL = "pool"
    GROUP = "group"


def is_host_metrics(config: SyncConfig) -> bool:
    """Whether ``config`` is a host-metrics sync (Elasticsearch hosts into the CMDB)."""
    return isinstance(config.source, ElasticsearchHostsSource)


def _source(config: SyncConfig) -> ElasticsearchHostsSource:
    assert isinstance(config.source, ElasticsearchHostsSource)
    return config.source


def effective_time_range(config: SyncConfig, options: RunOptions) -> str:
    """The run's override, else the config's range; a malformed override is a :class:`ConfigError`."""
    value = options.query_time_range or _source(config).query_time_range
    try:
        return check_time_range(value)
    except ValueError as exc:
        raise ConfigError([f"{config.name}: query_time_range: {exc}"]) from None


def host_selection(config: SyncConfig, options: RunOptions) -> HostSource:
    """A given host list wins; else ``full_sync`` or ``hosts: group`` discovers the group; else the pool."""
    if options.host_ips is not None:
        return HostSource.HOST_LIST
    if options.full_sync or _source(config).hosts is HostSelection.GROUP:
        return HostSource.GROUP
    return HostSource.POOL


def extract(config: SyncConfig, options: RunOptions) -> Manifest:
    """Query the run's hosts and stage one row per host (batches of ``batch_size`` hosts)."""
    source = _source(config)
    time_range = effective_time_range(config, options)
    selection = host_selection(config, options)
    reader = EsHostMetricsReader(config)
    try:
        if selection is HostSource.HOST_LIST:
            hosts = list(dict.fromkeys(ip.strip() for ip in options.host_ips or [] if ip.strip()))
        elif selection is HostSource.GROUP:
            hosts = reader.discover(source.group, time_range)
        else:
            pool_reader = CmdbWriter(config)
            try:
                hosts = sorted(pool_reader.pool())
            finally:
                release_engine(pool_reader.engine)
        options.logger.info(
            "%s: querying %d host(s) from %s over %s, %d at a time",
            config.name,
            len(hosts),
            selection.value,
            time_range,
            source.max_concurrency,
        )
        folder = prepare_dir(options.staging_dir(config.name) / "extract")
        manifest = Manifest(
            sync=config.name,
            run_id=options.run_id,
            stage="extract",
            full_sync=selection is HostSource.GROUP,
            types={f.name: type_name(f.type) for f in HOST_SCHEMA},
            details={"host_source": selection.value, "query_time_range": time_range, "group": source.group},
        )
        for index, start in enumerate(range(0, len(hosts), config.batch_size)):
            if options.stop_requested.is_set():
                raise RunCancelled(f"sync {config.name}: stopped while querying hosts (batch {index})")
            results = reader.query_hosts(hosts[start : start + config.batch_size], time_range, options.stop_requested)
            path = folder / f"batch-{index:06d}.parquet"
            table = hosts_table(results)
            write_batch(table, path)
            failed = sum(1 for r in results if r.status is HostStatus.FAILED)
            manifest.batches.append(BatchFile(index, str(path), table.num_rows, failed))
            manifest.rows += table.num_rows
            manifest.failed += failed
    finally:
        reader.close()
    return manifest


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Nothing to map: the staged host rows already have the CMDB's shape."""
    options.logger.info("%s: %d host row(s) ready for the CMDB", config.name, manifest.rows)
    return Manifest.from_dict({**manifest.to_dict(), "stage": "transform"})


def _metrics(row: Mapping[str, Any]) -> HostMetrics:
    values = dict(row)
    values["status"] = HostStatus(values["status"])
    values["data_points"] = int(values.get("data_points") or 0)
    return HostMetrics(**values)


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Write each batch's resources and host outcomes (one transaction per batch); report per host."""
    started = time.monotonic()
    writer = CmdbWriter(config)
    register = manifest.details.get("host_source") == HostSource.GROUP.value
    time_range = str(manifest.details.get("query_time_range") or _source(config).query_time_range)
    results: list[HostResult] = []
    try:
        # A dry run only reads; a real run holds the sync's lease so two runs never write at once.
        with contextlib.nullcontext() if options.dry_run else writer.lease():
            if not options.dry_run:
                writer.prepare()
            for batch in manifest.batches:
                if options.stop_requested.is_set():
                    raise RunCancelled(f"sync {config.name}: stopped before batch {batch.index}")
                hosts = [_metrics(row) for row in read_batch(batch.path).to_pylist()]
                results += writer.apply(
                    hosts,
                    run_id=options.run_id,
                    register=register,
                    query_time_range=time_range,
                    dry_run=options.dry_run,
                )
    finally:
        release_engine(writer.engine)
    counts = Counts(processed=len(results))
    for outcome in results:
        counts.add(outcome.action)
    result = SyncResult(
        sync=config.name,
        run_id=options.run_id,
        status=RunStatus.COMPLETED,
        counts=counts,
        dry_run=options.dry_run,
        full_sync=register,
        samples=_samples(results, options.sample_size),
        details=host_details(results, manifest.details),
    )
    settle_status(config, result, unit="hosts")
    result.duration_s = time.monotonic() - started
    remove_sync_staging(options.staging_dir(config.name))
    options.logger.info("%s: %s %s", config.name, result.status.value, counts.as_dict())
    return result


def _samples(results: list[HostResult], size: int) -> list[RecordOutcome]:
    """Failures first, then the other hosts, up to ``size``."""
    ordered = sorted(results, key=lambda r: r.action is not RecordAction.FAILED)
    return [
        RecordOutcome({"host_ip": r.metrics.host_ip}, r.action, r.changes or {}, r.error or None)
        for r in ordered[:size]
    ]


def host_details(results: list[HostResult], extract_details: Mapping[str, Any]) -> dict[str, Any]:
    """The run's per-host report: status counts, the seed's IP lists and one row per host."""
    by_status = {status.value: 0 for status in HostStatus}
    for r in results:
        by_status[r.status.value] += 1
    new = [r.metrics.host_ip for r in results if r.registered]
    updated = [r.metrics.host_ip for r in results if r.status is HostStatus.SUCCESS and not r.registered]
    failed = [r.metrics.host_ip for r in results if r.status is HostStatus.FAILED]
    return {
        **dict(extract_details),
        "hosts_total": len(results),
        "status_counts": by_status,
        "new_host_ip_list": new[:HOST_LIST_LIMIT],
        "updated_host_ip_list": updated[:HOST_LIST_LIMIT],
        "failed_ip_list": failed[:HOST_LIST_LIMIT],
        "not_in_pool_ip_list": [r.metrics.host_ip for r in results if r.status is HostStatus.NOT_IN_POOL][
            :HOST_LIST_LIMIT
        ],
        "no_data_ip_list": [r.metrics.host_ip for r in results if r.status is HostStatus.NO_DATA][:HOST_LIST_LIMIT],
        "hosts": [
            {
                "host_ip": r.metrics.host_ip,
                "host_name": r.metrics.host_name,
                "status": r.status.value,
                "action": r.action.value,
                "registered": r.registered,
                "pool_id": r.pool_id,
                "max_cpu": r.metrics.max_cpu,
                "avg_cpu": r.metrics.avg_cpu,
                "max_memory": r.metrics.max_memory,
                "avg_memory": r.metrics.avg_memory,
                "max_disk": r.metrics.max_disk,
                "avg_disk": r.metrics.avg_disk,
                "data_points": r.metrics.data_points,
                "error": r.error,
            }
            for r in sorted(results, key=lambda r: (r.status is not HostStatus.FAILED, r.metrics.host_ip))[
                :HOST_LIST_LIMIT
            ]
        ],
    }


__all__ = [
    "HostSource",
    "effective_time_range",
    "extract",
    "host_details",
    "host_selection",
    "is_host_metrics",
    "load",
    "transform",
]
