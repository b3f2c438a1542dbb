"""A row inserted on the target by someone else between a batch's read and its write: the batch's insert
fails as a duplicate, the batch is planned again with a read in its own transaction, and the record is
written over the stranger's row as an update; nothing is lost and nothing is written twice.

A run that finds the target and its baselines empty reads nothing before classifying its batches, until an
insert finds a row someone else put there: from that batch on, every batch is read."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.conflicts import Reconciler
from sync_pipelines.engine.load import BatchLoader
from sync_pipelines.engine.manifest import BatchFile
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines_tests.factories import (
    full_orders_config,
    make_source,
    order,
    orders_config,
    run,
    target_rows,
)
from sync_pipelines_tests.support.databases import Databases


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_a_row_inserted_by_someone_else_after_the_read_is_updated_on_the_replay(
    dbs: Databases, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _twenty_orders(dbs, mode)
    plan = BatchLoader.plan
    planned: list[int] = []
    keys_of: dict[int, set[int]] = {}
    read = _count_reads(monkeypatch)

    def then_a_stranger_inserts(self: BatchLoader, conn: Any, table: pa.Table, batch: BatchFile | None = None) -> Any:
        out = plan(self, conn, table, batch)
        index = -1 if batch is None else batch.index
        planned.append(index)
        keys_of[index] = set(table.column("order_id").to_pylist())
        if index == 1 and planned.count(1) == 1:
            # After the batch was read and classified (a record of it to create), before it writes.
            stranger = dbs.target()
            with stranger.begin() as other:
                wh = sa.Table("wh_orders", sa.MetaData(), autoload_with=other)
                key = table.column("order_id")[0].as_py()
                other.execute(sa.insert(wh).values(order_id=key, customer="typed in by hand"))
            stranger.dispose()
        return out

    monkeypatch.setattr(BatchLoader, "plan", then_a_stranger_inserts)

    result = run(cfg, "run-1")

    assert result.status is RunStatus.COMPLETED
    assert planned.count(1) == 2  # batch 1 planned again after its insert failed
    assert (result.counts.created, result.counts.updated, result.counts.failed) == (19, 1, 0)
    rows = target_rows(dbs)
    assert sorted(rows) == list(range(1, 21))
    updated = [s.key["order_id"] for s in result.samples if s.action is RecordAction.UPDATED]
    assert len(updated) == 1 and rows[updated[0]]["customer"] == order(updated[0])["customer"]
    # The target was empty at the start: batch 0 and batch 1's first plan read nothing; the replay and
    # every batch after it read their keys.
    assert sorted(keys_of) == [0, 1, 2]
    assert not read & keys_of[0]
    assert keys_of[1] | keys_of[2] <= read


def _twenty_orders(dbs: Databases, mode: str) -> SyncConfig:
    """Orders 1 to 20 in the source, and their sync (batches of 7) in ``mode``."""
    make_source(dbs, [order(i) for i in range(1, 21)])
    return orders_config(dbs) if mode == "incremental" else full_orders_config(dbs)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The keys whose target rows (and baselines) the run reads, collected as it reads them."""
    read: set[int] = set()
    read_both, read_target = Reconciler.read_both, Reconciler.read_target

    def both(self: Reconciler, conn: Any, keys: pa.Table) -> Any:
        read.update(keys.column("order_id").to_pylist())
        return read_both(self, conn, keys)

    def target(self: Reconciler, conn: Any, keys: pa.Table) -> Any:
        read.update(keys.column("order_id").to_pylist())
        return read_target(self, conn, keys)

    monkeypatch.setattr(Reconciler, "read_both", both)
    monkeypatch.setattr(Reconciler, "read_target", target)
    return read


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_a_run_reads_the_target_unless_it_found_it_empty(
    dbs: Databases, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _twenty_orders(dbs, mode)
    read = _count_reads(monkeypatch)

    first = run(cfg, "run-1")

    assert first.status is RunStatus.COMPLETED and first.counts.created == 20
    assert read == set()  # target and baselines empty at the start: nothing to read
    make_source(dbs, [order(i) for i in range(21, 24)])

    second = run(cfg, "run-2", full_sync=True)

    assert second.status is RunStatus.COMPLETED
    assert (second.counts.created, second.counts.unchanged) == (3, 20)
    assert read == set(range(1, 24))
