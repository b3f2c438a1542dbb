"""Host-metrics syncs through Dagster: launchpad options, per-host metadata, the Quartz schedule, termination."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance, DagsterRunStatus, Definitions, ExecuteInProcessResult
from dagster._core.snap.job_snapshot import JobSnap
from dagster._core.snap.snap_to_yaml import default_values_yaml_from_type_snap
from elasticsearch import Elasticsearch

from sync_pipelines.config import load_configs
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.engine import pool as pool_module
from sync_pipelines.orchestration import Tag, build_definitions, job_name, schedule_name
from sync_pipelines_tests.factories import host_sync_config, write_config
from sync_pipelines_tests.support.es import FaultProxy
from sync_pipelines_tests.support.hosts import register_pool, resources, seed_metrics

pytestmark = pytest.mark.slow  # every test here takes seconds (Dagster, CLI or server runs)


def run(defs: Definitions, **run_config: Any) -> ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name("host_metrics"))
    return job.execute_in_process(run_config=run_config, instance=DagsterInstance.get(), raise_on_error=False)


def load_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("host_metrics")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_launchpad_host_list_and_time_range_with_per_host_metadata(
    tmp_path: Path, es: Elasticsearch, index_prefix: str, fault_proxy: FaultProxy
) -> None:
    seed_metrics(es, index_prefix)
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    pool = register_pool(target, ["10.1.1.1", "10.1.1.2", "10.1.1.3"])
    fault_proxy.fail.add("10.1.1.3")
    write_config(tmp_path / "syncs", host_sync_config(fault_proxy.url, target, f"{index_prefix}-*"))
    defs = build_definitions(load_configs(tmp_path / "syncs"))

    result = run(defs, host_ip_list=["10.1.1.1", "10.1.1.2", "10.1.1.3", "10.1.1.99"], query_time_range="60d")

    assert result.success
    meta = load_metadata(result)
    assert meta["status"] == "partial" and meta["query_time_range"] == "60d" and meta["host_source"] == "host_list"
    assert (meta["hosts_success"], meta["hosts_failed"], meta["hosts_no_data"], meta["hosts_not_in_pool"]) == (
        2,
        1,
        0,
        1,
    )
    assert meta["failed_ip_list"] == ["10.1.1.3"] and meta["not_in_pool_ip_list"] == ["10.1.1.99"]
    rows = {r.data["host_ip"]: r.data for r in meta["hosts"].records}
    assert rows["10.1.1.3"]["status"] == "failed" and "Data too large" in rows["10.1.1.3"]["error"]
    assert rows["10.1.1.1"]["max_cpu"] == 99.0 and rows["10.1.1.1"]["data_points"] == 3
    # Averages rounded to two decimals: (35.5 + 85.5 + 99) / 3 and (60 + 120.5 + 999) / 3.
    assert (rows["10.1.1.1"]["avg_cpu"], rows["10.1.1.1"]["avg_memory"]) == (73.33, 393.17)
    assert rows["10.1.1.99"]["status"] == "not_in_pool"
    assert resources(target)[pool["10.1.1.2"]]["cpu_load"] == 50.0
    run_record = DagsterInstance.get().get_run_by_id(result.run_id)
    assert run_record is not None and run_record.tags[Tag.STATUS.value] == "partial"


def test_group_full_sync_from_the_launchpad_and_the_quartz_schedule(
    tmp_path: Path, es: Elasticsearch, index_prefix: str
) -> None:
    seed_metrics(es, index_prefix)
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    write_config(
        tmp_path / "syncs", host_sync_config(es.transport.node_pool.get().base_url, target, f"{index_prefix}-*")
    )
    defs = build_definitions(load_configs(tmp_path / "syncs"))

    schedule = defs.resolve_schedule_def(schedule_name("host_metrics"))
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "Asia/Shanghai"
    job = defs.resolve_job_def(job_name("host_metrics"))
    launchpad = job.run_config_schema.config_type.fields  # type: ignore[attr-defined]  # the flat launchpad form
    assert sorted(launchpad) == ["dry_run", "full_sync", "host_ip_list", "query_time_range", "user"]
    assert all(field.description for field in launchpad.values())
    # What the launchpad pre-fills: the host list and the configured range are there to edit.
    snapshot = JobSnap.from_job_def(job)
    root = snapshot.config_schema_snapshot.get_config_snap(snapshot.mode_def_snaps[0].root_config_key)
    prefilled = yaml.safe_load(default_values_yaml_from_type_snap(snapshot.config_schema_snapshot, root))
    assert prefilled == {
        "dry_run": False,
        "full_sync": False,
        "host_ip_list": [],
        "query_time_range": "30d",
        "user": "",
    }

    dry = run(defs, full_sync=True, dry_run=True)
    assert dry.success and dry.asset_materializations_for_node("host_metrics") == []
    [observation] = [e.asset_observation_data.asset_observation for e in dry.all_events if e.is_asset_observation]
    assert observation.metadata["new_host_ip_list"].value == [
        "10.1.1.1",
        "10.1.1.3",
        "10.1.1.99",
        "10.1.2.1",
        "10.1.2.2",
    ]
    assert not sa.inspect(sa.create_engine(target)).has_table("hosts_pool")

    result = run(defs, full_sync=True)
    assert result.success
    meta = load_metadata(result)
    assert meta["host_source"] == "group"
    assert meta["new_host_ip_list"] == ["10.1.1.1", "10.1.1.3", "10.1.1.99", "10.1.2.1", "10.1.2.2"]
    assert meta["updated_host_ip_list"] == [] and meta["failed_ip_list"] == []
    assert len(resources(target)) == 5

    scheduled = run(defs)  # what the schedule starts: every host of the pool, default range
    meta = load_metadata(scheduled)
    assert meta["host_source"] == "pool" and meta["hosts_total"] == 5 and meta["unchanged"] == 5


def test_terminating_a_host_run_stops_it_at_a_batch_boundary(
    tmp_path: Path, es: Elasticsearch, index_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_metrics(es, index_prefix)
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    register_pool(target, ["10.1.1.1", "10.1.1.3", "10.1.2.1"])
    write_config(
        tmp_path / "syncs",
        host_sync_config(es.transport.node_pool.get().base_url, target, f"{index_prefix}-*", batch_size=1),
    )
    defs = build_definitions(load_configs(tmp_path / "syncs"))
    real_write = CmdbWriter.write
    batches: list[list[str]] = []

    def write_then_terminated(self: CmdbWriter, conn: Any, hosts: Any, **kwargs: Any) -> Any:
        results = real_write(self, conn, hosts, **kwargs)
        batches.append([h.host_ip for h in hosts])
        if len(batches) == 1:
            # Dagster terminates the run while the first batch is being written, as its run launcher does:
            # the run is marked CANCELING and its process interrupted. The interrupt reaches the op, which
            # asks the engine to stop; this batch still commits whole.
            instance = DagsterInstance.get()
            dagster_run = instance.get_run_by_id(kwargs["run_id"])
            assert dagster_run is not None
            instance.report_run_canceling(dagster_run)
            os.kill(os.getpid(), signal.SIGINT)
            assert pool_module._stop is not None
            while not pool_module._stop.is_set():
                time.sleep(0.05)
        return results

    monkeypatch.setattr(CmdbWriter, "write", write_then_terminated)

    result = run(defs)

    assert not result.success
    run_record = DagsterInstance.get().get_run_by_id(result.run_id)
    assert run_record is not None and run_record.status is DagsterRunStatus.CANCELED
    assert run_record.tags[Tag.STATUS.value] == "cancelled"
    assert batches == [["10.1.1.1"]]  # no later batch was started
    [config] = load_configs(tmp_path / "syncs")
    assert [r["host_ip"] for r in CmdbWriter(config).host_results(result.run_id)] == ["10.1.1.1"]
    assert len(resources(target)) == 1
    messages = [entry.user_message for entry in DagsterInstance.get().all_logs(result.run_id)]
    assert any("stopping at the next batch boundary" in m for m in messages)
    [failure] = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    assert failure.error is not None and "cancelled at a batch boundary" in failure.error.message
