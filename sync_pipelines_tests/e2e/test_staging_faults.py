"""Staging failures and concurrent runs.

- A staging folder that cannot be created (its path runs below a regular file: tests run as root, so
  permission bits alone would not stop them) fails with a StagingError naming the folder.
- A staged file that outgrows the space allowed: a child process whose ``RLIMIT_FSIZE`` is tiny gets a
  real ``EFBIG`` from the kernel. ``ENOSPC`` itself needs a full file system, which cannot be made
  without mount rights; it is simulated in-process by replacing the staged-file writer with one that
  writes part of the file and raises ``OSError(ENOSPC)`` — the one mock of this suite.
- Two processes running the same sync at the same time: one waits for the lease or is refused;
  the outcome records of the two runs never interleave.

In every failure the target stays untouched.
"""

from __future__ import annotations

import errno
import importlib
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import StagingError
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support import faults as fs
from sync_pipelines_tests.support.databases import Databases, make_databases

staging_module = importlib.import_module("sync_pipelines.engine.staging")


def _prepared(dbs: Databases) -> tuple[SyncConfig, dict[str, Any], str]:
    """A synced source, then changed again: the next run has work to do. Returns the config and a target checksum."""
    fs.seed_source(dbs, 30)
    data = fs.sync_config(dbs, batch_size=5)
    config = SyncConfig.model_validate(data)
    assert run_sync(config, RunOptions(run_id="first")).status is RunStatus.COMPLETED
    fs.change_source(dbs, random.Random(3), 1, updates=12, inserts=3)
    return config, data, fs.checksum(fs.target_rows(dbs))


def _state(dbs: Databases) -> list[Any]:
    return fs.target_query(dbs, "SELECT watermark, version, last_run_id FROM _sync_state")


def test_staging_folder_below_a_file_fails_clearly(sqlite_dbs: Databases, tmp_path: Path) -> None:
    config, _, before = _prepared(sqlite_dbs)
    state = _state(sqlite_dbs)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the staging folder should be")
    with pytest.raises(StagingError) as caught:
        run_sync(config, RunOptions(run_id="blocked", staging_root=blocker / "staging"))
    assert str(blocker / "staging") in str(caught.value) and "not writable" in str(caught.value)
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == before and _state(sqlite_dbs) == state
    assert run_sync(config, RunOptions(run_id="after")).status is RunStatus.COMPLETED
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))


@pytest.mark.parametrize("stage", ["extract", "transform"])
def test_no_space_left_while_staging_fails_clearly(
    sqlite_dbs: Databases, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    config, _, before = _prepared(sqlite_dbs)
    state = _state(sqlite_dbs)
    real_write = staging_module._write_file
    calls = {"n": 0}
    # A full disk: the transform stage writes after the 3 extract batches.
    fail_at = 1 if stage == "extract" else 4

    def full_disk(table: pa.Table, where: Any, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] > fail_at:
            Path(where).write_bytes(b"ARROW1 partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        real_write(table, where, *args)

    monkeypatch.setattr(staging_module, "_write_file", full_disk)
    with pytest.raises(StagingError) as caught:
        run_sync(config, RunOptions(run_id="full"))
    message = str(caught.value)
    assert "No space left on device" in message and f"/full/items_sync/{stage}/batch-" in message, message
    assert not list((Path(RunOptions(run_id="x").staging_root) / "full").rglob("*.tmp"))  # no partial file left
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == before and _state(sqlite_dbs) == state
    monkeypatch.setattr(staging_module, "_write_file", real_write)
    assert run_sync(config, RunOptions(run_id="after")).status is RunStatus.COMPLETED
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))


def test_file_size_limit_of_the_kernel_fails_staging(tmp_path: Path) -> None:
    gen = make_databases("postgresql", tmp_path)
    dbs = next(gen)
    try:
        config, data, before = _prepared(dbs)
        state = _state(dbs)
        proc = fs.start_child(data, "efbig", tmp_path, SYNC_FAULT_FSIZE="600")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err[-2000:]
        last = out.strip().splitlines()[-1]
        assert last.startswith("ERROR StagingError: cannot write staged batch") and "File too large" in last, last
        assert fs.checksum(fs.target_rows(dbs)) == before and _state(dbs) == state
        assert run_sync(config, RunOptions(run_id="after")).status is RunStatus.COMPLETED
        assert fs.checksum(fs.target_rows(dbs)) == fs.checksum(fs.source_rows(dbs))
    finally:
        for _ in gen:
            pass


def _record_ids(dbs: Databases, run_id: str) -> list[int]:
    """Ids of the run's record sets (its created records), in the order written."""
    return [r[0] for r in fs.target_query(dbs, f"SELECT id FROM _sync_record_sets WHERE run_id = '{run_id}'")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_runs_started_together_never_interleave(backend: str, tmp_path: Path) -> None:
    gen = make_databases(backend, tmp_path)
    dbs = next(gen)
    try:
        _, data, _ = _prepared(dbs)
        procs = {run_id: fs.start_child(data, run_id, tmp_path, SYNC_FAULT_SLOW_S="0.15") for run_id in ("one", "two")}
        outcomes = {}
        for run_id, proc in procs.items():
            out, err = proc.communicate(timeout=180)
            outcomes[run_id] = out.strip().splitlines()[-1]
            assert proc.returncode in (0, 1), err[-2000:]
        completed = [r for r, line in outcomes.items() if line.startswith("RESULT ")]
        refused = [r for r, line in outcomes.items() if line.startswith("ERROR ConcurrentRunError")]
        assert completed and len(completed) + len(refused) == 2, outcomes
        for run_id in completed:
            assert json.loads(outcomes[run_id].removeprefix("RESULT "))["status"] == "completed"
        for run_id in refused:
            assert "start a new run" in outcomes[run_id]
        # The outcome records of one run form one block: no batch of the other run in between.
        blocks = [_record_ids(dbs, r) for r in completed + refused if _record_ids(dbs, r)]
        if len(blocks) == 2:
            assert max(blocks[0]) < min(blocks[1]) or max(blocks[1]) < min(blocks[0])
        assert fs.checksum(fs.target_rows(dbs)) == fs.checksum(fs.source_rows(dbs))
        fs.assert_no_duplicates(dbs)
        fs.assert_watermark_committed(dbs)
        fs.assert_bookkeeping_agrees(dbs)
    finally:
        for _ in gen:
            pass
