"""Two ``sync-pipelines run NAME --partition`` processes started together, on a PostgreSQL and a MariaDB target.

The test holds a lock on the target table that blocks writes (not reads) until both runs wait on it: both
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

from sync_pipelines.orchestration.names import Tag
from sync_pipelines_tests.engine.test_partition_overlap import DAY1, two_days
from sync_pipelines_tests.factories import make_source, orders_config, run, target_rows, write_config
from sync_pipelines_tests.support.databases import Databases, make_databases

CLI = [sys.executable, "-c", "from sync_pipelines.cli import main; main()"]
PARTITIONS = {"granularity": "daily", "start": "2024-03-01", "max_parallel": 2}
WAIT_S = 180.0


@pytest.fixture(params=["postgresql", "mariadb"])
def server_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases(request.param, tmp_path)


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
    holder, watcher = server_dbs.target(), server_dbs.target()
    env = {**os.environ, "SYNC_PIPELINES_CONFIG_DIR": str(folder)}
    with holder.connect() as lock, watcher.connect() as watch:
        if server_dbs.backend == "postgresql":
            lock.exec_driver_sql("LOCK TABLE wh_orders IN EXCLUSIVE MODE")  # reads pass, writes and FOR UPDATE wait
        else:
            lock.exec_driver_sql("LOCK TABLES wh_orders READ")
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
                both_waited = waiting_on_target(watch, server_dbs.backend) >= 2
                watch.rollback()
                time.sleep(0.2)
        finally:
            if server_dbs.backend == "postgresql":
                lock.rollback()
            else:
                lock.exec_driver_sql("UNLOCK TABLES")
        outputs = [p.communicate(timeout=WAIT_S) for p in procs]
    assert both_waited, outputs  # both load steps were inside a batch at once
    holder.dispose()
    watcher.dispose()
    assert [p.returncode for p in procs] == [0, 0], outputs
    target = target_rows(server_dbs)
    assert sorted(target) == [r["id"] for r in rows]
    assert {target[r["id"]]["updated_at"] for r in rows} == {r["updated_at"] for r in rows}
    with DagsterInstance.get() as instance:  # $DAGSTER_HOME of this test, which the CLI runs used
        runs = instance.get_runs(RunsFilter(tags={Tag.SYNC_NAME.value: cfg.name}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["2024-03-01", "2024-03-02"]
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
