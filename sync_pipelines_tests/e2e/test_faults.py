"""Fault campaign: kill -9 a sync process at seeded random points, then rerun and check nothing is lost.

Each round changes the source, starts the sync in a child process (``fault_runner``), kills it with
SIGKILL while extracting, transforming, inside a load transaction or between two committed batches
(the SQL source on SQLite and PostgreSQL, and the same rows read through a local JSON API, ``rest``),
checks what survived (no duplicates, the watermark never past committed data, the bookkeeping in step
with the target), reruns the sync to completion and compares a checksum of every row with the source.

``SYNC_FAULT_CAMPAIGN=large`` runs 40 rounds per backend instead of 12.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support import faults as fs
from sync_pipelines_tests.support.databases import Databases, make_databases
from sync_pipelines_tests.support.http_api import LocalApi

ROUNDS = 40 if os.environ.get("SYNC_FAULT_CAMPAIGN") == "large" else 12
SEED = int(os.environ.get("SYNC_FAULT_SEED", "20261125"))
KILLS: list[str] = []


def _plan(rng: random.Random) -> list[str]:
    """The phases of the rounds: every phase at least twice, the rest drawn at random."""
    phases = [*fs.PHASES, *fs.PHASES] + [rng.choice(fs.PHASES) for _ in range(ROUNDS - 2 * len(fs.PHASES))]
    rng.shuffle(phases)
    return phases


@pytest.mark.parametrize(
    ("backend", "source"), [("sqlite", "sql"), ("postgresql", "sql"), ("sqlite", "rest")], ids=lambda v: v
)
def test_kill_nine_at_random_points(backend: str, source: str, tmp_path: Path, local_api: LocalApi) -> None:
    """The SQL source on each backend, and the same rows read through a local JSON API (``rest``)."""
    rng = random.Random(f"{SEED}-{backend}" + ("" if source == "sql" else f"-{source}"))
    gen = make_databases(backend, tmp_path)
    dbs: Databases = next(gen)
    try:
        fs.seed_source(dbs, 30)
        local_api.state.provider = fs.api_items(dbs)
        data = fs.sync_config(dbs) if source == "sql" else fs.rest_sync_config(dbs, local_api.url)
        config = SyncConfig.model_validate(data)
        first = run_sync(config, RunOptions(run_id="initial"))
        assert first.status is RunStatus.COMPLETED
        assert fs.checksum(fs.target_rows(dbs)) == fs.checksum(fs.source_rows(dbs))
        for round_no, phase in enumerate(_plan(rng), start=1):
            changed = fs.change_source(dbs, rng, round_no, updates=rng.randint(12, 20), inserts=rng.randint(0, 4))
            batches = -(-changed // data["batch_size"])
            limit = batches - 1 if phase == "between" else batches
            point = rng.randrange(limit)
            run_id = f"kill-{round_no}"
            proc = fs.start_child(data, run_id, tmp_path, SYNC_FAULT_PAUSE_AT=f"{phase}:{point}")
            fs.wait_for_line(proc, "PAUSED")
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            assert proc.returncode == -signal.SIGKILL
            where = f"{backend}/{source} round {round_no}: killed at {phase} {point}"
            fs.assert_no_duplicates(dbs)
            fs.assert_watermark_committed(dbs)
            fs.assert_bookkeeping_agrees(dbs)
            # Half the reruns retry the killed run id (resume), half start a new run.
            rerun_id = run_id if rng.random() < 0.5 else f"rerun-{round_no}"
            result = run_sync(config, RunOptions(run_id=rerun_id))
            assert result.status is RunStatus.COMPLETED, where
            fs.assert_no_duplicates(dbs)
            assert fs.checksum(fs.target_rows(dbs)) == fs.checksum(fs.source_rows(dbs)), where
            fs.assert_watermark_committed(dbs)
            fs.assert_bookkeeping_agrees(dbs)
            KILLS.append(where)
        assert source == "sql" or len(local_api.state.requests) > ROUNDS  # every rest run read the API
    finally:
        for _ in gen:
            pass
    assert len([k for k in KILLS if k.startswith(f"{backend}/{source} ")]) == ROUNDS
