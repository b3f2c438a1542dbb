"""Partition runs of one sync loading side by side: two CLI processes started together (PostgreSQL and MariaDB
targets), and a backfill launched through Dagster's GraphQL API on a live webserver and daemon.

Each test holds a lock on the target table that blocks writes (not reads) until both runs wait on it: both
load steps are then inside their first batch at once, which the shared lease allows and the exclusive
lease of plain runs would not (the second run would wait on the lease, not on the table). Once the lock
is released both runs succeed and the target holds each order once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from starlette.testclient import TestClient

from sync_pipelines.orchestration.names import Tag
from sync_pipelines.orchestration.pools import apply_pool_limits
from sync_pipelines.web.app import create_app
from sync_pipelines_tests.engine.test_partition_overlap import DAY1, two_days
from sync_pipelines_tests.factories import make_source, orders_config, run, target_rows, write_config
from sync_pipelines_tests.support.databases import Databases, make_databases
from sync_pipelines_tests.support.live import LiveDagster

CLI = [sys.executable, "-c", "from sync_pipelines.cli import main; main()"]
PARTITIONS = {"granularity": "daily", "start": "2024-03-01", "max_parallel": 2}
WAIT_S = 180.0


@pytest.fixture(params=["postgresql", "mariadb"])
def server_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases(request.param, tmp_path)


@pytest.fixture
def pg_dbs(tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases("postgresql", tmp_path)


def waiting_on_target(conn: sa.Connection, backend: str) -> int:
    """How many sessions wait for the test's lock on ``wh_orders``."""
    if backend == "postgresql":
        query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'wh_orders'::regclass"
    else:
        query = (
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = DATABASE() AND state LIKE 'Waiting for table%%' AND id <> CONNECTION_ID()"
        )
    return int(conn.exec_driver_sql(query).scalar_one())


class TargetLock:
    """A lock on ``wh_orders`` that blocks writes (not reads), and a second connection that watches who waits."""

    def __init__(self, dbs: Databases):
        self.backend = dbs.backend
        self.holder, self.watcher = dbs.target(), dbs.target()
        self.lock, self.watch = self.holder.connect(), self.watcher.connect()
        if self.backend == "postgresql":
            self.lock.exec_driver_sql(
                "LOCK TABLE wh_orders IN EXCLUSIVE MODE"
            )  # reads pass, writes and FOR UPDATE wait
        else:
            self.lock.exec_driver_sql("LOCK TABLES wh_orders READ")

    def waiting(self) -> int:
        count = waiting_on_target(self.watch, self.backend)
        self.watch.rollback()
        return count

    def release(self) -> None:
        if self.backend == "postgresql":
            self.lock.rollback()
        else:
            self.lock.exec_driver_sql("UNLOCK TABLES")
        self.lock.close()
        self.watch.close()
        self.holder.dispose()
        self.watcher.dispose()


@pytest.mark.slow
def test_two_cli_partition_runs_started_together_both_load_at_once_and_succeed(
    server_dbs: Databases, tmp_path: Path
) -> None:
    rows = two_days(200)
    make_source(server_dbs, rows)
    cfg = orders_config(server_dbs, partitions=PARTITIONS, max_failure_ratio=0, batch_size=50)
    folder = tmp_path / "syncs"
    write_config(folder, cfg)
    run(cfg, "prepare", window=(DAY1.replace(day=9), DAY1.replace(day=10)))  # an empty day: creates the tables
    with DagsterInstance.get() as instance:  # the instance's storage exists before two processes open it
        assert instance.get_runs() == []
    env = {**os.environ, "SYNC_PIPELINES_CONFIG_DIR": str(folder)}
    lock = TargetLock(server_dbs)
    procs = [
        subprocess.Popen(
            [*CLI, "run", cfg.name, "--partition", day, "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for day in ("2024-03-01", "2024-03-02")
    ]
    deadline = time.monotonic() + WAIT_S
    both_waited = False
    try:
        while not both_waited and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            both_waited = lock.waiting() >= 2
            time.sleep(0.2)
    finally:
        lock.release()
    outputs = [p.communicate(timeout=WAIT_S) for p in procs]
    assert both_waited, outputs  # both load steps were inside a batch at once
    assert [p.returncode for p in procs] == [0, 0], outputs
    target = target_rows(server_dbs)
    assert sorted(target) == [r["id"] for r in rows]
    assert {target[r["id"]]["updated_at"] for r in rows} == {r["updated_at"] for r in rows}
    with DagsterInstance.get() as instance:  # $DAGSTER_HOME of this test, which the CLI runs used
        runs = instance.get_runs(RunsFilter(tags={Tag.SYNC_NAME.value: cfg.name}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["2024-03-01", "2024-03-02"]
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}


@pytest.mark.slow
def test_a_graphql_backfill_of_two_partitions_loads_them_at_once_and_the_view_shows_both_running(
    pg_dbs: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill launched as the UI launches one (``launchPartitionBackfill``), through the daemon's queue."""
    dbs = pg_dbs
    rows = two_days(200)
    make_source(dbs, rows)
    cfg = orders_config(dbs, partitions=PARTITIONS, max_failure_ratio=0, batch_size=50)
    folder = tmp_path / "syncs"
    write_config(folder, cfg)
    run(cfg, "prepare", window=(DAY1.replace(day=9), DAY1.replace(day=10)))  # an empty day: creates the tables
    env = {"SYNC_PIPELINES_CONFIG_DIR": str(folder), "SYNC_PIPELINES_STAGING_DIR": str(tmp_path / "staging")}
    live = LiveDagster(tmp_path / "live", "sync_pipelines.definitions", env)
    lock: TargetLock | None = None
    try:
        live.start(stop_sensors=("sync_statistics_sensor", "endpoints_reachable_sensor"))
        monkeypatch.setenv("DAGSTER_HOME", str(live.home))
        with DagsterInstance.get() as instance:  # what `sync-pipelines pools` does: two slots for this sync
            assert apply_pool_limits(instance, [cfg]) == {f"sync/{cfg.name}": 2}
        lock = TargetLock(dbs)
        backfill_id = live.backfill(cfg.name, ["2024-03-01", "2024-03-02"])
        live.wait(lambda: lock is not None and lock.waiting() >= 2, "both partition runs waiting to write", WAIT_S)

        # Both load steps are inside a batch at once; the history view's backfill page shows both running.
        with TestClient(create_app(folder, live.url)) as client:
            page = client.get(f"/backfills/{backfill_id}")
        assert page.status_code == 200, page.text
        assert page.text.count("status-running") == 2, page.text
        assert "2024-03-01" in page.text and "2024-03-02" in page.text

        lock.release()
        lock = None
        runs = live.wait(
            lambda: (
                (found := live.runs(**{"dagster/backfill": backfill_id}))
                and len(found) == 2
                and all(r.status in ("SUCCESS", "FAILURE", "CANCELED") for r in found)
                and found
            ),
            "the backfill's two runs",
            WAIT_S,
        )
        assert [r.status for r in runs] == ["SUCCESS", "SUCCESS"], [live.failures(r.run_id) for r in runs]
    finally:
        if lock is not None:
            lock.release()
        live.stop()
    target = target_rows(dbs)
    assert sorted(target) == [r["id"] for r in rows]
    assert {target[r["id"]]["updated_at"] for r in rows} == {r["updated_at"] for r in rows}
