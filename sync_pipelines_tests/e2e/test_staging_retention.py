"""Staging retention: a completed run leaves nothing, a killed run's batches stay until they expire.

Runs go through the real CLI on SQLite; the killed run is a real SIGKILL of ``sync-pipelines run``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from dagster import DagsterInstance, build_sensor_context

from sync_pipelines.cli import main
from sync_pipelines.engine.retention import RETENTION_ENV, staged_runs
from sync_pipelines.orchestration.staging_cleanup import build_staging_cleanup_sensor
from sync_pipelines_tests.support.databases import Databases
from sync_pipelines_tests.support.faults import kill_cli_run_after_first_batch, seed_source, sync_config


@pytest.fixture
def folder(sqlite_dbs: Databases, tmp_path: Path) -> Path:
    seed_source(sqlite_dbs, 20)
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(sync_config(sqlite_dbs, batch_size=5)))
    return folder


def cli(folder: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config-dir", str(folder), *args], catch_exceptions=False)


def staging_root() -> Path:
    return Path(os.environ["SYNC_PIPELINES_STAGING_DIR"])


def entries() -> list[Path]:
    return sorted(staging_root().rglob("*")) if staging_root().exists() else []


def age(path: Path, hours: float) -> None:
    """Make everything under ``path`` look last written ``hours`` ago."""
    when = time.time() - hours * 3600
    for entry in [path, *path.rglob("*")]:
        os.utime(entry, (when, when))


def test_a_completed_run_leaves_no_file_and_no_folder(folder: Path) -> None:
    assert cli(folder, "run", "items_sync").exit_code == 0
    assert entries() == []


def test_a_killed_run_keeps_its_batches_until_they_expire(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed = kill_cli_run_after_first_batch(folder)
    [staged] = staged_runs()
    assert staged.run_id == killed and staged.size_bytes > 0
    assert any(p.suffix == ".arrow" for p in staged.path.rglob("*"))

    # Still STARTED on the instance: kept however old, until the run is known to be over.
    age(staged.path, 1000)
    assert "removed 0 run folder(s)" in cli(folder, "staging", "clean", "--older-than", "0").output
    assert cli(folder, "status", "items_sync").exit_code == 0  # closes it: process died
    # Over now, but within the retention period (72 h by default): kept for re-execution.
    age(staged.path, 71)
    assert "removed 0 run folder(s)" in cli(folder, "staging", "clean").output
    monkeypatch.setenv(RETENTION_ENV, "24")
    dry = cli(folder, "staging", "clean", "--dry-run")
    assert f"would remove {staged.path}" in dry.output and staged.path.exists()
    result = cli(folder, "staging", "clean")
    assert f"removed {staged.path}" in result.output and "removed 1 run folder(s)" in result.output
    assert entries() == []


def test_the_sensor_clears_what_expired_and_keeps_the_rest(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for run_id, hours in (("old-run", 100), ("recent-run", 1)):
        batch = staging_root() / run_id / "items_sync" / "extract" / "batch-00000.arrow"
        batch.parent.mkdir(parents=True)
        batch.write_bytes(b"x" * 10)
        age(staging_root() / run_id, hours)
    monkeypatch.setenv(RETENTION_ENV, "48")

    with DagsterInstance.get() as instance:
        skip = build_staging_cleanup_sensor()(build_sensor_context(instance=instance))

    assert "removed 1 expired run folder(s), 10 bytes" in str(skip.skip_message)  # type: ignore[union-attr]
    assert [p.name for p in staging_root().iterdir()] == ["recent-run"]


def test_an_invalid_retention_is_named(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETENTION_ENV, "three days")
    result = cli(folder, "staging", "clean")
    assert result.exit_code == 1
    assert f"{RETENTION_ENV}: 'three days' is not a number of hours" in result.output
