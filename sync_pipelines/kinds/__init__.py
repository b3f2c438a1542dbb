"""The kinds of sync, one plug-in module each, and their registry.

A kind (:class:`~sync_pipelines.kinds.base.SyncKind`) declares in one module everything that differs
between syncs: its config models, its reader and writer factories (typed by the protocols of
:mod:`sync_pipelines.connectors.base`), the engine pipeline that runs it, its run options and launchpad
form, its step descriptions, its result metadata, its connection checks and its ``new`` template.
The engine, the orchestration layer and the CLI ask the kind; none of them tests a kind's name.

Adding a fourth kind means one new module here (its ``KIND``, added to :data:`KINDS`) plus its connector(s)
in :mod:`sync_pipelines.connectors` (and its config models in :mod:`sync_pipelines.config`).
Imports flow ``config -> connectors -> kinds -> engine -> orchestration``; no kind imports Dagster.
"""

from __future__ import annotations

from typing import Any

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.base import (
    HostMetricsReader,
    HostWriter,
    RangeSourceReader,
    SourceReader,
    TargetWriter,
)
from sync_pipelines.connectors.check import CheckContext, EndpointCheck, EndpointRole, check_endpoint
from sync_pipelines.errors import ConfigError
from sync_pipelines.kinds import es_documents, host_metrics, rest_api, sql_table
from sync_pipelines.kinds.base import (
    KindOptions,
    Pipeline,
    ResultColumn,
    ResultTable,
    ResultValue,
    SourceSummary,
    SyncKind,
)

KINDS: dict[str, SyncKind[Any, Any]] = {
    kind.source_kind: kind for kind in (sql_table.KIND, es_documents.KIND, host_metrics.KIND, rest_api.KIND)
}
"""Every kind of sync, keyed by its ``source.kind``."""


def known_kinds() -> str:
    """The source kinds, for messages."""
    return ", ".join(sorted(KINDS))


def kind_of(config: SyncConfig) -> SyncKind[Any, Any]:
    """The kind of ``config`` (by its ``source.kind``).

    Raises:
        ConfigError: an unknown source kind, naming the known ones.
    """
    kind = KINDS.get(config.source.kind)
    if kind is None:
        raise ConfigError([f"{config.name}: source.kind: unknown kind {config.source.kind!r}; known: {known_kinds()}"])
    return kind


def _built(config: SyncConfig, connector: Any, protocol: type, role: str) -> Any:
    if not isinstance(connector, protocol):
        kind = kind_of(config)
        raise ConfigError(
            [f"{config.name}: the {role} of kind {kind.name} is not a {protocol.__name__} ({kind.pipeline} pipeline)"]
        )
    return connector


def source_reader(config: SyncConfig) -> SourceReader:
    """The reader of a table sync's source."""
    reader: SourceReader = _built(config, kind_of(config).reader(config), SourceReader, "source reader")
    return reader


def range_reader(config: SyncConfig) -> RangeSourceReader:
    """The reader of a source that reads windows and key ranges and polls its cursor (SQL)."""
    reader: RangeSourceReader = _built(config, kind_of(config).reader(config), RangeSourceReader, "source reader")
    return reader


def target_writer(config: SyncConfig) -> TargetWriter:
    """The writer of a table sync's target."""
    writer: TargetWriter = _built(config, kind_of(config).writer(config), TargetWriter, "target writer")
    return writer


def host_reader(config: SyncConfig) -> HostMetricsReader:
    """The reader of a host-metrics sync's source."""
    reader: HostMetricsReader = _built(config, kind_of(config).reader(config), HostMetricsReader, "source reader")
    return reader


def host_writer(config: SyncConfig) -> HostWriter:
    """The writer of a host-metrics sync's target (the CMDB)."""
    writer: HostWriter = _built(config, kind_of(config).writer(config), HostWriter, "target writer")
    return writer


def check_sync(config: SyncConfig) -> list[EndpointCheck]:
    """Check the source, then the target, of one sync with its kind's checks; never raises for an endpoint's failure."""
    kind = kind_of(config)
    context = CheckContext()
    return [
        check_endpoint(config, EndpointRole.SOURCE, kind.source_check, context),
        check_endpoint(config, EndpointRole.TARGET, kind.target_check, context),
    ]


__all__ = [
    "KINDS",
    "KindOptions",
    "Pipeline",
    "ResultColumn",
    "ResultTable",
    "ResultValue",
    "SourceSummary",
    "SyncKind",
    "check_sync",
    "host_reader",
    "host_writer",
    "kind_of",
    "known_kinds",
    "range_reader",
    "source_reader",
    "target_writer",
]
