"""Host metrics from Elasticsearch into the CMDB, on the real client, server and databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from elasticsearch import Elasticsearch

from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import ConfigError, PermanentConnectorError
from sync_pipelines.kinds.host_metrics import HostOptions
from sync_pipelines.types import HostStatus, RecordAction, RunStatus
from sync_pipelines_tests.factories import host_config
from sync_pipelines_tests.support.databases import Databases
from sync_pipelines_tests.support.es import FaultProxy, point
from sync_pipelines_tests.support.hosts import by_ip, register_pool, resources, seed_metrics

IN_POOL = ["10.1.1.1", "10.1.1.2", "10.1.1.3"]


@pytest.mark.slow
def test_host_list_run_writes_maxima_and_reports_every_status(
    dbs: Databases, es: Elasticsearch, index_prefix: str, fault_proxy: FaultProxy
) -> None:
    seed_metrics(es, index_prefix)
    pool = register_pool(dbs.target_url, IN_POOL)
    fault_proxy.fail.add("10.1.1.3")
    config = host_config(fault_proxy.url, dbs.target_url, f"{index_prefix}-*")
    options = RunOptions(
        run_id="run-list", kind_options=HostOptions(host_ip_list=["10.1.1.1", "10.1.1.2", "10.1.1.3", "10.1.1.99"])
    )

    result = run_sync(config, options)

    hosts = by_ip(result)
    assert {ip: h["status"] for ip, h in hosts.items()} == {
        "10.1.1.1": HostStatus.SUCCESS,
        "10.1.1.2": HostStatus.NO_DATA,
        "10.1.1.3": HostStatus.FAILED,
        "10.1.1.99": HostStatus.NOT_IN_POOL,
    }
    assert hosts["10.1.1.1"]["error"] is None
    assert "HTTP 500" in hosts["10.1.1.3"]["error"] and "Data too large" in hosts["10.1.1.3"]["error"]
    assert hosts["10.1.1.1"]["data_points"] == 2
    assert hosts["10.1.1.1"]["avg_cpu"] == pytest.approx((35.5 + 85.5) / 2)
    assert resources(dbs.target_url) == {
        pool["10.1.1.1"]: {
            "pool_id": pool["10.1.1.1"],
            "ip": "10.1.1.1",
            "cpu_load": pytest.approx(85.5),
            "used_memory": pytest.approx(120.5),
            "total_disk": pytest.approx(500.0),
        }
    }
    assert result.status is RunStatus.PARTIAL
    assert result.counts.processed == 4 and result.counts.failed == 1 and result.counts.created == 1
    assert result.counts.skipped == 2
    assert result.details["not_in_pool_ip_list"] == ["10.1.1.99"]
    assert result.details["failed_ip_list"] == ["10.1.1.3"]
    # The hosts_pool is untouched by a host-list run, and every outcome is recorded beside the data.
    assert "10.1.1.99" not in CmdbWriter(config).pool()
    recorded = CmdbWriter(config).host_results("run-list")
    assert sorted((r["host_ip"], r["status"]) for r in recorded) == sorted((ip, h["status"]) for ip, h in hosts.items())


def test_pool_run_queries_every_registered_host_and_updates_in_place(
    sqlite_dbs: Databases, es: Elasticsearch, index_prefix: str
) -> None:
    seed_metrics(es, index_prefix)
    pool = register_pool(sqlite_dbs.target_url, ["10.1.1.1", "10.1.2.1"])
    config = host_config(es.transport.node_pool.get().base_url, sqlite_dbs.target_url, f"{index_prefix}-*")

    first = run_sync(config, RunOptions(run_id="run-1"))
    assert first.status is RunStatus.COMPLETED
    assert first.details["host_source"] == "pool"
    assert sorted(by_ip(first)) == ["10.1.1.1", "10.1.2.1"]
    assert first.counts.created == 2

    es.index(index=f"{index_prefix}-2025.01", document=point("10.1.2.1", 0.5, cpu=97.0, memory=1.0, disk=1.0))
    es.indices.refresh(index=f"{index_prefix}-2025.01")
    second = run_sync(config, RunOptions(run_id="run-2"))
    assert (second.counts.updated, second.counts.unchanged) == (1, 1)
    # Each list names only the hosts whose action it describes.
    assert second.details["updated_host_ip_list"] == ["10.1.2.1"]
    assert second.details["unchanged_host_ip_list"] == ["10.1.1.1"]
    assert resources(sqlite_dbs.target_url)[pool["10.1.2.1"]]["cpu_load"] == pytest.approx(97.0)
    updated = [s for s in second.samples if s.action is RecordAction.UPDATED]
    assert updated[0].key == {"host_ip": "10.1.2.1"} and updated[0].changes["cpu_load"][1] == pytest.approx(97.0)


@pytest.mark.slow
def test_group_full_sync_registers_new_hosts(dbs: Databases, es: Elasticsearch, index_prefix: str) -> None:
    seed_metrics(es, index_prefix)
    pool = register_pool(dbs.target_url, ["10.1.1.1"])
    config = host_config(es.transport.node_pool.get().base_url, dbs.target_url, f"{index_prefix}-*")

    result = run_sync(config, RunOptions(run_id="run-group", full_sync=True))

    assert result.details["host_source"] == "group" and result.details["group"] == "DB组"
    # 10.1.1.2 has only data older than the range, 10.9.9.9 is in another group: neither is discovered.
    assert result.details["new_host_ip_list"] == ["10.1.1.3", "10.1.1.99", "10.1.2.1", "10.1.2.2"]
    assert result.details["updated_host_ip_list"] == ["10.1.1.1"]
    assert result.details["failed_ip_list"] == []
    registered = CmdbWriter(config).pool()
    assert sorted(registered) == ["10.1.1.1", "10.1.1.3", "10.1.1.99", "10.1.2.1", "10.1.2.2"]
    assert registered["10.1.1.1"] == pool["10.1.1.1"]
    assert resources(dbs.target_url)[registered["10.1.2.2"]]["total_disk"] == pytest.approx(100.0)
    engine = sa.create_engine(dbs.target_url)
    with engine.connect() as conn:
        name = conn.execute(sa.text("SELECT host_name FROM hosts_pool WHERE host_ip = '10.1.2.1'")).scalar_one()
    engine.dispose()
    assert name == "host-10-1-2-1"

    again = run_sync(config, RunOptions(run_id="run-group-2", full_sync=True))
    assert again.details["new_host_ip_list"] == []
    # Nothing changed: every host is listed as unchanged, none as updated.
    assert again.details["updated_host_ip_list"] == [] and again.counts.unchanged == 5
    assert again.details["unchanged_host_ip_list"] == ["10.1.1.1", "10.1.1.3", "10.1.1.99", "10.1.2.1", "10.1.2.2"]


def test_group_discovery_refuses_a_truncated_host_list(
    sqlite_dbs: Databases, es: Elasticsearch, index_prefix: str
) -> None:
    seed_metrics(es, index_prefix)
    config = host_config(
        es.transport.node_pool.get().base_url, sqlite_dbs.target_url, f"{index_prefix}-*", hosts="group", max_hosts=3
    )
    with pytest.raises(PermanentConnectorError, match=r"more than max_hosts=3 hosts; the host list would be truncated"):
        run_sync(config, RunOptions(run_id="run-trunc"))
    assert CmdbWriter(config).pool() == {}


@pytest.mark.slow
def test_a_timed_out_host_fails_alone_and_concurrency_is_bounded(
    sqlite_dbs: Databases, es: Elasticsearch, index_prefix: str, fault_proxy: FaultProxy
) -> None:
    seed_metrics(es, index_prefix)
    register_pool(sqlite_dbs.target_url, ["10.1.1.1", "10.1.1.3", "10.1.2.1", "10.1.2.2", "10.1.1.99"])
    fault_proxy.stall.add("10.1.1.3")
    config = host_config(
        fault_proxy.url, sqlite_dbs.target_url, f"{index_prefix}-*", request_timeout_s=3.0, max_concurrency=2
    )
    result = run_sync(config, RunOptions(run_id="run-timeout"))
    hosts = by_ip(result)
    assert hosts["10.1.1.3"]["status"] == HostStatus.FAILED
    assert "ConnectionTimeout" in hosts["10.1.1.3"]["error"]
    assert [ip for ip, h in hosts.items() if h["status"] == HostStatus.SUCCESS] == [
        "10.1.1.1",
        "10.1.1.99",
        "10.1.2.1",
        "10.1.2.2",
    ]
    assert 1 <= fault_proxy.max_in_flight <= 2


def test_time_range_override_and_malformed_ranges(sqlite_dbs: Databases, es: Elasticsearch, index_prefix: str) -> None:
    seed_metrics(es, index_prefix)
    pool = register_pool(sqlite_dbs.target_url, ["10.1.1.1", "10.1.1.2"])
    config = host_config(es.transport.node_pool.get().base_url, sqlite_dbs.target_url, f"{index_prefix}-*")
    wide = run_sync(config, RunOptions(run_id="run-wide", kind_options=HostOptions(query_time_range="60d")))
    assert by_ip(wide)["10.1.1.2"]["status"] == HostStatus.SUCCESS
    assert resources(sqlite_dbs.target_url)[pool["10.1.1.1"]]["cpu_load"] == pytest.approx(99.0)
    narrow = run_sync(config, RunOptions(run_id="run-narrow", kind_options=HostOptions(query_time_range="24h")))
    assert by_ip(narrow)["10.1.1.1"]["data_points"] == 1
    assert by_ip(narrow)["10.1.1.2"]["status"] == HostStatus.NO_DATA
    with pytest.raises(ConfigError, match=r"host_metrics: query_time_range: invalid time range '30 days'"):
        run_sync(config, RunOptions(run_id="run-bad", kind_options=HostOptions(query_time_range="30 days")))
    for bad in ("7x", "0d", "d7", ""):
        with pytest.raises(ValueError, match="invalid time range"):
            host_config("http://es:9200", sqlite_dbs.target_url, "x-*", query_time_range=bad)
