"""A run killed with SIGKILL never stays ``running``: it is closed as "process died".

The child is the real ``sync-pipelines run`` (through Dagster, on the test's instance), paused after
its first batch committed and killed with SIGKILL. Then ``status``, ``history``, the next ``run`` of
the sync, the first step of a run launched another way, or the daemon's dead-runs sensor closes it:
the ledger row and the Dagster run fail with "process died" and keep the counts of the committed
batch, and the next run makes the target exact.

A run launched through a live webserver and daemon executes in a run worker that the daemon's code
server starts; that worker is killed with SIGKILL between two batches. The code server fails the run
when its worker exits (without saying why), and the run failure sensor closes the ledger row as
"process died", since the run's tags name the dead worker (had the code server gone too, the dead-runs
sensor would close the run). Run retries (``dagster.local.yaml``) then finish the sync from the failed step.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context

from sync_pipelines.cli import main
from sync_pipelines.config import load_configs
from sync_pipelines.orchestration import build_definitions, execute_sync, report_for_run
from sync_pipelines.orchestration.ledger_sensors import DEAD_RUNS_SENSOR_NAME
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import recorded
from sync_pipelines_tests.support.databases import Databases
from sync_pipelines_tests.support.faults import (
    assert_no_duplicates,
    kill_cli_run_after_first_batch,
    seed_source,
    source_rows,
    sync_config,
    target_rows,
)
from sync_pipelines_tests.support.live import CONTROL_ENV, LiveDagster, write_control

ROWS, BATCH = 20, 5


def ledger_row(dbs: Databases, run_id: str) -> dict[str, object]:
    engine = dbs.target()
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM _sync_runs WHERE run_id = :r"), {"r": run_id}).mappings().one()
    engine.dispose()
    return dict(row)


@pytest.mark.parametrize("closed_by", ["status", "history", "run", "op", "sensor"])
def test_a_killed_cli_run_is_closed_as_process_died_with_its_committed_counts(
    sqlite_dbs: Databases, tmp_path: Path, closed_by: str
) -> None:
    seed_source(sqlite_dbs, ROWS)
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(sync_config(sqlite_dbs, batch_size=BATCH)))
    killed = kill_cli_run_after_first_batch(folder)
    assert ledger_row(sqlite_dbs, killed)["status"] == "running"

    if closed_by == "sensor":  # the daemon's dead-runs sensor, evaluated on the instance
        sensor = build_definitions(load_configs(folder)).resolve_sensor_def(DEAD_RUNS_SENSOR_NAME)
        tick = sensor.evaluate_tick(build_sensor_context(instance=DagsterInstance.get()))
        output = f"closed run {killed}" if tick.skip_message == f"closed 1 run(s): {killed}" else str(tick)
    elif closed_by == "op":  # a run launched outside the CLI: its first step closes the dead one
        report = execute_sync("items_sync", instance=DagsterInstance.get(), config_directory=folder)
        assert report.status is RunStatus.COMPLETED
        output = "\n".join(e.message for e in DagsterInstance.get().all_logs(report.run_id))
    else:
        args = {"status": ["status", "items_sync"], "history": ["history", "items_sync"], "run": ["run", "items_sync"]}
        result = CliRunner().invoke(main, ["--config-dir", str(folder), *args[closed_by]], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        output = result.output
    assert f"closed run {killed}" in output, output
    row = ledger_row(sqlite_dbs, killed)
    assert row["status"] == "failed" and str(row["error"]).startswith("process died: ")
    assert (row["created"], row["failed"]) == (BATCH, 0)  # the one batch it committed
    run = DagsterInstance.get().get_run_by_id(killed)
    assert run is not None and run.status is DagsterRunStatus.FAILURE
    assert run.tags["sync/status"] == "failed"
    report = report_for_run(DagsterInstance.get(), killed, "items_sync")
    assert report.status is RunStatus.FAILED and report.counts["created"] == BATCH
    assert (report.error or "").startswith("process died")

    if closed_by in ("status", "history", "sensor"):
        rerun = CliRunner().invoke(main, ["--config-dir", str(folder), "run", "items_sync"])
        assert rerun.exit_code == 0, rerun.output
    assert target_rows(sqlite_dbs) == source_rows(sqlite_dbs)
    assert_no_duplicates(sqlite_dbs)


def committed_rows(dbs: Databases) -> int:
    """Rows in the target so far (0 before the first batch creates the table)."""
    engine = dbs.target()
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("wh_items"):
                return 0
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM wh_items")).scalar_one())
    finally:
        engine.dispose()


def session_of(pid: int) -> int:
    """The session id of a live process (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[3])


def test_a_killed_run_worker_of_a_daemon_launched_run_is_closed_and_retried(
    sqlite_dbs: Databases, tmp_path: Path
) -> None:
    seed_source(sqlite_dbs, ROWS)
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(sync_config(sqlite_dbs, batch_size=BATCH)))
    control = tmp_path / "control.json"
    write_control(control, delay={"items_sync": 2.0})  # seconds before each batch: time to kill between two
    env = {
        "SYNC_PIPELINES_CONFIG_DIR": str(folder),
        "SYNC_PIPELINES_STAGING_DIR": str(tmp_path / "staging"),
        CONTROL_ENV: str(control),
    }
    live = LiveDagster(tmp_path / "live", "sync_pipelines_tests.support.live_definitions", env)
    try:
        live.start(stop_sensors=("sync_statistics_sensor", "endpoints_reachable_sensor"))
        run_id = live.launch("sync_items_sync")
        live.wait(lambda: committed_rows(sqlite_dbs) >= BATCH, "a committed batch")

        # The run worker tagged the run with its process; the daemon started that process (its session).
        tags = live.run(run_id).tags
        assert tags["sync/process_run"] == run_id and tags["sync/host"] == socket.gethostname()
        worker = int(tags["sync/pid"])
        assert worker not in (p.pid for p in live.processes.values())
        assert session_of(worker) == live.processes["daemon"].pid
        # The run retry must not write before the killed run is closed: the closed counts are the killed run's.
        write_control(control, hold={"items_sync": True})
        os.kill(worker, signal.SIGKILL)
        committed = committed_rows(sqlite_dbs)
        assert BATCH <= committed < ROWS and committed % BATCH == 0

        assert live.wait_finished(run_id, timeout_s=300).status == "FAILURE"
        # The daemon's code server notices its worker exited and fails the run; a sensor closes the ledger row.
        # The sensor closes the ledger row, then logs its counts on the run.
        [closed] = live.wait(
            lambda: [e["message"] for e in live.events(run_id) if "; committed batches: " in e["message"]],
            "the counts of the closed run in its event log",
            300,
        )
        assert closed.startswith(f"sync items_sync: process died: the process running this run (pid {worker} "), closed
        expected = f"processed={committed}, succeeded={committed}, created={committed}"
        assert closed.endswith(f"; committed batches: {expected}"), closed
        assert live.run(run_id).tags["sync/status"] == "failed"
        row = ledger_row(sqlite_dbs, run_id)
        assert row["status"] == "failed" and str(row["error"]).startswith("process died: "), row
        assert (row["created"], row["failed"]) == (committed, 0)

        write_control(control)
        [retry] = live.wait(lambda: live.runs(**{"dagster/parent_run_id": run_id}), "the run retry")
        assert live.wait_finished(retry.run_id, timeout_s=300).status == "SUCCESS", live.failures(retry.run_id)
    finally:
        live.stop()
    assert target_rows(sqlite_dbs) == source_rows(sqlite_dbs)
    assert_no_duplicates(sqlite_dbs)
    created = recorded(sqlite_dbs, action="created")
    assert sorted(json.loads(r["record_key"])["id"] for r in created) == list(range(1, ROWS + 1))
