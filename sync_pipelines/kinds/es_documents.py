"""Elasticsearch documents: the documents of an index pattern into a SQL table (source ``elasticsearch``,
target ``sql``)."""

from __future__ import annotations

from sync_pipelines.config.elasticsearch import ElasticsearchSource, EsConnection
from sync_pipelines.config.models import SqlTarget, SyncConfig
from sync_pipelines.config.placeholders import placeholder
from sync_pipelines.connectors.check import check_es_documents, check_sql_target
from sync_pipelines.connectors.es_client import display_endpoint
from sync_pipelines.connectors.es_documents import ElasticsearchDocumentReader
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.kinds.base import Pipeline, SourceSummary, SyncKind
from sync_pipelines.kinds.sql_table import TABLE_BODY_TEMPLATE, TABLE_TARGET_TEMPLATE, table_descriptions

SOURCE_TEMPLATE = f"""\
source:
  kind: elasticsearch
  # Cluster URL and index pattern. Credentials come from the environment when the sync runs.
  endpoint: "{placeholder("Elasticsearch URL, e.g. https://es.example.com:9200")}"
  index: "{placeholder("index pattern, e.g. app-logs-*")}"
  # username: ${{{{ENV}}_ES_USER}}
  # password: ${{{{ENV}}_ES_PASSWORD}}
  # api_key: ${{{{ENV}}_ES_API_KEY}}
  request_timeout_s: 30
  # Only documents of the last 7d / 30d / 24h / 1h... of `time_field` (the cursor by default):
  # query_time_range: 30d
  # time_field: "@timestamp"
  # Documents are read with a point in time and `search_after`; columns are `_id` plus the mapped
  # fields (dotted paths for objects), so a sync keyed on the document id maps `id: _id`.
"""


def es_summary(cfg: SyncConfig) -> SourceSummary:
    """An Elasticsearch source: its index pattern on its cluster."""
    source = cfg.source
    assert isinstance(source, EsConnection)
    kind = getattr(source, "kind", "elasticsearch")
    return SourceSummary(
        url=display_endpoint(source.endpoint),
        what=f"{kind}: {source.index}",
        label=f"Elasticsearch {source.index}",
        system="elasticsearch",
    )


KIND = SyncKind(
    name="es_documents",
    title="Elasticsearch documents",
    source_model=ElasticsearchSource,
    target_model=SqlTarget,
    reader=ElasticsearchDocumentReader,
    writer=SqlTargetWriter,
    pipeline=Pipeline.TABLE,
    source_check=check_es_documents,
    target_check=check_sql_target,
    source_template=SOURCE_TEMPLATE,
    target_template=TABLE_TARGET_TEMPLATE,
    body_template=TABLE_BODY_TEMPLATE,
    descriptions=table_descriptions,
    summary=es_summary,
)
"""The documents of an Elasticsearch index pattern into a SQL table."""

__all__ = ["KIND", "es_summary"]
