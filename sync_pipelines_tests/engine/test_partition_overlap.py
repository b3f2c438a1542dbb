"""Partition runs of one sync load side by side: a shared lease, no stale-read refusal, and no record written
older over newer when its cursor moves from one running partition's window into another's."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import Manifest, RunOptions, SyncResult, extract, load, transform
from sync_pipelines.engine.load import BatchLoader
from sync_pipelines.engine.overlap import cursor_column, newer_in_target, partition_slots
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import (
    bookkeeping,
    make_source,
    order,
    orders_config,
    run,
    target_rows,
    update_source,
)
from sync_pipelines_tests.support.databases import Databases, make_databases

DAY1 = dt.datetime(2024, 3, 1)
DAY2 = dt.datetime(2024, 3, 2)
DAY3 = dt.datetime(2024, 3, 3)
WINDOW1, WINDOW2 = (DAY1, DAY2), (DAY2, DAY3)
PARTITIONS = {"granularity": "daily", "start": "2024-03-01", "max_parallel": 2}


@pytest.fixture(params=["postgresql", "mariadb"])
def server_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """A fresh source and target on each database server that takes several writers."""
    yield from make_databases(request.param, tmp_path)


def two_days(per_day: int) -> list[dict[str, Any]]:
    """``per_day`` orders on each of DAY1 and DAY2 (ids 1.. on DAY1, then DAY2)."""
    return [
        order(i, updated_at=day + dt.timedelta(hours=1, seconds=i))
        for n, day in enumerate((DAY1, DAY2))
        for i in range(n * per_day + 1, (n + 1) * per_day + 1)
    ]


def config(dbs: Databases, **overrides: Any) -> SyncConfig:
    return orders_config(dbs, partitions=PARTITIONS, max_failure_ratio=0, **overrides)


def staged(
    cfg: SyncConfig, run_id: str, window: tuple[dt.datetime, dt.datetime], **options: Any
) -> Callable[[], SyncResult]:
    """Extract and transform one partition now; returns its load, to call later (in a thread)."""
    opts = RunOptions(run_id=run_id, window=window, **options)
    manifest: Manifest = transform(cfg, extract(cfg, opts), opts)
    return lambda: load(cfg, manifest, opts)


def together(*loads: Callable[[], SyncResult]) -> list[SyncResult]:
    """Run the loads in threads started together; their results (or the first error, raised)."""
    results: list[Any] = [None] * len(loads)

    def one(i: int) -> None:
        try:
            results[i] = loads[i]()
        except BaseException as exc:  # handed to the test thread
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(loads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_the_guard_finds_the_rows_whose_target_cursor_is_later() -> None:
    batch = pa.table({"k": [1, 2, 3, 4, 5], "ts": pa.array([DAY2, DAY2, None, DAY1, DAY2], pa.timestamp("us"))})
    current = pa.table(
        {"k": [5, 1, 2, 3, 4], "ts": ["2024-03-01 00:00:00", "2024-03-03 00:00:00", None, DAY3.isoformat(), None]}
    )
    current = current.set_column(1, "ts", pa.array([DAY1, DAY3, None, DAY3, None], pa.timestamp("us")))
    assert newer_in_target(batch, current, ["k"], "ts").tolist() == [True, False, False, False, False]
    as_text = current.set_column(1, "ts", pa.array(["2024-03-01 00:00:00", "2024-03-03 00:00:00", None, None, None]))
    assert newer_in_target(batch, as_text, ["k"], "ts").tolist() == [True, False, False, False, False]
    assert not newer_in_target(batch, current.slice(0, 0), ["k"], "ts").any()


def test_partition_runs_overlap_only_where_the_target_keeps_the_cursor(sqlite_dbs: Databases) -> None:
    cfg = config(sqlite_dbs)
    assert cursor_column(cfg) == "updated_at" and partition_slots(cfg) == 2
    mapping = dict(orders_config(sqlite_dbs).model_dump(exclude_defaults=True)["mapping"])
    del mapping["updated_at"]
    assert partition_slots(config(sqlite_dbs, mapping=mapping)) == 0
    assert partition_slots(orders_config(sqlite_dbs)) == 0


@pytest.mark.slow
def test_two_partition_runs_load_at_once_and_write_exactly_their_windows(
    server_dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both loads are inside a batch transaction at the same moment (a barrier both must reach), neither is
    refused as a stale read, and the target holds every order once; the watermark is left alone."""
    rows = two_days(30)
    make_source(server_dbs, rows)
    cfg = config(server_dbs)
    first, second = staged(cfg, "day-1", WINDOW1), staged(cfg, "day-2", WINDOW2)
    barrier = threading.Barrier(2, timeout=120)
    met: set[str] = set()
    write_plan = BatchLoader.write_plan

    def meeting(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
        if self.run_id not in met:
            met.add(self.run_id)
            barrier.wait()  # broken (and the load fails) unless the other run is loading too
        write_plan(self, conn, plan, batch)

    monkeypatch.setattr(BatchLoader, "write_plan", meeting)
    results = together(first, second)
    monkeypatch.undo()
    assert [r.status for r in results] == [RunStatus.COMPLETED, RunStatus.COMPLETED]
    assert [r.counts.created for r in results] == [30, 30]
    assert met == {"day-1", "day-2"}
    target = target_rows(server_dbs)
    assert sorted(target) == [r["id"] for r in rows]
    assert {target[r["id"]]["updated_at"] for r in rows} == {r["updated_at"] for r in rows}
    assert bookkeeping(server_dbs, "SELECT watermark, version FROM _sync_state") == []  # only plain runs claim it
    later = run(cfg, "plain")  # a plain run afterwards reads everything once and moves the watermark
    assert later.status is RunStatus.COMPLETED and later.counts.unchanged == 60
    assert later.watermark_after is not None


@pytest.mark.slow
@pytest.mark.parametrize("order_of_loads", ["newer_first", "together"])
def test_a_record_moving_between_two_running_windows_is_never_written_older_over_newer(
    server_dbs: Databases, order_of_loads: str
) -> None:
    """Order 5 is read by the first day's run, then moves into the second day (a new status), and is read
    there too. Whichever run loads first, the target ends with the second day's version."""
    source = make_source(server_dbs, two_days(10))
    cfg = config(server_dbs, batch_size=4)
    older = staged(cfg, "day-1", WINDOW1)  # reads order 5 as of DAY1
    update_source(server_dbs, source, [5], status="moved", updated_at=DAY2 + dt.timedelta(hours=9))
    newer = staged(cfg, "day-2", WINDOW2)  # reads it again as of DAY2
    if order_of_loads == "newer_first":
        results = [newer(), older()]
        assert results[1].counts.unchanged >= 1 and results[1].counts.updated == 0  # order 5 left alone
    else:
        results = together(older, newer)
    assert all(r.status is RunStatus.COMPLETED for r in results)
    target = target_rows(server_dbs)
    assert sorted(target) == list(range(1, 21))
    assert target[5]["status"] == "moved"
    assert target[5]["updated_at"] == DAY2 + dt.timedelta(hours=9)
    assert all(target[i]["status"] == "open" for i in target if i != 5)


def test_on_sqlite_partition_runs_queue_with_a_message_and_are_never_refused_as_stale(
    sqlite_dbs: Databases, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite takes one writer at a time: the second partition run waits for the first one's load, says why,
    and loads after it, though it read its source before the first one wrote."""
    rows = two_days(10)
    make_source(sqlite_dbs, rows)
    cfg = config(sqlite_dbs)
    logger = logging.getLogger("sync_pipelines.test_overlap")
    first = staged(cfg, "day-1", WINDOW1, logger=logger)
    second = staged(cfg, "day-2", WINDOW2, logger=logger)
    holding = threading.Event()
    release = threading.Event()
    write_plan = BatchLoader.write_plan

    def hold(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
        if self.run_id == "day-1" and not holding.is_set():
            holding.set()
            assert release.wait(timeout=120)
        write_plan(self, conn, plan, batch)

    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO, logger=logger.name):
        mp.setattr(BatchLoader, "write_plan", hold)

        def second_after_first_started() -> SyncResult:
            assert holding.wait(timeout=120)
            return second()

        def release_when_waiting() -> None:
            while not any("one writer at a time" in r.getMessage() for r in caplog.records):
                threading.Event().wait(0.05)
            release.set()

        watcher = threading.Thread(target=release_when_waiting, daemon=True)
        watcher.start()
        results = together(first, second_after_first_started)
    assert [r.status for r in results] == [RunStatus.COMPLETED, RunStatus.COMPLETED]
    waits = [r.getMessage() for r in caplog.records if "waiting for the lease" in r.getMessage()]
    assert waits == [
        "sync orders_sync: waiting for the lease: sqlite allows one writer at a time, so the sync's partition "
        "runs load one after the other"
    ]
    assert sorted(target_rows(sqlite_dbs)) == [r["id"] for r in rows]
