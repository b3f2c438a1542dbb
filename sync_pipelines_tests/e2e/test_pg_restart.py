"""A target PostgreSQL restarted in the middle of a run, on a private server the test starts itself.

The sync runs in a child process (``fault_runner``), paused between two batches or inside a load
transaction; the test restarts the server (``pg_ctl stop -m fast`` then start, cutting every
connection) and lets the run go on. The run either completes (the pool reconnects between
batches) or fails with a transient connection error naming the endpoint; then a new run makes the
target exact: every source row once, the bookkeeping in agreement, nothing lost or doubled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support import faults as fs
from sync_pipelines_tests.support.databases import Databases
from sync_pipelines_tests.support.private_pg import PrivateServer, private_server

ROWS, BATCH = 40, 8
RESTART_POINTS = [("between:1", "completed"), ("load-plan:2", "completed")]
"""After the 2nd batch committed (the pool's pre-ping reconnects: the run completes), and inside the
3rd batch's load transaction (rolled back by the server, a transient error: the load driver tries the
batch again, whole, on a new connection, and the run completes)."""


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    with private_server() as started:
        yield started


@pytest.fixture
def dbs(server: PrivateServer) -> Databases:
    suffix = uuid.uuid4().hex[:8]
    return Databases("postgresql", server.create_database(f"src_{suffix}"), server.create_database(f"dst_{suffix}"))


@pytest.mark.parametrize(("point", "outcome"), RESTART_POINTS)
def test_a_target_restarted_mid_run_fails_or_goes_on_cleanly_and_the_rerun_is_exact(
    server: PrivateServer, dbs: Databases, tmp_path: Path, point: str, outcome: str
) -> None:
    fs.seed_source(dbs, ROWS)
    config = fs.sync_config(dbs, batch_size=BATCH)
    resume = tmp_path / "resume"
    child = fs.start_child(config, "restarted", tmp_path, SYNC_FAULT_PAUSE_AT=point, SYNC_FAULT_RESUME_FILE=str(resume))
    fs.wait_for_line(child, "PAUSED")

    server.restart()
    resume.touch()
    out, err = child.communicate(timeout=300)

    last = out.strip().splitlines()[-1]
    assert outcome == "completed"
    assert last.startswith("RESULT "), (last, err[-2000:])
    assert json.loads(last.removeprefix("RESULT "))["status"] == RunStatus.COMPLETED.value
    assert fs.target_rows(dbs) == fs.source_rows(dbs)
    fs.assert_no_duplicates(dbs)
    fs.assert_watermark_committed(dbs)

    again = run_sync(SyncConfig.model_validate(config), RunOptions(run_id="after-restart", full_sync=True))
    assert again.status is RunStatus.COMPLETED
    assert fs.target_rows(dbs) == fs.source_rows(dbs) and len(fs.source_rows(dbs)) == ROWS
    fs.assert_no_duplicates(dbs)
    fs.assert_bookkeeping_agrees(dbs)
