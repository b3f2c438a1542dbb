"""Which connector class serves which `kind` of source or target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync_pipelines.config.models import SqlSource, SyncConfig
from sync_pipelines.config.urls import build_url
from sync_pipelines.connectors.es_documents import ElasticsearchDocumentReader
from sync_pipelines.connectors.sql import SqlSourceReader, SqlTargetWriter, display_url
from sync_pipelines.errors import ConfigError, PermanentConnectorError

SOURCES: dict[str, Callable[[SyncConfig], Any]] = {"sql": SqlSourceReader, "elasticsearch": ElasticsearchDocumentReader}
TARGETS: dict[str, Callable[[SyncConfig], Any]] = {"sql": SqlTargetWriter}


def missing_sqlite_file(url: str, *, where: str) -> Path | None:
    """The database file of a SQLite URL when it does not exist (SQLite would create it, empty, on connect)."""
    try:
        parsed = build_url(url, where=where)
    except ValueError:
        return None  # the engine reports an invalid URL with its own message
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def source_reader(config: SyncConfig) -> SqlSourceReader:
    """The reader for ``config.source.kind``.

    Raises:
        PermanentConnectorError: a SQLite source whose file does not exist (reading it would leave an
            empty file behind).
    """
    if isinstance(config.source, SqlSource):
        missing = missing_sqlite_file(config.source.url, where=f"{config.name}: source.url")
        if missing is not None:
            raise PermanentConnectorError(
                f"source database file {missing} does not exist (sync {config.name}, source.url)",
                endpoint=display_url(config.source.url),
            )
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
