"""Raw Elasticsearch documents into SQL tables: point in time, search_after, incremental with ties."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from elasticsearch import Elasticsearch, helpers

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import PermanentConnectorError
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support.databases import Databases

T0 = dt.datetime(2025, 1, 2, 3, 4, 5)
T1 = T0 + dt.timedelta(minutes=1)
T2 = T0 + dt.timedelta(minutes=2)


def doc(code: str, at: dt.datetime, amount: float) -> dict[str, Any]:
    return {"code": code, "updated_at": at.isoformat() + "Z", "amount": amount, "meta": {"site": "sh"}}


def put(es: Elasticsearch, index: str, docs: dict[str, dict[str, Any]]) -> None:
    actions = ({"_index": index, "_id": key, "_source": body} for key, body in docs.items())
    helpers.bulk(es, actions, refresh=True)


def doc_config(es_url: str, index: str, target_url: str) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "es_docs",
            "source": {"kind": "elasticsearch", "endpoint": es_url, "index": index},
            "target": {"kind": "sql", "url": target_url, "table": "es_docs", "key": ["doc_id"]},
            "mapping": {
                "doc_id": "_id",
                "code": "code",
                "amount": {"source": "amount", "type": "decimal(12,2)"},
                "site": "meta.site",
                "updated_at": "updated_at",
            },
            "mode": "incremental",
            "cursor": "updated_at",
            "batch_size": 2,
        }
    )


def target_rows(url: str) -> dict[str, tuple[Any, ...]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT doc_id, code, amount, site, updated_at FROM es_docs")).all()
    engine.dispose()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.slow
def test_incremental_documents_with_cursor_ties(dbs: Databases, es: Elasticsearch, index_prefix: str) -> None:
    index = f"{index_prefix}-docs"
    es.indices.create(
        index=index,
        mappings={
            "properties": {
                "code": {"type": "keyword"},
                "updated_at": {"type": "date"},
                "amount": {"type": "double"},
                "meta": {"properties": {"site": {"type": "keyword"}}},
            }
        },
    )
    put(es, index, {"a": doc("A", T0, 1.5), "b": doc("B", T0, 2.0)})
    put(es, index, {k: doc(k.upper(), T1, 3.0) for k in ("c", "d", "e", "f", "g")})
    config = doc_config(es.transport.node_pool.get().base_url, index, dbs.target_url)

    first = run_sync(config, RunOptions(run_id="docs-1"))
    assert first.status is RunStatus.COMPLETED and first.counts.created == 7
    assert first.watermark_after is not None
    assert sorted(first.watermark_after["ids"]) == ["c", "d", "e", "f", "g"]
    rows = target_rows(dbs.target_url)
    assert sorted(rows) == ["a", "b", "c", "d", "e", "f", "g"]
    assert rows["a"][2] == "sh" and float(rows["a"][1]) == 1.5

    # Two more documents at the watermark's own timestamp, one later, and one document changed.
    put(es, index, {"h": doc("H", T1, 4.0), "i": doc("I", T1, 4.0), "j": doc("J", T2, 5.0), "a": doc("A", T2, 9.25)})
    second = run_sync(config, RunOptions(run_id="docs-2"))
    assert (second.counts.processed, second.counts.created, second.counts.updated) == (4, 3, 1)
    assert second.watermark_after is not None and sorted(second.watermark_after["ids"]) == ["a", "j"]
    rows = target_rows(dbs.target_url)
    assert len(rows) == 10 and float(rows["a"][1]) == 9.25

    third = run_sync(config, RunOptions(run_id="docs-3"))
    assert third.counts.processed == 0 and third.watermark_after == second.watermark_after

    full = run_sync(config, RunOptions(run_id="docs-full", full_sync=True))
    assert full.counts.processed == 10 and full.counts.unchanged == 10
    # A full read leaves a (cursor, key) watermark: the next incremental run re-reads only the last timestamp.
    after_full = run_sync(config, RunOptions(run_id="docs-4"))
    assert (after_full.counts.processed, after_full.counts.unchanged) == (2, 2)


def test_unknown_fields_and_the_time_range(sqlite_dbs: Databases, es: Elasticsearch, index_prefix: str) -> None:
    index = f"{index_prefix}-docs"
    es.indices.create(
        index=index, mappings={"properties": {"code": {"type": "keyword"}, "updated_at": {"type": "date"}}}
    )
    recent = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    put(
        es,
        index,
        {
            "old": {"code": "OLD", "updated_at": T0.isoformat() + "Z"},
            "new": {"code": "NEW", "updated_at": recent.isoformat() + "Z"},
        },
    )
    url = es.transport.node_pool.get().base_url
    wrong = doc_config(url, index, sqlite_dbs.target_url)
    with pytest.raises(PermanentConnectorError, match=r"has no mapped field\(s\) amount, meta.site \(sync es_docs\)"):
        run_sync(wrong, RunOptions(run_id="docs-wrong"))

    recent_only = SyncConfig.model_validate(
        {
            "name": "es_recent",
            "source": {"kind": "elasticsearch", "endpoint": url, "index": index, "query_time_range": "7d"},
            "target": {"kind": "sql", "url": sqlite_dbs.target_url, "table": "es_recent", "key": ["_id"]},
            "mode": "incremental",
            "cursor": "updated_at",
        }
    )
    result = run_sync(recent_only, RunOptions(run_id="docs-recent"))
    assert result.counts.created == 1 and result.samples[0].key == {"_id": "new"}
