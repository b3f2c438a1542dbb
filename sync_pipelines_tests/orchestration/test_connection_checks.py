"""The connection test in Dagster: the ``endpoints_reachable`` asset checks and the ``check_connections`` job."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_sensor_context,
)

from sync_pipelines.config import SyncConfig
from sync_pipelines.orchestration import build_definitions
from sync_pipelines.orchestration.connection_checks import (
    CHECK_JOB_NAME,
    CHECK_MAX_AGE_S,
    CHECK_NAME,
    CHECK_OP_NAME,
    CHECK_SENSOR_NAME,
    build_endpoint_check,
    stale_checks,
)
from sync_pipelines_tests.support.databases import Databases


def sync(dbs: Databases, name: str, table: str = "orders") -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "source": {"kind": "sql", "url": dbs.source_url, "table": table},
            "target": {"kind": "sql", "url": dbs.target_url, "table": name, "key": ["id"]},
            "mapping": {"id": {"type": "integer"}},
        }
    )


@pytest.fixture
def configs(sqlite_dbs: Databases) -> list[SyncConfig]:
    engine = sqlite_dbs.source()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    return [sync(sqlite_dbs, "healthy"), sync(sqlite_dbs, "broken", table="gone")]


def run_check_job(configs: list[SyncConfig], instance: DagsterInstance, syncs: list[str]) -> Any:
    job = build_definitions(configs).resolve_job_def(CHECK_JOB_NAME)
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {CHECK_OP_NAME: {"config": {"syncs": syncs}}}},
        raise_on_error=False,
    )


def test_every_sync_asset_has_a_non_blocking_endpoints_check(configs: list[SyncConfig]) -> None:
    defs = build_definitions(configs)
    graph = defs.resolve_asset_graph()
    assert {AssetCheckKey(AssetKey(c.name), CHECK_NAME) for c in configs} <= set(graph.asset_check_keys)
    check = build_endpoint_check(configs[0])
    specs = list(check.check_specs)
    assert [s.name for s in specs] == [CHECK_NAME] and specs[0].blocking is False
    assert specs[0].description and "Connection test of sync `healthy`" in specs[0].description
    schedule = defs.resolve_schedule_def("check_connections_schedule")
    assert schedule.job_name == CHECK_JOB_NAME and schedule.cron_schedule == "0 * * * *"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    # A sync's own job does not run the connection check.
    job = defs.resolve_job_def("sync_healthy")
    assert all(not node.name.endswith(CHECK_NAME) for node in job.graph.node_defs)


@pytest.mark.slow
def test_the_asset_check_reports_each_endpoint(configs: list[SyncConfig]) -> None:
    healthy, broken = (build_endpoint_check(c)() for c in configs)
    assert healthy.passed is True
    assert [r.data["status"] for r in healthy.metadata["endpoints"].records] == ["OK", "OK"]
    assert broken.passed is False
    assert broken.description == "source: source table 'gone' does not exist"
    records = broken.metadata["endpoints"].records
    assert [(r.data["role"], r.data["status"]) for r in records] == [("source", "FAILED"), ("target", "OK")]


@pytest.mark.slow
def test_the_job_records_check_evaluations_and_fails_on_a_broken_sync(configs: list[SyncConfig]) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = run_check_job(configs, instance, [])
        assert not result.success
        evaluations = {
            e.event_specific_data.asset_key.path[0]: e.event_specific_data
            for e in result.all_events
            if e.event_type is DagsterEventType.ASSET_CHECK_EVALUATION
        }
        assert {name: ev.passed for name, ev in evaluations.items()} == {"healthy": True, "broken": False}
        assert evaluations["broken"].blocking is False
        failure = next(e for e in result.all_events if e.event_type is DagsterEventType.STEP_FAILURE)
        assert "connection check failed for: broken" in failure.step_failure_data.user_failure_data.description

        # The evaluations are stored as executions of the asset checks (the UI's check history).
        for name, passed in (("healthy", "SUCCEEDED"), ("broken", "FAILED")):
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey(name), CHECK_NAME), limit=1
            )
            assert [h.status.value for h in history] == [passed]
            assert history[0].run_id == result.run_id

        only_healthy = run_check_job(configs, instance, ["healthy"])
        assert only_healthy.success
        checked = [
            e.event_specific_data.asset_key.path[0]
            for e in only_healthy.all_events
            if e.event_type is DagsterEventType.ASSET_CHECK_EVALUATION
        ]
        assert checked == ["healthy"]

        unknown = run_check_job(configs, instance, ["nope"])
        assert not unknown.success
        failure = next(e for e in unknown.all_events if e.event_type is DagsterEventType.STEP_FAILURE)
        assert failure.step_failure_data.user_failure_data.description == (
            "unknown sync 'nope'; known syncs: broken, healthy"
        )


@pytest.mark.slow
def test_the_sensor_checks_the_syncs_never_checked_then_waits_a_day(configs: list[SyncConfig]) -> None:
    defs = build_definitions(configs)
    sensor_def = defs.resolve_sensor_def(CHECK_SENSOR_NAME)
    assert sensor_def.default_status == DefaultSensorStatus.RUNNING
    with DagsterInstance.ephemeral() as instance:
        assert stale_checks(instance, configs, CHECK_MAX_AGE_S) == ["healthy", "broken"]
        [request] = sensor_def.evaluate_tick(build_sensor_context(instance=instance, definitions=defs)).run_requests
        assert request.run_config == {"ops": {CHECK_OP_NAME: {"config": {"syncs": ["healthy", "broken"]}}}}

        run_check_job(configs, instance, ["healthy"])

        assert stale_checks(instance, configs, CHECK_MAX_AGE_S) == ["broken"]
        assert stale_checks(instance, configs, max_age_s=-1) == ["healthy", "broken"]  # all older than -1 s
        run_check_job(configs, instance, ["broken"])  # fails (its source table is gone), yet it was evaluated
        tick = sensor_def.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
        assert not tick.run_requests and tick.skip_message and "less than 24 h old" in tick.skip_message
