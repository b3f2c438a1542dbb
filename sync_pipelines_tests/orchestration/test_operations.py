"""Operating syncs: partition windows, retry waits, termination at a batch boundary, schedules and sensors."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import signal
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterExecutionInterruptedError,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    build_op_context,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
)
from dagster._core.errors import raise_execution_interrupts
from dagster._utils.interrupts import capture_interrupts
from pydantic import ValidationError

from sync_pipelines import engine
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.operations import Retry
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.engine.load import BatchLoader
from sync_pipelines.engine.manifest import RunOptions
from sync_pipelines.errors import RunCancelled, SourcePollError
from sync_pipelines.orchestration import build_definitions, job_name, schedule_name
from sync_pipelines.orchestration.interrupts import run_interruptible
from sync_pipelines.orchestration.jobs import job_run_config
from sync_pipelines.orchestration.ledger_sensors import FAILURE_SENSOR_NAME
from sync_pipelines.orchestration.names import Tag, source_sensor_name
from sync_pipelines.orchestration.partitions import covered_partitions
from sync_pipelines.orchestration.retries import retry_wait
from sync_pipelines_tests.support.databases import Databases

DAY = [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)]


def orders(n_per_day: int = 4) -> list[dict[str, Any]]:
    """Rows spread over three days; the first row of each day sits exactly on midnight."""
    rows = []
    for d, day in enumerate(DAY):
        for i in range(n_per_day):
            rows.append({"id": d * 100 + i + 1, "status": "open", "updated_at": day + dt.timedelta(hours=6 * i)})
    return rows


def make_orders(url: str, rows: list[dict[str, Any]]) -> None:
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(20)),
        sa.Column("updated_at", sa.DateTime),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.delete())
        if rows:
            conn.execute(table.insert(), rows)
    engine.dispose()


def config(dbs: Databases, **overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "orders",
        "description": "Orders by day.",
        "source": {"kind": "sql", "url": dbs.source_url, "table": "orders"},
        "target": {"kind": "sql", "url": dbs.target_url, "table": "orders", "key": ["id"]},
        "mode": "incremental",
        "cursor": "updated_at",
        "batch_size": 3,
        "partitions": {"granularity": "daily", "start": "2024-01-01"},
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


def target_ids(dbs: Databases) -> list[int]:
    engine = dbs.target()
    with engine.connect() as conn:
        ids = sorted(int(r[0]) for r in conn.execute(sa.text("SELECT id FROM orders")))
    engine.dispose()
    return ids


# ----------------------------------------------------------------------------- config


def test_partitions_and_the_realtime_sensor_need_an_incremental_sync(sqlite_dbs: Databases) -> None:
    with pytest.raises(ValidationError, match="partitions: need mode `incremental`"):
        config(sqlite_dbs, mode="full", cursor=None)
    with pytest.raises(ValidationError, match="realtime: needs mode `incremental`"):
        config(sqlite_dbs, mode="full", cursor=None, partitions=None, realtime={})
    cfg = config(sqlite_dbs, partitions={"granularity": "hourly", "start": "2024-01-01 06:00"})
    assert cfg.partitions is not None and cfg.partitions.start == dt.datetime(2024, 1, 1, 6)
    with pytest.raises(ValidationError, match="without a UTC offset"):
        config(sqlite_dbs, partitions={"granularity": "daily", "start": "2024-01-01T00:00:00+08:00"})


# ----------------------------------------------------------------------------- windows


@pytest.mark.slow
def test_a_window_run_reads_only_its_window_and_leaves_the_watermark(dbs: Databases) -> None:
    make_orders(dbs.source_url, orders())
    cfg = config(dbs)
    window = (DAY[1], DAY[2])

    result = engine.run_sync(cfg, RunOptions(run_id="w1", window=window))

    assert result.status.value == "completed"
    assert target_ids(dbs) == [101, 102, 103, 104]  # 2024-01-02 00:00 included, 2024-01-03 00:00 not
    assert result.counts.created == 4
    assert result.watermark_after is None  # a window never moves the watermark
    # An incremental run without a window still reads everything after the (empty) watermark.
    later = engine.run_sync(cfg, RunOptions(run_id="w2"))
    assert later.counts.created == 8 and later.counts.unchanged == 4
    assert target_ids(dbs) == sorted(r["id"] for r in orders())


@pytest.mark.slow
def test_partitioned_job_runs_one_partition_and_still_runs_without_one(sqlite_dbs: Databases) -> None:
    make_orders(sqlite_dbs.source_url, orders())
    defs = build_definitions([config(sqlite_dbs)])
    job = defs.resolve_job_def(job_name("orders"))
    with DagsterInstance.ephemeral() as instance:
        one = job.execute_in_process(instance=instance, partition_key="2024-01-03")
        assert one.success
        assert target_ids(sqlite_dbs) == [201, 202, 203, 204]
        [materialization] = one.asset_materializations_for_node("orders")
        assert materialization.partition == "2024-01-03"
        assert materialization.metadata["window"].value == "[2024-01-03 00:00:00, 2024-01-04 00:00:00)"

        whole = job.execute_in_process(
            instance=instance, run_config={"ops": {"orders": {"config": {"full_sync": True}}}}
        )
        assert whole.success
        assert len(target_ids(sqlite_dbs)) == 12


@pytest.mark.slow
def test_a_single_run_backfill_reads_the_whole_range_in_one_run(sqlite_dbs: Databases) -> None:
    make_orders(sqlite_dbs.source_url, orders())
    partitions = {"granularity": "daily", "start": "2024-01-01", "backfill": "single_run"}
    job = build_definitions([config(sqlite_dbs, partitions=partitions)]).resolve_job_def(job_name("orders"))
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2024-01-01",
                "dagster/asset_partition_range_end": "2024-01-02",
            },
        )
    assert result.success
    assert target_ids(sqlite_dbs) == [1, 2, 3, 4, 101, 102, 103, 104]
    [*materializations] = result.asset_materializations_for_node("orders")
    assert {m.partition for m in materializations} == {"2024-01-01", "2024-01-02"}
    assert {m.metadata["window"].value for m in materializations} == {"[2024-01-01 00:00:00, 2024-01-03 00:00:00)"}


@pytest.mark.slow
def test_unpartitioned_runs_materialize_the_partitions_they_read(sqlite_dbs: Databases) -> None:
    """A scheduled or manual run of a partitioned sync fills the partitions it read: the asset never looks empty."""
    make_orders(sqlite_dbs.source_url, orders())
    job = build_definitions([config(sqlite_dbs)]).resolve_job_def(job_name("orders"))
    late = {"id": 900, "status": "new", "updated_at": DAY[2] + dt.timedelta(days=2)}

    def partitions_of(result: Any) -> set[str | None]:
        return {m.partition for m in result.asset_materializations_for_node("orders")}

    with DagsterInstance.ephemeral() as instance:
        first = job.execute_in_process(instance=instance)
        assert partitions_of(first) == {None, "2024-01-01", "2024-01-02", "2024-01-03"}  # the whole asset, and its days
        # The asset's latest materialization is the run's own, with its counts, not the last day it covered.
        latest = instance.get_latest_materialization_event(AssetKey("orders"))
        assert latest is not None and latest.asset_materialization is not None
        assert latest.asset_materialization.partition is None
        assert latest.asset_materialization.metadata["created"].value == len(orders())
        assert set(instance.get_materialized_partitions(AssetKey("orders"))) == {
            "2024-01-01",
            "2024-01-02",
            "2024-01-03",
        }

        make_orders(sqlite_dbs.source_url, [*orders(), late])
        second = job.execute_in_process(instance=instance)
        # From the watermark (Jan 3, 18:00) to the new row (Jan 5): the partitions of the rows read.
        assert partitions_of(second) == {None, "2024-01-03", "2024-01-04", "2024-01-05"}

        flags = job_run_config("orders", partitioned=True, full_sync=False, dry_run=True)
        assert partitions_of(job.execute_in_process(instance=instance, run_config=flags)) == set()


def test_covered_partitions_follow_the_watermark() -> None:
    cfg = SyncConfig.model_validate(
        {
            "name": "orders",
            "source": {"kind": "sql", "url": "sqlite:///s.db", "table": "orders"},
            "target": {"kind": "sql", "url": "sqlite:///t.db", "table": "orders", "key": ["id"]},
            "mode": "incremental",
            "cursor": "updated_at",
            "partitions": {"granularity": "daily", "start": "2024-01-01"},
        }
    )
    now = dt.datetime(2024, 1, 10, 12, tzinfo=dt.UTC)
    jan4 = {"cursor": {"$datetime": "2024-01-04T06:00:00"}, "key": [1]}
    jan6 = {"cursor": "2024-01-06T01:00:00", "key": [2]}
    jan12 = {"cursor": "2024-01-12T01:00:00", "key": [3]}

    assert covered_partitions(cfg, (None, jan4), False, now) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert covered_partitions(cfg, (jan4, jan6), False, now) == ["2024-01-04", "2024-01-05", "2024-01-06"]
    assert covered_partitions(cfg, (jan4, jan4), False, now) == ["2024-01-04"]  # nothing new: its own day
    assert covered_partitions(cfg, (jan4, jan6), True, now)[0] == "2024-01-01"  # a full sync read everything
    assert covered_partitions(cfg, (jan6, jan12), False, now)[-1] == "2024-01-09"  # only days ended by now
    assert covered_partitions(cfg, (None, None), False, now) == []  # an empty source


def test_backfill_policy_follows_the_config(sqlite_dbs: Databases) -> None:
    multi = build_definitions([config(sqlite_dbs)]).resolve_assets_def("orders")
    single = build_definitions(
        [config(sqlite_dbs, partitions={"granularity": "daily", "start": "2024-01-01", "backfill": "single_run"})]
    ).resolve_assets_def("orders")
    assert multi.backfill_policy is not None and multi.backfill_policy.max_partitions_per_run == 1
    assert single.backfill_policy is not None and single.backfill_policy.max_partitions_per_run is None


# ----------------------------------------------------------------------------- retries


def test_retry_waits_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = Retry(max_retries=5, delay_s=2, max_delay_s=10)
    rng = random.Random(7)
    waits = [[retry_wait(policy, n, rng) for _ in range(200)] for n in range(5)]
    for n, base in enumerate([2, 4, 8, 10, 10]):
        assert all(0.5 * base <= w < 1.5 * base for w in waits[n])
        assert len(set(waits[n])) > 100  # jitter spreads them


# ----------------------------------------------------------------------------- interrupts


@pytest.mark.slow
def test_an_interrupt_stops_the_load_at_the_next_batch_boundary(sqlite_dbs: Databases, monkeypatch: Any) -> None:
    make_orders(sqlite_dbs.source_url, orders())
    cfg = config(sqlite_dbs, partitions=None)
    options = RunOptions(run_id="int1")
    staged = engine.transform(cfg, engine.extract(cfg, options), options)
    original = BatchLoader.write_plan
    started = threading.Event()

    def slow_upsert(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
        started.set()
        time.sleep(0.5)
        original(self, conn, plan, batch)

    monkeypatch.setattr(BatchLoader, "write_plan", slow_upsert)
    threading.Thread(target=lambda: started.wait(30) and os.kill(os.getpid(), signal.SIGINT), daemon=True).start()

    context = build_op_context()
    with pytest.raises(DagsterExecutionInterruptedError), capture_interrupts(), raise_execution_interrupts():
        run_interruptible(context, options, lambda: engine.load(cfg, staged, options))

    assert options.stop_requested.is_set()
    # The batch in progress when the interrupt came was committed whole, with its watermark; no later batch ran.
    ids = target_ids(sqlite_dbs)
    assert ids == sorted(r["id"] for r in orders())[:3]
    state = SqlTargetWriter(cfg).current_state()
    assert state.last_batch == 0 and state.watermark is not None and state.watermark["key"] == [ids[-1]]
    # The next run resumes after the committed batch.
    monkeypatch.setattr(BatchLoader, "write_plan", original)
    resumed = engine.run_sync(cfg, RunOptions(run_id="int2"))
    assert resumed.counts.created == 9 and len(target_ids(sqlite_dbs)) == 12


def test_the_stop_flag_raises_run_cancelled_before_the_next_batch(sqlite_dbs: Databases) -> None:
    make_orders(sqlite_dbs.source_url, orders())
    cfg = config(sqlite_dbs, partitions=None)
    options = RunOptions(run_id="c1")
    staged = engine.transform(cfg, engine.extract(cfg, options), options)
    options.stop_requested.set()
    with pytest.raises(RunCancelled, match="stopped before batch 0"):
        run_interruptible(build_op_context(), options, lambda: engine.load(cfg, staged, options))


# ----------------------------------------------------------------------------- schedules and sensors


def test_schedule_of_a_partitioned_sync_requests_an_unpartitioned_incremental_run(sqlite_dbs: Databases) -> None:
    cfg = config(sqlite_dbs, schedule={"cron": "0 0 2 * * ?", "enabled": False})
    defs = build_definitions([cfg])
    schedule = defs.resolve_schedule_def(schedule_name("orders"))
    assert schedule.default_status is DefaultScheduleStatus.STOPPED
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2024, 1, 5, 2, tzinfo=dt.UTC)
        )
        data = schedule.evaluate_tick(context)
    [request] = data.run_requests or []
    assert request.partition_key is None  # an incremental run after the watermark, not a window
    assert schedule.job_name == job_name("orders")


def test_source_sensor_launches_a_run_only_when_the_high_water_mark_moves(sqlite_dbs: Databases) -> None:
    make_orders(sqlite_dbs.source_url, orders()[:2])
    cfg = config(sqlite_dbs, realtime={"interval_seconds": 30}, filter=[{"column": "status", "op": "ne", "value": "x"}])
    defs = build_definitions([cfg])
    sensor = defs.resolve_sensor_def(source_sensor_name("orders"))
    assert sensor.default_status is DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    with DagsterInstance.ephemeral() as instance:
        first = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
        [request] = first.run_requests or []
        assert isinstance(request, RunRequest) and first.cursor is not None
        assert json.loads(first.cursor) == {"$datetime": "2024-01-01T06:00:00"}
        assert request.run_key == f"orders:{first.cursor}"

        same = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        assert not same.run_requests and same.skip_message and "still" in same.skip_message
        assert same.cursor == first.cursor

        # A row filtered out does not move the mark; a matching one does.
        engine_ = sqlite_dbs.source()
        with engine_.begin() as conn:
            conn.execute(sa.text("INSERT INTO orders VALUES (900, 'x', '2030-01-01 00:00:00.000000')"))
        assert not sensor.evaluate_tick(
            build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
        ).run_requests
        with engine_.begin() as conn:
            conn.execute(sa.text("INSERT INTO orders VALUES (901, 'open', '2024-02-01 00:00:00.000000')"))
        engine_.dispose()
        moved = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        [again] = moved.run_requests or []
        assert again.run_key != request.run_key
        assert json.loads(moved.cursor or "null") == {"$datetime": "2024-02-01T00:00:00"}


def test_source_sensor_on_an_empty_source_skips_and_a_broken_source_fails_loudly(
    sqlite_dbs: Databases, caplog: pytest.LogCaptureFixture
) -> None:
    make_orders(sqlite_dbs.source_url, [])
    cfg = config(sqlite_dbs, realtime={"enabled": False})
    defs = build_definitions([cfg])
    sensor = defs.resolve_sensor_def(source_sensor_name("orders"))
    assert sensor.default_status is DefaultSensorStatus.STOPPED
    with DagsterInstance.ephemeral() as instance:
        empty = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
        assert not empty.run_requests and "no rows yet" in (empty.skip_message or "")

        broken = config(sqlite_dbs, realtime={}, source={"kind": "sql", "url": sqlite_dbs.source_url, "table": "nope"})
        broken_defs = build_definitions([broken])
        broken_sensor = broken_defs.resolve_sensor_def(source_sensor_name("orders"))
        with caplog.at_level(logging.ERROR), pytest.raises(Exception) as raised:
            broken_sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=broken_defs))
    assert "source table 'nope' does not exist" in str(raised.value)
    assert isinstance(raised.value, SourcePollError) or "SourcePollError" in str(raised.value)
    assert any("cannot poll the source" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.slow
def test_failure_sensor_records_a_failed_run(sqlite_dbs: Databases) -> None:
    make_orders(sqlite_dbs.source_url, orders())
    cfg = config(sqlite_dbs, source={"kind": "sql", "url": sqlite_dbs.source_url, "table": "missing"})
    defs = build_definitions([cfg])
    job = defs.resolve_job_def(job_name("orders"))
    sensor = defs.resolve_sensor_def(FAILURE_SENSOR_NAME)
    assert sensor.default_status is DefaultSensorStatus.RUNNING
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        run = result.dagster_run
        # A permanent error (a missing table) fails the step at once, with a message naming what is wrong.
        events = instance.all_logs(run.run_id)
        assert not [e for e in events if e.dagster_event_type is DagsterEventType.STEP_UP_FOR_RETRY]
        [step_failure] = [e for e in events if e.dagster_event_type is DagsterEventType.STEP_FAILURE]
        assert step_failure.dagster_event is not None
        failure_data = step_failure.dagster_event.step_failure_data.user_failure_data
        assert failure_data is not None and failure_data.description is not None
        assert "sync 'orders', extract:" in failure_data.description
        assert "source table 'missing' does not exist" in failure_data.description
        instance.add_run_tags(run.run_id, {Tag.STATUS.value: "running"})  # as if the run died before saying so
        [failure] = [e for e in instance.all_logs(run.run_id) if e.dagster_event_type is DagsterEventType.RUN_FAILURE]
        assert failure.dagster_event is not None
        context = build_run_status_sensor_context(
            sensor_name=FAILURE_SENSOR_NAME,
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run.run_id),  # type: ignore[arg-type]
        ).for_run_failure()
        sensor(context)  # type: ignore[operator]
        updated = instance.get_run_by_id(run.run_id)
    assert updated is not None and updated.tags[Tag.STATUS.value] == "failed"


# ----------------------------------------------------------------------------- signals


@pytest.mark.slow
def test_the_cli_gets_default_signal_handling_back_when_started_with_them_ignored(tmp_path: Any) -> None:
    import subprocess
    import sys

    def ignore_signals() -> None:  # what a shell started in the background passes on
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    probe = (
        "import signal, sys\n"
        "from sync_pipelines import cli\n"
        "before = signal.getsignal(signal.SIGINT) == signal.SIG_IGN\n"
        "before = before and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN\n"
        "try:\n"
        "    cli.main(['validate'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "after = signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "after = after and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL\n"
        "print('BEFORE', before, 'AFTER', after)\n"
    )
    folder = tmp_path / "empty_syncs"
    folder.mkdir()
    env = {**os.environ, "SYNC_PIPELINES_CONFIG_DIR": str(folder)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, preexec_fn=ignore_signals, timeout=120
    )
    assert "BEFORE True AFTER True" in out.stdout, out.stdout + out.stderr
