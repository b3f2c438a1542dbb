"""The ops and launchpad form of a host-metrics sync (Elasticsearch hosts into the CMDB).

Same three steps as any sync (``<name>_extract -> _transform -> _load``), with two more run options:
``host_ip_list`` (a manual run for given hosts) and ``query_time_range``. The load step reports
every host's outcome as a table and the seed's new / updated / failed IP lists as metadata.

No postponed annotations here: Dagster reads the `Config` class of an op from its annotation.
"""

from collections.abc import Iterator
from typing import Any

from dagster import (
    ConfigMapping,
    In,
    MetadataValue,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    config_mapping,
    op,
)
from pydantic import Field

from sync_pipelines import engine
from sync_pipelines.config.elasticsearch import ElasticsearchHostsSource
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.engine.manifest import Manifest, RunOptions, SyncResult
from sync_pipelines.orchestration.host_sensors import HOST_FILE_TAG, INVALID_LINES_TAG
from sync_pipelines.orchestration.metadata import stage_metadata
from sync_pipelines.orchestration.names import Stage, Tag, op_name, pool_name
from sync_pipelines.orchestration.ops import (
    DRY_RUN_DESCRIPTION,
    SyncRunConfig,
    engine_step,
    report_load,
)
from sync_pipelines.types import HostStatus

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


class HostRunConfig(SyncRunConfig):
    """Options of one host-metrics run (the same for its three ops)."""

    full_sync: bool = Field(
        default=False,
        description="Group full sync: query every host of the configured `group` in Elasticsearch and register "
        "the hosts missing from hosts_pool (ignored when `host_ip_list` is given).",
    )
    dry_run: bool = Field(default=False, description=DRY_RUN_DESCRIPTION)
    host_ip_list: list[str] | None = Field(
        default=None,
        description="Query only these host IPs (a manual run). Hosts missing from hosts_pool are reported "
        "`not_in_pool` and not written. Empty: the configured selection (the pool, or the group).",
    )
    query_time_range: str | None = Field(
        default=None, description="Overrides the configured range for this run: 7d, 30d, 1h, 24h..."
    )


def launchpad_config_class(cfg: SyncConfig) -> type[HostRunConfig]:
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


def _values(config: HostRunConfig) -> dict[str, Any]:
    return {key: value for key, value in config.model_dump().items() if value is not None}


def host_graph_config(cfg: SyncConfig) -> ConfigMapping:
    """Give the same host-run options to the three ops of the sync's graph."""
    form = launchpad_config_class(cfg)

    @config_mapping
    def _options(config: form) -> dict[str, Any]:  # type: ignore[valid-type]
        values = _values(config)
        return {op_name(cfg.name, stage): {"config": values} for stage in Stage}

    return _options


def host_job_config(cfg: SyncConfig) -> ConfigMapping:
    """The launchpad form of a host-metrics job: full_sync, dry_run, user, host_ip_list, query_time_range."""
    form = launchpad_config_class(cfg)

    @config_mapping
    def _run_config(config: form) -> dict[str, Any]:  # type: ignore[valid-type]
        return {"ops": {cfg.name: {"config": _values(config)}}}

    return _run_config


def host_run_options(
    context: OpExecutionContext, config: HostRunConfig, manifest: Manifest | None = None
) -> RunOptions:
    """Engine options of one step, with the run's host list and time range."""
    run_id = manifest.run_id if manifest is not None else context.run_id
    return RunOptions(
        run_id=run_id,
        full_sync=config.full_sync,
        dry_run=config.dry_run,
        logger=context.log,
        host_ips=list(config.host_ip_list) if config.host_ip_list else None,
        query_time_range=config.query_time_range or None,
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


_MANIFEST_IN = In(dict, description="Manifest of the staged host rows.")


def build_host_ops(cfg: SyncConfig) -> tuple[OpDefinition, OpDefinition, OpDefinition]:
    """The extract, transform and load ops of a host-metrics sync."""
    tags = {Tag.SYNC_NAME.value: cfg.name}

    @op(
        name=op_name(cfg.name, Stage.EXTRACT),
        description=f"Pick the hosts of sync `{cfg.name}` (the run's host list, hosts_pool, or the group in "
        "Elasticsearch), query their max/avg cpu, memory and disk over the time range, a bounded number at "
        "once, and stage one row per host with its status.",
        out=Out(dict, description="Manifest of the staged host rows."),
        pool=pool_name(cfg.name),
        tags=tags,
    )
    def _extract(context: OpExecutionContext, config: HostRunConfig) -> Output[dict[str, Any]]:
        with engine_step(context, cfg, Stage.EXTRACT):
            manifest = engine.extract(cfg, host_run_options(context, config))
        return Output(manifest.to_dict(), metadata=stage_metadata(manifest))

    @op(
        name=op_name(cfg.name, Stage.TRANSFORM),
        description=f"Pass the host rows of sync `{cfg.name}` on: the CMDB columns are fixed.",
        ins={"manifest": _MANIFEST_IN},
        out=Out(dict, description="Manifest of the host rows ready for the CMDB."),
        pool=pool_name(cfg.name),
        tags=tags,
    )
    def _transform(
        context: OpExecutionContext, config: HostRunConfig, manifest: dict[str, Any]
    ) -> Output[dict[str, Any]]:
        with engine_step(context, cfg, Stage.TRANSFORM):
            staged = Manifest.from_dict(manifest)
            result = engine.transform(cfg, staged, host_run_options(context, config, staged))
        return Output(result.to_dict(), metadata=stage_metadata(result))

    @op(
        name=op_name(cfg.name, Stage.LOAD),
        description=f"Upsert `{cfg.target.table}` by pool_id from each host's maxima, register new hosts in a "
        "group sync, and record every host's status (success, failed, no_data, not_in_pool).",
        ins={"manifest": _MANIFEST_IN},
        out=Out(dict, is_required=False, description="The run's result with its per-host details."),
        pool=pool_name(cfg.name),
        tags=tags,
    )
    def _load(
        context: OpExecutionContext, config: HostRunConfig, manifest: dict[str, Any]
    ) -> Iterator[Output[dict[str, Any]]]:
        with engine_step(context, cfg, Stage.LOAD):
            staged = Manifest.from_dict(manifest)
            result = engine.load(cfg, staged, host_run_options(context, config, staged))
        extra = host_metadata(result)
        for tag, key in ((HOST_FILE_TAG, "host_file"), (INVALID_LINES_TAG, "host_file_invalid_lines")):
            if tag in context.run.tags:
                extra[key] = MetadataValue.text(context.run.tags[tag])
        yield from report_load(context, cfg, result, extra)

    return _extract, _transform, _load


__all__ = [
    "HOSTS_SCHEMA",
    "HostRunConfig",
    "build_host_ops",
    "host_graph_config",
    "host_job_config",
    "host_metadata",
    "host_run_options",
]
