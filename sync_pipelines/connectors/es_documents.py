"""Raw Elasticsearch documents as a source: a point in time paged with ``search_after``.

Pages are sorted by ``(cursor, _shard_doc)`` inside one point in time, so a read sees one consistent
snapshot and never skips or repeats a document. Between runs the watermark is the greatest cursor
value read plus the ``_id`` of every document read at exactly that value: the next incremental run
reads ``cursor >= value`` minus those ids, so ties on the cursor are neither lost nor read twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sync_pipelines.config.elasticsearch import ElasticsearchSource, es_date_math
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.es_client import check_complete, display_endpoint, es_client, translate_es_errors
from sync_pipelines.connectors.json_paths import dig
from sync_pipelines.connectors.sql_source import SourceBatch
from sync_pipelines.connectors.values import decode, encode
from sync_pipelines.errors import PermanentConnectorError

ID_COLUMN = "_id"
_ARROW_OF_ES = {
    "keyword": pa.string(),
    "text": pa.string(),
    "match_only_text": pa.string(),
    "constant_keyword": pa.string(),
    "wildcard": pa.string(),
    "ip": pa.string(),
    "long": pa.int64(),
    "integer": pa.int64(),
    "short": pa.int64(),
    "byte": pa.int64(),
    "unsigned_long": pa.float64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "half_float": pa.float64(),
    "scaled_float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.timestamp("us"),
    "date_nanos": pa.timestamp("us"),
}


def flatten_mapping(properties: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    """Collect ``dotted.path -> type`` of every leaf field of an index mapping's ``properties`` into ``out``."""
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            flatten_mapping(spec["properties"], f"{path}.", out)
        else:
            out[path] = str(spec.get("type", "object"))


def _to_datetime(value: Any) -> Any:
    """An ES date (ISO text or epoch millis) as naive UTC; anything else is left for transform to reject."""
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        if isinstance(value, int | float):
            parsed = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        else:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _millis(value: dt.datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return int(aware.timestamp() * 1000)


class ElasticsearchDocumentReader:
    """Streams the documents of an index pattern in batches (the `elasticsearch` source kind)."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.source, ElasticsearchSource)
        self.config = config
        self.source: ElasticsearchSource = config.source
        self.endpoint = display_endpoint(self.source.endpoint)
        self.client = es_client(self.source, where=f"{config.name}: source")
        self._types: dict[str, str] | None = None

    def field_types(self) -> dict[str, str]:
        """Elasticsearch type of every mapped leaf field of the index pattern (dotted paths)."""
        if self._types is None:
            with translate_es_errors(self.endpoint, f"reading the mapping of {self.source.index}"):
                response = self.client.indices.get_mapping(index=self.source.index)
            types: dict[str, str] = {}
            for index in sorted(response.body):
                flatten_mapping(response.body[index].get("mappings", {}).get("properties", {}), "", types)
            self._types = types
        return self._types

    def columns(self) -> list[str]:
        """``_id`` plus the fields the sync reads (all mapped fields when it has no mapping)."""
        available = self.field_types()
        if not self.config.mapping:
            names = [ID_COLUMN, *sorted(n for n, t in available.items() if t in _ARROW_OF_ES)]
        else:
            names = [ID_COLUMN]
            for target in self.config.mapping:
                column = self.config.source_column(target)
                if column is not None and column not in names:
                    names.append(column)
        for extra in [*self.config.source_key, *([self.config.cursor] if self.config.cursor else [])]:
            if extra not in names:
                names.append(extra)
        missing = sorted(n for n in names if n != ID_COLUMN and n not in available)
        if missing:
            raise PermanentConnectorError(
                f"index {self.source.index} has no mapped field(s) {', '.join(missing)} (sync {self.config.name}); "
                f"mapped: {', '.join(sorted(available))}",
                endpoint=self.endpoint,
            )
        return names

    def arrow_schema(self) -> dict[str, pa.DataType]:
        """Arrow types of the columns read (objects and unknown types as JSON text)."""
        types = self.field_types()
        return {n: pa.string() if n == ID_COLUMN else _ARROW_OF_ES.get(types[n], pa.string()) for n in self.columns()}

    def _query(self, watermark: dict[str, Any] | None, incremental: bool) -> dict[str, Any]:
        filters: list[dict[str, Any]] = []
        exclude: list[dict[str, Any]] = []
        time_field = self.source.time_field or self.config.cursor
        if self.source.query_time_range and time_field:
            filters.append({"range": {time_field: {"gte": es_date_math(self.source.query_time_range)}}})
        if incremental and self.config.cursor:
            filters.append({"exists": {"field": self.config.cursor}})
            if watermark:
                value = decode(watermark["cursor"])
                bound = _millis(value) if isinstance(value, dt.datetime) else value
                fmt = {"format": "epoch_millis"} if isinstance(value, dt.datetime) else {}
                filters.append({"range": {self.config.cursor: {"gte": bound, **fmt}}})
                if watermark.get("ids"):
                    exclude.append({"ids": {"values": list(watermark["ids"])}})
        return {"bool": {"filter": filters, "must_not": exclude}}

    def count(self, watermark: dict[str, Any] | None, *, incremental: bool) -> int:
        """How many documents :meth:`read` will yield: the hit count of the same query (progress totals)."""
        with translate_es_errors(self.endpoint, f"counting the documents of {self.source.index}"):
            response = self.client.count(index=self.source.index, query=self._query(watermark, incremental))
        return int(response["count"])

    def read(self, watermark: dict[str, Any] | None, *, incremental: bool) -> Iterator[SourceBatch]:
        """Yield batches in ``(cursor, _shard_doc)`` order from one point in time."""
        names = self.columns()
        types = self.arrow_schema()
        cursor = self.config.cursor
        sort: list[dict[str, Any]] = [{cursor: {"order": "asc"}}] if cursor else []
        sort.append({"_shard_doc": {"order": "asc"}})
        query = self._query(watermark, incremental)
        with translate_es_errors(self.endpoint, f"opening a point in time on {self.source.index}"):
            pit_id = self.client.open_point_in_time(index=self.source.index, keep_alive=self.source.keep_alive)["id"]
        top: Any = decode(watermark["cursor"]) if incremental and watermark else None
        top_ids: list[str] = list(watermark.get("ids") or []) if incremental and watermark else []
        after: list[Any] | None = None
        try:
            while True:
                with translate_es_errors(self.endpoint, f"reading {self.source.index}"):
                    response = self.client.search(
                        pit={"id": pit_id, "keep_alive": self.source.keep_alive},
                        size=self.config.batch_size,
                        query=query,
                        sort=sort,
                        search_after=after,
                        track_total_hits=False,
                    )
                check_complete(response, f"reading {self.source.index}")
                pit_id = response.get("pit_id", pit_id)
                hits = response["hits"]["hits"]
                if not hits:
                    return
                after = hits[-1]["sort"]
                rows = [self._row(hit, names, types) for hit in hits]
                position = None
                if cursor:
                    for row in rows:
                        value = row[cursor]
                        if value is None:
                            continue
                        if top is None or value > top:
                            top, top_ids = value, [row[ID_COLUMN]]
                        elif value == top:
                            top_ids.append(row[ID_COLUMN])
                    if top is not None:
                        position = {"cursor": encode(top), "ids": list(top_ids)}
                yield SourceBatch(_to_arrow(rows, names, types), position)
        finally:
            # A point in time that cannot be closed expires on its own after keep_alive.
            with contextlib.suppress(Exception):
                self.client.close_point_in_time(id=pit_id)

    def _row(self, hit: dict[str, Any], names: list[str], types: dict[str, pa.DataType]) -> dict[str, Any]:
        document = hit.get("_source") or {}
        row: dict[str, Any] = {}
        for name in names:
            if name == ID_COLUMN:
                row[name] = hit["_id"]
                continue
            value = dig(document, name)
            if pa.types.is_timestamp(types[name]):
                value = _to_datetime(value)
            elif isinstance(value, dict | list) and pa.types.is_string(types[name]):
                value = json.dumps(value, ensure_ascii=False, default=str)
            row[name] = value
        return row


def _to_arrow(rows: list[dict[str, Any]], names: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    arrays = []
    for name in names:
        values = [row[name] for row in rows]
        try:
            arrays.append(pa.array(values, type=types[name]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Values that do not fit the mapping: keep them as text so that transform reports each one.
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


__all__ = ["ID_COLUMN", "ElasticsearchDocumentReader"]
