"""The ``rest`` source reader: records of a paged JSON API as batches of the table pipeline.

A full read streams the pages in the API's order (a record repeated by a shifting page is kept once).
An incremental read sends the committed watermark's cursor value in ``incremental.param``, reads every
page, keeps the records after the watermark's ``(cursor, key)`` and yields them in that order, so that
records at the boundary are neither lost nor loaded twice even when the API's filter is inclusive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.rest import RestSource
from sync_pipelines.connectors.json_paths import dig
from sync_pipelines.connectors.rest.client import RestClient
from sync_pipelines.connectors.rest.paginators import Page
from sync_pipelines.connectors.rest.records import columns_of, declared_types, staged_type, to_arrow, to_row
from sync_pipelines.connectors.sql_source import SourceBatch
from sync_pipelines.connectors.values import decode, encode
from sync_pipelines.errors import PermanentConnectorError


def param_value(value: Any) -> str:
    """A watermark cursor value as a query parameter: naive (UTC) datetimes as ISO-8601 with ``Z``."""
    if isinstance(value, dt.datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RestReader:
    """Reads the records of one ``rest`` source (a :class:`~sync_pipelines.connectors.base.SourceReader`)."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.source, RestSource)
        self.config = config
        self.source: RestSource = config.source
        self.client = RestClient(config)
        self.endpoint = self.client.endpoint
        self._types: dict[str, pa.DataType] | None = None
        self._sample: list[dict[str, Any]] | None = None
        self._first: Page | None = None
        """The first page of a full read, read once for the column types."""

    def close(self) -> None:
        """Release the client's connections."""
        self.client.close()

    def sample(self) -> list[dict[str, Any]]:
        """The records of the first page (the column types are taken from them)."""
        if self._sample is None:
            self._first = next(self.client.pages(max_pages=1), None)
            self._sample = [] if self._first is None else self._objects(self._first.records, 1)
        return self._sample

    def arrow_schema(self) -> dict[str, pa.DataType]:
        """The staged type of every column read (read from the first page once)."""
        if self._types is None:
            sample = self.sample()
            declared = declared_types(self.config)
            self._types = {
                name: staged_type(declared.get(name), (dig(r, name) for r in sample))
                for name in columns_of(self.config, sample)
            }
        return self._types

    def count(self, watermark: dict[str, Any] | None, *, incremental: bool) -> int | None:
        """None: an API does not say in advance how many records it will return."""
        return None

    def read(self, watermark: dict[str, Any] | None, *, incremental: bool) -> Iterator[SourceBatch]:
        """Batches of ``batch_size`` records: every record (full), or those after ``watermark`` (incremental)."""
        types = self.arrow_schema()
        if incremental:
            yield from self._batches(self._after(watermark, types), types, positions=True)
        else:
            yield from self._batches(self._every(types), types, positions=False)

    def _every(self, types: dict[str, pa.DataType]) -> Iterator[dict[str, Any]]:
        seen: set[int] = set()
        for page in self.client.pages(first=self._first):
            for record in self._objects(page.records, page.number):
                row = to_row(record, types)
                marker = hash(tuple(_hashable(row[k]) for k in self.config.source_key))
                if marker not in seen:
                    seen.add(marker)
                    yield row

    def _after(self, watermark: dict[str, Any] | None, types: dict[str, pa.DataType]) -> list[dict[str, Any]]:
        cursor = self.config.cursor
        assert cursor is not None, "an incremental read needs a cursor (config rule)"
        extra: dict[str, Any] = {}
        bound: tuple[Any, ...] | None = None
        if watermark:
            bound = _order(decode(watermark["cursor"]), [decode(v) for v in watermark["key"]])
            if self.source.incremental.param:
                extra[self.source.incremental.param] = param_value(decode(watermark["cursor"]))
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for page in self.client.pages(extra):
            for record in self._objects(page.records, page.number):
                row = to_row(record, types)
                if row[cursor] is None:
                    continue
                self._check_cursor(row, types)
                order = _order(row[cursor], [row[k] for k in self.config.source_key])
                if bound is None or order > bound:
                    rows.setdefault(order, row)
        return [rows[order] for order in sorted(rows)]

    def _check_cursor(self, row: dict[str, Any], types: dict[str, pa.DataType]) -> None:
        cursor = self.config.cursor
        assert cursor is not None
        expected = types[cursor]
        value = row[cursor]
        if isinstance(value, str) and not pa.types.is_string(expected):
            keys = {k: row[k] for k in self.config.source_key}
            raise PermanentConnectorError(
                f"sync {self.config.name}: the record {keys} has cursor `{cursor}` = {value!r}, not a "
                f"{expected}; records cannot be ordered on it",
                endpoint=self.endpoint,
            )

    def _batches(
        self, rows: Iterator[dict[str, Any]] | list[dict[str, Any]], types: dict[str, pa.DataType], *, positions: bool
    ) -> Iterator[SourceBatch]:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == self.config.batch_size:
                yield self._batch(batch, types, positions)
                batch = []
        if batch:
            yield self._batch(batch, types, positions)

    def _batch(self, rows: list[dict[str, Any]], types: dict[str, pa.DataType], positions: bool) -> SourceBatch:
        position = None
        if positions and self.config.cursor:
            last = rows[-1]
            position = {
                "cursor": encode(last[self.config.cursor]),
                "key": [encode(last[k]) for k in self.config.source_key],
            }
        return SourceBatch(to_arrow(rows, types), position)

    def _objects(self, records: list[Any], page: int) -> list[dict[str, Any]]:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise PermanentConnectorError(
                    f"sync {self.config.name}: GET page {page}: record {index} is a {type(record).__name__}, "
                    "not a JSON object",
                    endpoint=self.endpoint,
                )
        return records


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value


def _order(cursor: Any, keys: list[Any]) -> tuple[Any, ...]:
    """A sortable ``(cursor, key...)``: NULL keys sort first."""
    return (cursor, *((k is not None, k) for k in keys))


__all__ = ["RestReader", "param_value"]
