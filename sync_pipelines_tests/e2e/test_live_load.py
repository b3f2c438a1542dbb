"""Twenty syncs due at the same minute on a live daemon: each runs once per tick, none overlaps itself, none is lost.

A deployment of the project's own code location (webserver and daemon, ``live.LiveDagster``) with
twenty syncs whose schedules all fire every minute, and at most four runs at a time (the queue
holds the rest). The test waits for the first tick's runs to finish, then checks every run of
every sync seen so far, and every target. Every wait has a deadline: the test stops by itself.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from sync_pipelines_tests.factories import make_source
from sync_pipelines_tests.support.live import (
    FINISHED,
    LIVE_PEOPLE,
    REPO,
    ROWS,
    LiveDagster,
    Run,
    live_sync_config,
    people_rows,
)

SYNCS = [f"load_{n:02d}" for n in range(20)]
MAX_CONCURRENT_RUNS = 4
TICK_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDagster]:
    root = tmp_path_factory.mktemp("live_load")
    make_source(root / "source.db", people_rows(), LIVE_PEOPLE)
    folder = root / "syncs"
    folder.mkdir()
    for name in SYNCS:
        data = live_sync_config(root, name, batch_size=10, schedule={"cron": "* * * * *"})
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = yaml.safe_load((REPO / "dagster.local.yaml").read_text(encoding="utf-8"))
    settings["concurrency"]["runs"]["max_concurrent_runs"] = MAX_CONCURRENT_RUNS
    instance_yaml = root / "instance.yaml"
    instance_yaml.write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = {"SYNC_PIPELINES_CONFIG_DIR": str(folder), "SYNC_PIPELINES_STAGING_DIR": str(root / "staging")}
    dagster = LiveDagster(root, "sync_pipelines.definitions", env, instance_yaml=instance_yaml)
    try:
        dagster.start()
        yield dagster
    finally:
        dagster.stop()


def scheduled_runs(live: LiveDagster) -> list[Run]:
    return [run for run in live.runs() if run.tags.get("dagster/schedule_name", "").startswith("load_")]


def first_runs_done(live: LiveDagster) -> list[Run] | None:
    """The first scheduled run of each sync, once every sync has one and all of them finished."""
    first: dict[str, Run] = {}
    for run in reversed(scheduled_runs(live)):  # the webserver lists the newest first
        first.setdefault(run.tags["sync/name"], run)
    done = len(first) == len(SYNCS) and all(run.status in FINISHED for run in first.values())
    return [first[sync] for sync in sorted(first)] if done else None


def target_ids(root: Path, sync: str) -> list[int]:
    engine = sa.create_engine(f"sqlite:///{root / f'{sync}.db'}")
    try:
        with engine.connect() as conn:
            return sorted(int(row[0]) for row in conn.execute(sa.text("SELECT id FROM people")))
    finally:
        engine.dispose()


def test_twenty_syncs_due_at_the_same_minute_each_run_once_without_overlap(live: LiveDagster) -> None:
    tick = live.wait(lambda: first_runs_done(live), "the first tick's twenty runs to finish", TICK_TIMEOUT_S)

    assert sorted(run.tags["sync/name"] for run in tick) == SYNCS  # each sync once, none lost
    assert {run.status for run in tick} == {"SUCCESS"}, [(r.tags["sync/name"], r.status) for r in tick]
    by_sync: dict[str, list[Run]] = defaultdict(list)
    for run in scheduled_runs(live):
        by_sync[run.tags["sync/name"]].append(run)
    for sync, runs in by_sync.items():
        ticks = [run.tags["dagster/tick"] for run in runs]
        assert len(ticks) == len(set(ticks)), f"{sync}: two runs for one tick"
        started = sorted((run for run in runs if run.start_time is not None), key=lambda run: run.start_time or 0)
        for before, after in itertools.pairwise(started):
            assert before.end_time is not None and before.end_time <= (after.start_time or 0), f"{sync} overlapped"
    for sync in SYNCS:
        assert target_ids(live.root, sync) == list(range(1, ROWS + 1)), sync
