"""Reading the next batch's target rows and baselines ahead: used only where it stands for the batch's own
read, and a full sync that reads ahead reconciles as one that does not."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest

from sync_pipelines.engine import driver
from sync_pipelines.engine.manifest import BatchFile
from sync_pipelines.engine.read_ahead import ReadAhead, Sides
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines_tests.factories import edit_target, full_orders_config, make_source, order, run, update_source
from sync_pipelines_tests.support.databases import Databases


def _batch(index: int, ids: list[Any]) -> BatchFile:
    return BatchFile(index=index, path=f"batch-{index}.arrow", rows=len(ids))


def _start(ahead: ReadAhead, index: int, ids: list[Any]) -> BatchFile:
    """Start reading ahead for batch ``index`` of keys ``ids``, handed over with its rows."""
    batch = _batch(index, ids)
    ahead.start(batch, pa.table({"k": ids, "v": [str(i) for i in ids]}))
    return batch


class _Reads:
    """The target's side of a read ahead: what it was asked for, answered from the keys themselves."""

    def __init__(self, fail_on: set[int] | None = None):
        self.asked: list[list[Any]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on or set()

    def __call__(self, keys: pa.Table) -> Sides:
        values = keys.column(0).to_pylist()
        self.asked.append(values)
        self.threads.add(threading.current_thread().name)
        if self.fail_on & set(values):
            raise ConnectionError("server gone")
        return pa.table({"k": values, "seen": ["ahead"] * len(values)}), pa.table({"k": values})


def _keys(ids: list[Any]) -> pa.Table:
    return pa.table({"k": ids})


def test_consecutive_key_ranges_are_read_once_each_on_a_thread_of_their_own() -> None:
    reads = _Reads()
    ahead = ReadAhead(("k",), reads)
    batches = [_batch(0, list(range(1, 11)))]
    batches += [_start(ahead, i, list(range(10 * i + 1, 10 * i + 11))) for i in (1, 2)]
    assert ahead.take(batches[0], _keys(list(range(1, 11)))) is None  # never read ahead
    second = ahead.take(batches[1], _keys(list(range(11, 21))))
    third = ahead.take(batches[2], _keys(list(range(21, 31))))
    assert second is not None and second[0].column("k").to_pylist() == list(range(11, 21))
    assert third is not None and third[0].column("seen").to_pylist() == ["ahead"] * 10
    assert reads.asked == [list(range(11, 21)), list(range(21, 31))]
    assert reads.threads and threading.current_thread().name not in reads.threads
    ahead.close()


def test_a_batch_whose_span_meets_the_batch_written_meanwhile_reads_again() -> None:
    # Batches ordered by a cursor, not by key: batch 1 was read while batch 0 (keys 5 and 40) was written;
    # the read could not see batch 0's writes, and batch 1's keys lie between batch 0's: it is not used.
    ahead = ReadAhead(("k",), _Reads())
    first, second = _batch(0, [5, 40]), _start(ahead, 1, [20, 30])
    assert ahead.take(first, _keys([5, 40])) is None
    assert ahead.take(second, _keys([20, 30])) is None
    # Wholly below the span of the batch written meanwhile, or wholly above it, the read stands.
    third, fourth = _start(ahead, 2, [1, 2]), _start(ahead, 3, [31, 50])
    assert ahead.take(third, _keys([1, 2])) is not None
    assert ahead.take(fourth, _keys([31, 50])) is not None
    ahead.close()


def test_a_read_that_failed_text_keys_or_other_keys_are_read_again() -> None:
    ahead = ReadAhead(("k",), _Reads(fail_on={15}))
    first, second, third = _start(ahead, 1, [11, 15]), _start(ahead, 2, [21, 22]), _start(ahead, 3, ["x", "y"])
    assert ahead.take(first, _keys([11, 15])) is None  # the read raised
    assert ahead.take(second, _keys([21, 23])) is None  # not the batch's keys
    assert ahead.take(third, _keys(["x", "y"])) is None  # a collation may join texts
    ahead.close()


def test_a_replayed_batch_and_a_closed_reader_read_again() -> None:
    reads = _Reads()
    ahead = ReadAhead(("k",), reads)
    batch = _start(ahead, 1, [1, 2])
    assert ahead.take(batch, _keys([1, 2])) is not None
    assert ahead.take(batch, _keys([1, 2])) is None  # a replay after a transient error reads in its transaction
    second = _start(ahead, 2, [3, 4])
    ahead.close()
    assert ahead.take(second, _keys([3, 4])) is None


@pytest.mark.slow
def test_a_full_sync_reading_ahead_finds_every_edit_of_either_side(
    dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(dbs, [order(i) for i in range(1, 41)])
    cfg = full_orders_config(dbs, batch_size=10)
    assert run(cfg, "run-1").counts.created == 40
    edit_target(dbs, 15, customer="edited on the target")  # batch 2
    edit_target(dbs, 25, customer="edited on the target")  # batch 3: and at the source: a conflict
    update_source(dbs, source, [25], customer="changed at source")
    update_source(dbs, source, [35], status="shipped")  # batch 4
    used: list[bool] = []
    take = ReadAhead.take

    def counted(self: ReadAhead, batch: BatchFile, keys: pa.Table) -> Sides | None:
        sides = take(self, batch, keys)
        used.append(sides is not None)
        return sides

    monkeypatch.setattr(ReadAhead, "take", counted)
    staged_reads: list[str] = []
    read_batch = driver.read_batch

    def read_once(path: Any) -> pa.Table:
        staged_reads.append(str(path))
        return read_batch(path)

    monkeypatch.setattr(driver, "read_batch", read_once)

    result = run(cfg, "run-2")

    assert result.status is RunStatus.COMPLETED
    counts = result.counts
    assert (counts.target_modified, counts.conflicted, counts.updated, counts.unchanged) == (1, 1, 1, 37)
    by_action = {s.action: s.key for s in result.samples if s.action is not RecordAction.UNCHANGED}
    assert by_action == {
        RecordAction.TARGET_MODIFIED: {"order_id": 15},
        RecordAction.CONFLICT: {"order_id": 25},
        RecordAction.UPDATED: {"order_id": 35},
    }
    # PostgreSQL and MariaDB read batches 2 to 4 ahead; SQLite (in the process) reads each in its batch.
    assert used == ([False, True, True, True] if dbs.backend != "sqlite" else [])
    # Each batch's staged rows are read once: a batch read ahead is handed over to its commit.
    assert len(staged_reads) == len(set(staged_reads)) == 4
