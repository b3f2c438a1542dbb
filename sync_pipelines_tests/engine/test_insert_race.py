"""A row inserted on the target by someone else between a batch's read and its write: the batch's insert
fails as a duplicate, the batch is planned again with a read in its own transaction, and the record is
written over the stranger's row as an update; nothing is lost and nothing is written twice."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

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
    make_source(dbs, [order(i) for i in range(1, 21)])
    cfg = orders_config(dbs) if mode == "incremental" else full_orders_config(dbs)
    plan = BatchLoader.plan
    planned: list[int] = []

    def then_a_stranger_inserts(self: BatchLoader, conn: Any, table: pa.Table, batch: BatchFile | None = None) -> Any:
        out = plan(self, conn, table, batch)
        index = -1 if batch is None else batch.index
        planned.append(index)
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
