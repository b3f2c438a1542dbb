"""The host-metrics sync (Elasticsearch -> CMDB) on the engine's three stages.

Extract picks the hosts (a given list, the host pool, or a group discovered in Elasticsearch),
queries them at most ``max_concurrency`` at once and stages one row per host with its status.
Transform has nothing to map (the CMDB columns are fixed) and passes the batches on. Load runs the
batches through the load driver (:mod:`sync_pipelines.engine.driver`) with :class:`HostBatchWriter`:
the resources of each batch, and each host's outcome, in one transaction per batch.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import pyarrow as pa
from sqlalchemy.engine import Connection

from sync_pipelines.config.elasticsearch import ElasticsearchHostsSource, HostSelection, check_time_range
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.cmdb import HostResult
from sync_pipelines.connectors.es_hosts import HOST_SCHEMA, HostMetrics, hosts_table
from sync_pipelines.connectors.sql import release_engine, translate_errors
from sync_pipelines.connectors.values import type_name
from sync_pipelines.engine.driver import DrySink, ResumeRecord, Samples, Sink, TargetSink, conclude, drive
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions, SyncResult
from sync_pipelines.engine.plan import HostPlan, HostSource
from sync_pipelines.engine.staging import batch_name, prepare_dir, read_batch, write_batch
from sync_pipelines.errors import ConfigError, RunCancelled, StagingError
from sync_pipelines.kinds import host_reader, host_writer
from sync_pipelines.kinds.host_metrics import HostOptions
from sync_pipelines.types import Counts, HostStatus, RecordAction, RecordOutcome

HOST_LIST_LIMIT = 5000
"""Most IPs listed per outcome in a run's details (every host is in ``_sync_host_results``)."""


def _source(config: SyncConfig) -> ElasticsearchHostsSource:
    assert isinstance(config.source, ElasticsearchHostsSource)
    return config.source


def host_options(options: RunOptions) -> HostOptions:
    """The host-metrics options of a run (none given: the configured selection and range)."""
    given = options.kind_options
    if given is None:
        return HostOptions()
    assert isinstance(given, HostOptions), f"host-metrics run given {type(given).__name__}"
    return given


def effective_time_range(config: SyncConfig, options: RunOptions) -> str:
    """The run's override, else the config's range; a malformed override is a :class:`ConfigError`."""
    value = host_options(options).time_range or _source(config).query_time_range
    try:
        return check_time_range(value)
    except ValueError as exc:
        raise ConfigError([f"{config.name}: query_time_range: {exc}"]) from None


def host_selection(config: SyncConfig, options: RunOptions) -> HostSource:
    """A given host list wins; else ``full_sync`` or ``hosts: group`` discovers the group; else the pool."""
    if host_options(options).host_ips is not None:
        return HostSource.HOST_LIST
    if options.full_sync or _source(config).hosts is HostSelection.GROUP:
        return HostSource.GROUP
    return HostSource.POOL


def extract(config: SyncConfig, options: RunOptions) -> Manifest:
    """Query the run's hosts and stage one row per host (batches of ``batch_size`` hosts)."""
    source = _source(config)
    time_range = effective_time_range(config, options)
    selection = host_selection(config, options)
    reader = host_reader(config)
    try:
        if selection is HostSource.HOST_LIST:
            hosts = list(dict.fromkeys(ip.strip() for ip in host_options(options).host_ips or [] if ip.strip()))
        elif selection is HostSource.GROUP:
            hosts = reader.discover(source.group, time_range)
        else:
            pool_reader = host_writer(config)
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
            plan=HostPlan(selection, time_range, source.group),
        )
        for index, start in enumerate(range(0, len(hosts), config.batch_size)):
            if options.stop_requested.is_set():
                raise RunCancelled(f"sync {config.name}: stopped while querying hosts (batch {index})")
            results = reader.query_hosts(hosts[start : start + config.batch_size], time_range, options.stop_requested)
            path = folder / batch_name(index)
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


class HostBatchWriter:
    """The CMDB's :class:`~sync_pipelines.engine.driver.BatchWriter`: each batch of hosts writes its resources,
    its registered hosts, every host's outcome (``_sync_host_results``) and its resume record in one
    transaction. Keeps every host's result for the run's report."""

    def __init__(
        self,
        config: SyncConfig,
        run_id: str,
        *,
        register: bool,
        time_range: str,
        sample_size: int,
        attempt: str | None = None,
    ):
        self.config, self.run_id = config, run_id
        self.register, self.time_range, self.sample_size = register, time_range, sample_size
        self.cmdb = host_writer(config)
        self.endpoint = self.cmdb.endpoint
        self.attempt = attempt
        self.resume = ResumeRecord(config.name, self.cmdb.target.db_schema, attempt)
        self.sink: Sink = TargetSink(self.cmdb.engine)
        self.results: list[HostResult] = []

    @property
    def replayable(self) -> bool:
        return True

    def prepare(self) -> None:
        self.cmdb.prepare()
        with translate_errors(self.endpoint, "preparing the resume record"), self.cmdb.engine.begin() as conn:
            self.resume.create(conn)

    def lease(self, run_id: str) -> AbstractContextManager[None]:
        return self.cmdb.lease()

    def claim(self, manifest: Manifest, options: RunOptions) -> set[int]:
        """The batches an earlier attempt of this run committed; none for a new run, which forgets the last one's."""
        with translate_errors(self.endpoint, "starting the load"), self.cmdb.engine.begin() as conn:
            done = self.resume.done(conn, options.run_id)
            if not done:
                self.resume.reset(conn)
        if done:
            options.logger.info(
                "%s: resuming run %s, %d batches already committed", self.config.name, options.run_id, len(done)
            )
        return done

    def committed_counts(self, batch: BatchFile) -> Counts:
        host_ips = [str(ip) for ip in read_batch(batch.path).column("host_ip").to_pylist()]
        return self.committed(self.cmdb.recorded(self.run_id, host_ips))

    def write(self, conn: Connection | None, table: pa.Table, batch: BatchFile) -> list[HostResult]:
        assert conn is not None
        hosts = [_metrics(row) for row in table.to_pylist()]
        results = self.cmdb.write(
            conn,
            hosts,
            run_id=self.run_id,
            register=self.register,
            query_time_range=self.time_range,
            batch=batch.index,
            dry_run=not self.sink.writes,
        )
        if self.sink.writes:
            self.resume.mark(conn, self.run_id, batch)
        return results

    reads_ahead = False
    """Nothing is read ahead: each batch reads its hosts in its own transaction."""

    def read_ahead(self, following: tuple[BatchFile, pa.Table] | None) -> None:
        """Nothing is read ahead (:attr:`reads_ahead`)."""

    def committed(self, written: list[HostResult]) -> Counts:
        self.results += written
        counts = Counts(processed=len(written))
        for outcome in written:
            counts.add(outcome.action)
        return counts

    def sampled(self) -> list[RecordOutcome]:
        return _samples(self.results, self.sample_size)

    @contextlib.contextmanager
    def planning(self) -> Iterator[None]:
        with translate_errors(self.endpoint, "planning the dry run"), self.cmdb.engine.connect() as conn:
            self.sink = DrySink(conn)
            yield
            conn.rollback()

    def finish(self, manifest: Manifest, options: RunOptions, result: SyncResult, samples: Samples) -> None:
        """Nothing follows the last batch: no watermark, no deletes."""

    def worker(self) -> Callable[[], HostBatchWriter]:
        return functools.partial(
            HostBatchWriter,
            self.config,
            self.run_id,
            register=self.register,
            time_range=self.time_range,
            sample_size=self.sample_size,
            attempt=self.attempt,
        )


def load(config: SyncConfig, manifest: Manifest, options: RunOptions) -> SyncResult:
    """Write each batch's resources and host outcomes through the load driver (one transaction per batch).

    A real run holds the sync's lease, skips the batches an earlier attempt of the run committed and
    replays a batch after a transient error; a dry run plans every batch read-only. Reports per host.
    """
    started = time.monotonic()
    plan = host_plan(manifest)
    register = plan.host_source is HostSource.GROUP
    writer = HostBatchWriter(
        config,
        options.run_id,
        register=register,
        time_range=plan.query_time_range,
        sample_size=options.sample_size,
        attempt=options.process_run_id,
    )
    result = SyncResult.begin(config.name, options, full_sync=register)
    try:
        drive(config, manifest, options, writer, result, Samples(options.sample_size))
    finally:
        release_engine(writer.cmdb.engine)
    result.samples = writer.sampled()
    result.details = host_details(writer.results, plan)
    return conclude(config, options, result, started, unit="hosts")


def host_plan(manifest: Manifest) -> HostPlan:
    """The host selection a host-metrics extract recorded in its manifest."""
    if not isinstance(manifest.plan, HostPlan):
        raise StagingError(f"sync {manifest.sync}: the staged manifest has no host plan (not a host-metrics extract)")
    return manifest.plan


def _samples(results: list[HostResult], size: int) -> list[RecordOutcome]:
    """Failures first, then the other hosts, up to ``size``."""
    ordered = sorted(results, key=lambda r: r.action is not RecordAction.FAILED)
    return [r.outcome() for r in ordered[:size]]


def host_details(results: list[HostResult], plan: HostPlan) -> dict[str, Any]:
    """The run's per-host report: its host selection, status counts, the seed's IP lists and one row per host."""
    by_status = {status.value: 0 for status in HostStatus}
    for r in results:
        by_status[r.status.value] += 1
    new = [r.metrics.host_ip for r in results if r.registered]
    # A list names only the hosts whose action it describes: `updated` those whose server_resources row
    # was written (created or changed), `unchanged` the successful hosts whose row already held the figures.
    succeeded = [r for r in results if r.status is HostStatus.SUCCESS and not r.registered]
    updated = [r.metrics.host_ip for r in succeeded if r.action in (RecordAction.CREATED, RecordAction.UPDATED)]
    unchanged = [r.metrics.host_ip for r in succeeded if r.action is RecordAction.UNCHANGED]
    failed = [r.metrics.host_ip for r in results if r.status is HostStatus.FAILED]
    return {
        "host_source": plan.host_source.value,
        "query_time_range": plan.query_time_range,
        "group": plan.group,
        "hosts_total": len(results),
        "status_counts": by_status,
        "new_host_ip_list": new[:HOST_LIST_LIMIT],
        "updated_host_ip_list": updated[:HOST_LIST_LIMIT],
        "unchanged_host_ip_list": unchanged[:HOST_LIST_LIMIT],
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
    "HostBatchWriter",
    "HostSource",
    "effective_time_range",
    "extract",
    "host_details",
    "host_options",
    "host_plan",
    "host_selection",
    "load",
    "transform",
]
