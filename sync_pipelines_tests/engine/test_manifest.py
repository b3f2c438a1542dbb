"""The manifest's plan: typed between the stages, exact through to_dict/from_dict and JSON, and the
previous format (untyped ``details``) still read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sync_pipelines.engine.manifest import BatchFile, Manifest, chunk_workers, is_chunked
from sync_pipelines.engine.plan import ChunkPlan, HostPlan, HostSource, Plan
from sync_pipelines.engine.transform import transformed_manifest
from sync_pipelines.errors import StagingError

CHUNKS = ChunkPlan(chunks=3, workers=2, key_boundaries=(100, {"$date": "2026-01-01"}))
HOSTS = HostPlan(host_source=HostSource.GROUP, query_time_range="30d", group="DB组")


def manifest(plan: Plan | None) -> Manifest:
    return Manifest(
        sync="orders",
        run_id="run-1",
        stage="extract",
        full_sync=True,
        batches=[BatchFile(0, "/staging/batch-000000.parquet", 10, chunk=0)],
        watermark_before={"cursor": 5},
        state_version=4,
        rows=10,
        types={"id": "int64"},
        plan=plan,
    )


@pytest.mark.parametrize("plan", [CHUNKS, HOSTS, None], ids=["chunks", "hosts", "none"])
def test_round_trip(plan: Plan | None) -> None:
    original = manifest(plan)

    assert Manifest.from_dict(original.to_dict()) == original
    assert Manifest.from_dict(json.loads(json.dumps(original.to_dict()))) == original
    assert json.loads(json.dumps(original.to_dict())) == original.to_dict()


def test_plan_is_tagged_with_its_type() -> None:
    assert manifest(CHUNKS).to_dict()["plan"] == {
        "type": "chunks",
        "chunks": 3,
        "workers": 2,
        "key_boundaries": [100, {"$date": "2026-01-01"}],
    }
    assert manifest(HOSTS).to_dict()["plan"] == {
        "type": "hosts",
        "host_source": "group",
        "query_time_range": "30d",
        "group": "DB组",
    }
    assert manifest(None).to_dict()["plan"] is None


def test_chunked_detection() -> None:
    assert is_chunked(manifest(CHUNKS)) and chunk_workers(manifest(CHUNKS)) == 2
    assert not is_chunked(manifest(HOSTS))
    assert not is_chunked(manifest(None))
    assert is_chunked(transformed_manifest(manifest(CHUNKS), {"id": "int64"}))


def previous_format(details: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the previous version staged it: ``details`` instead of ``plan``."""
    data = manifest(None).to_dict()
    del data["plan"]
    return {**data, "details": details}


def test_previous_format_is_converted() -> None:
    chunked = previous_format({"chunks": 3, "workers": 2, "key_boundaries": [100, {"$date": "2026-01-01"}]})
    hosts = previous_format({"host_source": "group", "query_time_range": "30d", "group": "DB组"})

    assert Manifest.from_dict(chunked) == manifest(CHUNKS)
    assert Manifest.from_dict(hosts) == manifest(HOSTS)
    assert Manifest.from_dict(previous_format({})) == manifest(None)


def test_unreadable_manifest_names_the_problem() -> None:
    data = manifest(CHUNKS).to_dict()

    with pytest.raises(StagingError, match="plan of unknown type 'shards'"):
        Manifest.from_dict({**data, "plan": {"type": "shards", "count": 2}})
    with pytest.raises(StagingError, match="sync orders: a staged manifest has unknown fields extra"):
        Manifest.from_dict({**data, "extra": 1})
