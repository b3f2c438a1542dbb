"""Which connector class serves which `kind` of source or target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.es_documents import ElasticsearchDocumentReader
from sync_pipelines.connectors.sql import SqlSourceReader, SqlTargetWriter
from sync_pipelines.errors import ConfigError

SOURCES: dict[str, Callable[[SyncConfig], Any]] = {"sql": SqlSourceReader, "elasticsearch": ElasticsearchDocumentReader}
TARGETS: dict[str, Callable[[SyncConfig], Any]] = {"sql": SqlTargetWriter}


def source_reader(config: SyncConfig) -> SqlSourceReader:
    """The reader for ``config.source.kind``."""
    factory = SOURCES.get(config.source.kind)
    if factory is None:
        raise ConfigError(
            [f"{config.name}: source.kind: unknown kind {config.source.kind!r}; known: {sorted(SOURCES)}"]
        )
    reader: SqlSourceReader = factory(config)
    return reader


def target_writer(config: SyncConfig) -> SqlTargetWriter:
    """The writer for ``config.target.kind``."""
    factory = TARGETS.get(config.target.kind)
    if factory is None:
        raise ConfigError(
            [f"{config.name}: target.kind: unknown kind {config.target.kind!r}; known: {sorted(TARGETS)}"]
        )
    writer: SqlTargetWriter = factory(config)
    return writer
