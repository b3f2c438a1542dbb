"""Outages: a source or target that is unreachable at start or drops mid-run, and an Elasticsearch host timing out.

Each failure gives the right status and a message naming the endpoint without its password; nothing
committed is lost; the next run completes. Connection drops are real: the test terminates the
PostgreSQL backend of the sync's connection with ``pg_terminate_backend`` (the server keeps running).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance
from elasticsearch import Elasticsearch

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.orchestration import execute_sync
from sync_pipelines.types import HostStatus, RunStatus
from sync_pipelines_tests.support import faults as fs
from sync_pipelines_tests.support.databases import OUTAGE_SECRET as SECRET
from sync_pipelines_tests.support.databases import Databases, terminate, with_password
from sync_pipelines_tests.support.es import FaultProxy
from sync_pipelines_tests.support.hosts import by_ip, register_pool, seed_metrics

CLOSED = "127.0.0.1:1"
OUTAGES: list[str] = []


def closed_port(url: str) -> str:
    """``url`` pointing at a port nothing listens on."""
    return url.replace("127.0.0.1:5432", CLOSED)


def outage_config(dbs: Databases, *, source: str | None = None, target: str | None = None) -> dict[str, Any]:
    data = fs.sync_config(dbs, batch_size=4)
    data["source"]["url"] = source or with_password(dbs.source_url)
    data["target"]["url"] = target or with_password(dbs.target_url)
    data["retry"] = {"max_retries": 1, "delay_s": 0}  # one quick retry: a closed port stays closed
    return data


def execute(folder: Path, data: dict[str, Any]) -> Any:
    """Run the sync through Dagster from a folder of its own (Dagster caches a job per folder and process)."""
    folder = folder / f"attempt-{len(list(folder.parent.glob(folder.name + '/attempt-*')))}"
    folder.mkdir(parents=True)
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return execute_sync("items_sync", instance=DagsterInstance.get(), config_directory=folder)


def assert_same(dbs: Databases) -> None:
    fs.assert_no_duplicates(dbs)
    assert fs.checksum(fs.target_rows(dbs)) == fs.checksum(fs.source_rows(dbs))
    fs.assert_watermark_committed(dbs)
    fs.assert_bookkeeping_agrees(dbs)


@pytest.mark.parametrize("side", ["source", "target"])
def test_unreachable_at_start_fails_naming_the_endpoint(pg: Databases, tmp_path: Path, side: str) -> None:
    fs.seed_source(pg, 20)
    folder = tmp_path / "syncs"
    good = outage_config(pg)
    assert execute(folder, good).status is RunStatus.COMPLETED
    before = fs.checksum(fs.target_rows(pg))
    fs.change_source(pg, random.Random(1), 1, updates=8, inserts=2)

    broken = dict(good)
    broken[side] = {**good[side], "url": closed_port(good[side]["url"])}
    report = execute(folder, broken)
    assert report.status is RunStatus.FAILED
    assert report.error is not None and CLOSED in report.error, report.error
    assert SECRET not in report.error and "***" in report.error
    assert fs.checksum(fs.target_rows(pg)) == before  # nothing committed is lost or half-written
    fs.assert_watermark_committed(pg)

    assert execute(folder, good).status is RunStatus.COMPLETED
    assert_same(pg)
    OUTAGES.append(f"{side} unreachable at start")


@pytest.mark.parametrize(("side", "pause"), [("source", "extract:1"), ("target", "load-txn:1")])
def test_connection_dropped_mid_run(pg: Databases, tmp_path: Path, side: str, pause: str) -> None:
    fs.seed_source(pg, 40)
    data = outage_config(pg)
    config = SyncConfig.model_validate(data)
    assert run_sync(config, RunOptions(run_id="first")).status is RunStatus.COMPLETED
    fs.change_source(pg, random.Random(2), 1, updates=20, inserts=4)

    resume = tmp_path / "resume"
    proc = fs.start_child(data, "dropped", tmp_path, SYNC_FAULT_PAUSE_AT=pause, SYNC_FAULT_RESUME_FILE=str(resume))
    fs.wait_for_line(proc, "PAUSED")
    assert terminate(pg.source_url if side == "source" else pg.target_url) >= 1
    resume.write_text("go")
    out, err = proc.communicate(timeout=120)
    if side == "source":
        # A PostgreSQL source is read with one COPY, whose rows (all of them, here) were received before the
        # connection was dropped: the run has what it needs and completes, and the target equals the source.
        assert proc.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1].startswith("RESULT "), out[-2000:]
        assert_same(pg)
    else:
        # The batch whose connection was dropped rolls back whole and is tried again on a new connection
        # (a transient error): the run completes with nothing lost and nothing written twice.
        assert proc.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1].startswith("RESULT "), out[-2000:]
        assert SECRET not in out + err
        assert_same(pg)
        fs.assert_no_duplicates(pg)
        fs.assert_watermark_committed(pg)
        fs.assert_bookkeeping_agrees(pg)

    assert run_sync(config, RunOptions(run_id="next")).status is RunStatus.COMPLETED
    assert_same(pg)
    OUTAGES.append(f"{side} dropped at {pause}")


def test_elasticsearch_host_timeout_is_a_partial_run_then_completes(
    sqlite_dbs: Databases,
    es: Elasticsearch,
    index_prefix: str,
    fault_proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNC_OUTAGE_ES_PW", SECRET)
    seed_metrics(es, index_prefix)
    register_pool(sqlite_dbs.target_url, ["10.1.1.1", "10.1.1.3", "10.1.2.1", "10.1.2.2"])
    fault_proxy.stall.add("10.1.1.3")
    config = SyncConfig.model_validate(
        {
            "name": "host_metrics",
            "source": {
                "kind": "elasticsearch_hosts",
                "endpoint": fault_proxy.url,
                "index": f"{index_prefix}-*",
                "username": "metrics",
                "password": "${SYNC_OUTAGE_ES_PW}",
                "request_timeout_s": 2.0,
            },
            "target": {"kind": "cmdb", "url": sqlite_dbs.target_url},
            "max_failure_ratio": 0.5,
        }
    )
    first = run_sync(config, RunOptions(run_id="es-timeout"))
    assert first.status is RunStatus.PARTIAL
    hosts = by_ip(first)
    assert hosts["10.1.1.3"]["status"] == HostStatus.FAILED and "10.1.1.3" in str(hosts["10.1.1.3"])
    assert "Timeout" in hosts["10.1.1.3"]["error"]
    assert SECRET not in repr(first)
    committed = {ip for ip, h in hosts.items() if h["status"] == HostStatus.SUCCESS}
    assert committed == {"10.1.1.1", "10.1.2.1", "10.1.2.2"}

    fault_proxy.stall.clear()
    second = run_sync(config, RunOptions(run_id="es-next"))
    assert second.status is RunStatus.COMPLETED
    assert {ip for ip, h in by_ip(second).items() if h["status"] == HostStatus.SUCCESS} >= committed | {"10.1.1.3"}
    OUTAGES.append("elasticsearch host timeout")
