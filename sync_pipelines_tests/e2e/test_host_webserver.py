"""Host-metrics syncs in the real Dagster webserver: the sensor is listed, and a launchpad run with a
host list and a time range runs in its own process and writes the CMDB."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from elasticsearch import Elasticsearch

from sync_pipelines_tests.factories import host_sync_config, write_config
from sync_pipelines_tests.support import webserver as web
from sync_pipelines_tests.support.hosts import register_pool, resources, seed_metrics

SENSORS = """
{
  repositoriesOrError {
    ... on RepositoryConnection { nodes { sensors { name minIntervalSeconds description } } }
  }
}
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@pytest.fixture
def host_sync(tmp_path: Path, es: Elasticsearch, index_prefix: str) -> dict[str, int]:
    """Seeded metrics, a pool of two hosts and the sync's configuration, written before the webserver starts."""
    seed_metrics(es, index_prefix)
    pool = register_pool(f"sqlite:///{tmp_path / 'cmdb.db'}", ["10.1.1.1", "10.1.1.2"])
    url = es.transport.node_pool.get().base_url
    write_config(
        tmp_path / "syncs",
        host_sync_config(
            url,
            f"sqlite:///{tmp_path / 'cmdb.db'}",
            f"{index_prefix}-*",
            source={
                "kind": "elasticsearch_hosts",
                "endpoint": url,
                "index": f"{index_prefix}-*",
                "host_files": {"folder": str(tmp_path / "inbox"), "interval_s": 60},
            },
        ),
    )
    return pool


def test_the_ui_launches_a_host_list_run_and_lists_the_file_sensor(
    tmp_path: Path, host_sync: dict[str, int], webserver: web.Webserver
) -> None:
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    pool = host_sync
    [repository] = webserver.graphql(SENSORS)["repositoriesOrError"]["nodes"]
    sensors = {s["name"]: s for s in repository["sensors"]}
    assert set(sensors) == {
        "host_metrics_host_files",
        "sync_ledger_cancel_sensor",
        "sync_run_failure_sensor",
        "sync_ledger_sweep_sensor",
        "sync_dead_runs_sensor",
        "sync_statistics_sensor",
        "endpoints_reachable_sensor",
        "sync_staging_cleanup_sensor",
    }
    sensor = sensors["host_metrics_host_files"]
    assert sensor["name"] == "host_metrics_host_files" and sensor["minIntervalSeconds"] == 60
    assert str(tmp_path / "inbox") in sensor["description"]

    params = {
        "selector": {
            "repositoryLocationName": "sync_pipelines",
            "repositoryName": "__repository__",
            "jobName": "sync_host_metrics",
        },
        "runConfigData": {"host_ip_list": ["10.1.1.1", "10.1.1.99"], "query_time_range": "60d"},
    }
    launched = webserver.graphql(LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + web.RUN_TIMEOUT_S
    status = "QUEUED"
    while status not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run still {status}"
        time.sleep(1)
        status = webserver.graphql(web.RUN_STATUS, runId=run_id)["runOrError"]["status"]

    assert status == "SUCCESS"
    assert resources(target)[pool["10.1.1.1"]]["cpu_load"] == 99.0  # the 60d range reaches the old peak
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags["sync/status"] == "completed"
        [record] = instance.fetch_materializations(AssetKey("host_metrics"), limit=1).records
    metadata = record.asset_materialization.metadata if record.asset_materialization else {}
    assert metadata["not_in_pool_ip_list"].value == ["10.1.1.99"]
    assert metadata["query_time_range"].value == "60d"
