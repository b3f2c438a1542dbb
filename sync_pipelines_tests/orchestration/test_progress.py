"""Live progress: one event-log line per batch and stage, read back by ``sync-pipelines status``."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines.engine.progress import ProgressSnapshot, parse_progress
from sync_pipelines.orchestration import execute_sync, get_instance
from sync_pipelines.orchestration.progress import latest_run_id, run_progress
from sync_pipelines_tests.factories import SourceTable, make_source

pytestmark = pytest.mark.slow  # every test here takes seconds (Dagster, CLI or server runs)

ROWS = 25
ITEMS = SourceTable("items", {"name": sa.String(20), "version": sa.Integer})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder with ``items``: incremental on ``version``, 10 rows per batch, ids above 2 only."""
    monkeypatch.chdir(tmp_path)
    make_source(
        tmp_path / "source.db", [{"id": i, "name": f"item {i}", "version": i} for i in range(1, ROWS + 1)], ITEMS
    )
    folder = tmp_path / "syncs"
    folder.mkdir()
    data: dict[str, Any] = {
        "name": "items",
        "source": {"kind": "sql", "url": f"sqlite:///{tmp_path / 'source.db'}", "table": "items"},
        "target": {"kind": "sql", "url": f"sqlite:///{tmp_path / 'target.db'}", "table": "items", "key": ["id"]},
        "mapping": {"id": {"type": "integer"}, "name": {"type": "string"}, "version": {"type": "integer"}},
        "filter": [{"column": "id", "op": "gt", "value": 2}],
        "mode": "incremental",
        "cursor": "version",
        "batch_size": 10,
    }
    (folder / "items.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(folder))
    return folder


def progress_lines(run_id: str) -> list[ProgressSnapshot]:
    with get_instance() as instance:
        entries = instance.all_logs(run_id)
    found = [parse_progress(e.user_message) for e in entries if e.dagster_event is None]
    return [s for s in found if s is not None]


def test_each_batch_logs_progress_with_total_and_eta(project: Path) -> None:
    with get_instance() as instance:
        report = execute_sync("items", instance=instance, config_directory=project)
    assert report.status.value == "completed" and report.counts["created"] == ROWS - 2

    lines = progress_lines(report.run_id)
    for stage in ("extract", "transform", "load"):
        stage_lines = [s for s in lines if s.stage == stage]
        # 23 rows pass the filter: batches of 10, 10 and 3; the COUNT(*) applies the same filter.
        assert [(s.batches, s.rows, s.total) for s in stage_lines] == [(1, 10, 23), (2, 20, 23), (3, 23, 23)]
        assert all(s.sync == "items" and s.rows_per_s > 0 for s in stage_lines)
        assert [s.eta_s is not None for s in stage_lines] == [True, True, False]
    assert [s.stage for s in lines][:3] == ["extract"] * 3

    # The next incremental run counts only the rows after the watermark.
    engine = sa.create_engine(f"sqlite:///{project.parent / 'source.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO items (id, name, version) VALUES (:id, :name, :version)"),
            [{"id": i, "name": f"new {i}", "version": 100 + i} for i in range(ROWS + 1, ROWS + 5)],
        )
    engine.dispose()
    with get_instance() as instance:
        second = execute_sync("items", instance=instance, config_directory=project)
    extract = [(s.batches, s.rows, s.total) for s in progress_lines(second.run_id) if s.stage == "extract"]
    assert extract == [(1, 4, 4)]

    # A dry run reports the progress of its planning too.
    with get_instance() as instance:
        dry = execute_sync("items", instance=instance, config_directory=project, full_sync=True, dry_run=True)
    load = [(s.batches, s.rows, s.total) for s in progress_lines(dry.run_id) if s.stage == "load"]
    assert load == [(1, 10, 27), (2, 20, 27), (3, 27, 27)]


def test_status_of_a_finished_run_by_id_and_by_sync_name(project: Path) -> None:
    with get_instance() as instance:
        report = execute_sync("items", instance=instance, config_directory=project)
    runner = CliRunner()
    by_id = runner.invoke(main, ["status", report.run_id], catch_exceptions=False)
    assert by_id.exit_code == 0, by_id.output
    lines = by_id.output.splitlines()
    assert lines[0] == f"run {report.run_id}  sync items"
    assert lines[1].startswith("  status     completed (Dagster: SUCCESS), started ")
    assert lines[2].startswith("  extract    3 batch(es), 23 of 23 rows (100%), ")
    assert lines[3].startswith("  transform  3 batch(es), 23 of 23 rows (100%), ")
    assert lines[4].startswith("  load       3 batch(es), 23 of 23 rows (100%), ")
    assert "ETA" not in by_id.output
    assert lines[5].startswith("  result     processed=23 succeeded=23 failed=0 created=23 ")

    by_name = runner.invoke(main, ["status", "items"], catch_exceptions=False)
    assert by_name.exit_code == 0
    assert by_name.output == by_id.output.replace(lines[1], by_name.output.splitlines()[1])

    as_json = json.loads(runner.invoke(main, ["status", "items", "--json"], catch_exceptions=False).output)
    assert as_json["run_id"] == report.run_id and as_json["status"] == "completed"
    assert as_json["stages"]["load"] == {
        "batches": 3,
        "rows": 23,
        "total": 23,
        "rows_per_s": as_json["stages"]["load"]["rows_per_s"],
        "eta_s": None,
    }
    assert as_json["counts"]["created"] == 23 and as_json["error"] is None

    unknown = runner.invoke(main, ["status", "nothing"])
    assert unknown.exit_code == 2
    assert "no run with id 'nothing' and no run of a sync named 'nothing'" in unknown.output


def test_status_of_a_running_run(project: Path, tmp_path: Path) -> None:
    """The load waits for the sync's lease, held here: meanwhile `status` shows extract and transform done."""
    lock_path = tmp_path / "target.db.items.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    command = [sys.executable, "-c", "from sync_pipelines.cli import main; main()", "run", "items"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        progress = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            with get_instance() as instance:
                run_id = latest_run_id(instance, "items")
                progress = run_progress(instance, run_id) if run_id else None
            if progress is not None and "transform" in progress.stages:
                break
            time.sleep(0.2)
        assert progress is not None and "transform" in progress.stages, "the run never finished transforming"
        assert not progress.finished and progress.sync_status == "running"
        assert list(progress.stages) == ["extract", "transform"]
        output = CliRunner().invoke(main, ["status", "items"], catch_exceptions=False).output
        assert "  status     running (Dagster: STARTED)" in output
        assert "  transform  3 batch(es), 23 of 23 rows (100%)" in output
        assert "load" not in output and "result" not in output
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out.decode()
    output = CliRunner().invoke(main, ["status", "items"], catch_exceptions=False).output
    assert "  status     completed (Dagster: SUCCESS)" in output
    assert "  load       3 batch(es), 23 of 23 rows (100%)" in output
