"""HTTP API records: the records of a paged JSON API into a SQL table (source ``rest``, target ``sql``)."""

from __future__ import annotations

from sync_pipelines.config.models import SqlTarget, SyncConfig
from sync_pipelines.config.placeholders import placeholder
from sync_pipelines.config.rest import RestSource
from sync_pipelines.config.urls import display_http_url
from sync_pipelines.connectors.check import check_sql_target
from sync_pipelines.connectors.rest import RestReader
from sync_pipelines.connectors.rest.check import check_rest_source
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.kinds.base import Pipeline, SourceSummary, SyncKind
from sync_pipelines.kinds.sql_table import TABLE_BODY_TEMPLATE, TABLE_TARGET_TEMPLATE, table_descriptions

SOURCE_TEMPLATE = f"""\
source:
  kind: rest
  # The endpoint (GET). Fixed query parameters go in `params`, credentials in `auth`.
  url: "{placeholder("API endpoint, e.g. https://directory.example.com/api/v1/users")}"
  # Dotted path of the list of records in each response; leave out when the response is the list.
  records: data.items
  # params: {{status: active}}
  auth: {{type: bearer, token: "${{{{ENV}}_API_TOKEN}}"}}
  # auth: {{type: basic, username: reader, password: "${{{{ENV}}_API_PASSWORD}}"}}
  # auth: {{type: header, name: X-API-Key, value: "${{{{ENV}}_API_KEY}}"}}
  # auth: {{type: query, name: api_key, value: "${{{{ENV}}_API_KEY}}"}}
  paginator: {{type: page_number, page_param: page, size_param: page_size, size: 100}}
  # paginator: {{type: offset, offset_param: offset, limit_param: limit, limit: 100}}
  # paginator: {{type: cursor, cursor_path: meta.next_cursor, cursor_param: cursor}}
  # paginator: {{type: link_header}}
  # paginator: {{type: next_url, next_url_path: links.next}}
  # With mode `incremental`, the committed watermark of `cursor` is sent in this query parameter:
  # incremental: {{param: updated_since}}
  # Mapping sources are dotted paths into each record, e.g. email: {{source: profile.email}}.
"""


def rest_summary(cfg: SyncConfig) -> SourceSummary:
    """An HTTP API source: its endpoint and where the records are in its responses."""
    source = cfg.source
    assert isinstance(source, RestSource)
    url = display_http_url(source.url)
    return SourceSummary(
        url=url, what=f"rest: GET {url} ({source.records or 'the response'})", label=f"the API {url}", system="rest"
    )


KIND = SyncKind(
    name="rest_api",
    title="HTTP API records",
    source_model=RestSource,
    target_model=SqlTarget,
    reader=RestReader,
    writer=SqlTargetWriter,
    pipeline=Pipeline.TABLE,
    source_check=check_rest_source,
    target_check=check_sql_target,
    source_template=SOURCE_TEMPLATE,
    target_template=TABLE_TARGET_TEMPLATE,
    body_template=TABLE_BODY_TEMPLATE,
    descriptions=table_descriptions,
    summary=rest_summary,
    keeps_conflicts=True,
)
"""The records of a paged JSON HTTP API into a SQL table."""

__all__ = ["KIND", "rest_summary"]
