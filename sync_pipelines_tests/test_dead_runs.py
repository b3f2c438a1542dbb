"""A CLI run killed with SIGKILL never stays ``running``: the next reader closes it as "process died".

The child is the real ``sync-pipelines run`` (through Dagster, on the test's instance), paused after
its first batch committed and killed with SIGKILL. Then ``status``, ``history``, the next ``run``
of the sync, or the first step of a run launched another way closes it: the ledger row and the
Dagster run fail with "process died" and keep the counts of the committed batch, and the next run
makes the target exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus

from sync_pipelines.cli import main
from sync_pipelines.orchestration import execute_sync, report_for_run
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.conftest import Databases
from sync_pipelines_tests.fault_support import (
    assert_no_duplicates,
    kill_cli_run_after_first_batch,
    seed_source,
    source_rows,
    sync_config,
    target_rows,
)

ROWS, BATCH = 20, 5


def ledger_row(dbs: Databases, run_id: str) -> dict[str, object]:
    engine = dbs.target()
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM _sync_runs WHERE run_id = :r"), {"r": run_id}).mappings().one()
    engine.dispose()
    return dict(row)


@pytest.mark.parametrize("closed_by", ["status", "history", "run", "op"])
def test_a_killed_cli_run_is_closed_as_process_died_with_its_committed_counts(
    sqlite_dbs: Databases, tmp_path: Path, closed_by: str
) -> None:
    seed_source(sqlite_dbs, ROWS)
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(sync_config(sqlite_dbs, batch_size=BATCH)))
    killed = kill_cli_run_after_first_batch(folder)
    assert ledger_row(sqlite_dbs, killed)["status"] == "running"

    if closed_by == "op":  # a run launched outside the CLI: its first step closes the dead one
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

    if closed_by in ("status", "history"):
        rerun = CliRunner().invoke(main, ["--config-dir", str(folder), "run", "items_sync"])
        assert rerun.exit_code == 0, rerun.output
    assert target_rows(sqlite_dbs) == source_rows(sqlite_dbs)
    assert_no_duplicates(sqlite_dbs)
