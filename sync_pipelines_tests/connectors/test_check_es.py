"""Connection checks of Elasticsearch sources and the CMDB target, against the test suite's ES-API server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from elasticsearch import Elasticsearch, helpers

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.check import EndpointRole
from sync_pipelines.kinds import check_sync
from sync_pipelines_tests.support.es import point, seed_hosts

NOW = dt.datetime(2025, 1, 1, 12, 0, 0)


def hosts_config(es_url: str, index: str, cmdb_url: str, **target: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "host_metrics",
            "source": {"kind": "elasticsearch_hosts", "endpoint": es_url, "index": index},
            "target": {"kind": "cmdb", "url": cmdb_url, **target},
        }
    )


def by_role(config: SyncConfig) -> dict[EndpointRole, Any]:
    return {r.role: r for r in check_sync(config)}


def test_host_metrics_endpoints_ok_then_broken(
    es: Elasticsearch, es_server: Any, index_prefix: str, tmp_path: Path
) -> None:
    seed_hosts(es, f"{index_prefix}-2025.01", [point("10.1.1.1", 1, cpu=1.0, memory=2.0, disk=3.0)])
    cmdb = f"sqlite:///{tmp_path / 'cmdb.db'}"
    ok = by_role(hosts_config(es_server.url, f"{index_prefix}-*", cmdb))
    assert ok[EndpointRole.SOURCE].ok, ok[EndpointRole.SOURCE].error
    assert "read one document" in ok[EndpointRole.SOURCE].passed
    assert ok[EndpointRole.TARGET].ok, ok[EndpointRole.TARGET].error
    assert "test write rolled back" in ok[EndpointRole.TARGET].passed
    assert not sa.inspect(sa.create_engine(cmdb)).get_table_names()  # the check created nothing

    no_index = by_role(hosts_config(es_server.url, f"{index_prefix}-missing-*", cmdb))[EndpointRole.SOURCE]
    assert not no_index.ok and f"index pattern '{index_prefix}-missing-*' matches no index" in (no_index.error or "")

    closed = by_role(hosts_config("http://127.0.0.1:1", f"{index_prefix}-*", cmdb))[EndpointRole.SOURCE]
    assert not closed.ok and closed.endpoint == "http://127.0.0.1:1"

    no_create = by_role(hosts_config(es_server.url, f"{index_prefix}-*", cmdb, create=False))[EndpointRole.TARGET]
    assert not no_create.ok and "do not exist and target.create is false" in (no_create.error or "")


def test_a_text_host_field_is_refused(es: Elasticsearch, es_server: Any, index_prefix: str, tmp_path: Path) -> None:
    index = f"{index_prefix}-text"
    es.indices.create(
        index=index,
        mappings={
            "properties": {
                "hostIp": {"type": "text"},
                "group": {"type": "keyword"},
                "@timestamp": {"type": "date"},
                "cpu": {"type": "float"},
                "memory": {"type": "float"},
            }
        },
    )
    result = by_role(hosts_config(es_server.url, index, f"sqlite:///{tmp_path / 'cmdb.db'}"))[EndpointRole.SOURCE]
    assert not result.ok
    assert "field 'hostIp' is text, expected one of constant_keyword, ip, keyword" in (result.error or "")
    assert "field 'disk' is not mapped" in (result.error or "")


def test_document_source_checks_its_mapped_fields(
    es: Elasticsearch, es_server: Any, index_prefix: str, tmp_path: Path
) -> None:
    index = f"{index_prefix}-docs"
    doc = {"code": "A", "updated_at": NOW.isoformat() + "Z", "amount": 1.5}
    helpers.bulk(es, [{"_index": index, "_id": "1", "_source": doc}], refresh=True)
    data: dict[str, Any] = {
        "name": "es_docs",
        "source": {"kind": "elasticsearch", "endpoint": es_server.url, "index": index},
        "target": {"kind": "sql", "url": f"sqlite:///{tmp_path / 't.db'}", "table": "docs", "key": ["doc_id"]},
        "mapping": {"doc_id": "_id", "code": "code", "amount": {"type": "decimal(12,2)"}},
    }
    ok = by_role(SyncConfig.model_validate(data))[EndpointRole.SOURCE]
    assert ok.ok, ok.error
    assert ok.passed[-1] == "read one document"
    data["mapping"] = {**data["mapping"], "colour": "colour"}
    missing = by_role(SyncConfig.model_validate(data))[EndpointRole.SOURCE]
    assert not missing.ok and "has no mapped field(s) colour" in (missing.error or "")


def test_document_count_matches_what_a_read_yields(
    es: Elasticsearch, es_server: Any, index_prefix: str, tmp_path: Path
) -> None:
    from sync_pipelines.connectors.es_documents import ElasticsearchDocumentReader

    index = f"{index_prefix}-count"
    docs = [
        {"_index": index, "_id": str(i), "_source": {"code": f"C{i}", "updated_at": f"2025-01-0{1 + i % 3}T00:00:00Z"}}
        for i in range(7)
    ]
    helpers.bulk(es, docs, refresh=True)
    cfg = SyncConfig.model_validate(
        {
            "name": "es_docs",
            "source": {"kind": "elasticsearch", "endpoint": es_server.url, "index": index},
            "target": {"kind": "sql", "url": f"sqlite:///{tmp_path / 't.db'}", "table": "docs", "key": ["doc_id"]},
            "mapping": {"doc_id": "_id", "code": "code", "updated_at": "updated_at"},
            "mode": "incremental",
            "cursor": "updated_at",
            "batch_size": 3,
        }
    )
    reader = ElasticsearchDocumentReader(cfg)
    try:
        read = sum(b.table.num_rows for b in reader.read(None, incremental=True))
        assert reader.count(None, incremental=True) == read == 7
    finally:
        reader.client.close()
