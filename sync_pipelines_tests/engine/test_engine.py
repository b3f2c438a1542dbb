"""The engine on SQLite, PostgreSQL and MariaDB: outcomes, deletes, cursor ties, dry runs and crashes."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.engine import RunOptions, extract, load, run_sync, transform
from sync_pipelines.errors import ConcurrentRunError, PermanentConnectorError
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines_tests.factories import ORDERS_T0 as T0
from sync_pipelines_tests.factories import (
    Crash,
    bookkeeping,
    fail_nth_upsert,
    make_source,
    order,
    orders_config,
    recorded,
    run,
    target_rows,
    update_source,
)
from sync_pipelines_tests.support.databases import Databases


@pytest.mark.slow
def test_created_updated_unchanged_failed(dbs: Databases) -> None:
    table = make_source(dbs, [order(i) for i in range(1, 31)] + [order(31, qty="n/a"), order(32, status=None)])
    cfg = orders_config(dbs)

    first = run(cfg, "run-1")
    assert first.status is RunStatus.PARTIAL
    assert first.counts.as_dict() | {} == {
        "processed": 32,
        "succeeded": 31,
        "failed": 1,
        "created": 31,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "skipped": 0,
        "conflicted": 0,
        "target_modified": 0,
    }
    failed = [s for s in first.samples if s.action is RecordAction.FAILED]
    assert failed[0].key == {"order_id": 31}
    assert "qty: cannot convert 'n/a' to integer" in (failed[0].error or "")
    rows = target_rows(dbs)
    assert len(rows) == 31 and 31 not in rows
    assert rows[32]["status"] == "unknown"  # default for NULL
    assert rows[3]["origin"] == "erp" and rows[3]["qty"] == 4 and Decimal(str(rows[3]["price"])) == Decimal("0.75")

    second = run(cfg, "run-2")
    assert second.status is RunStatus.COMPLETED
    assert second.counts.processed == 0  # incremental: nothing after the watermark

    update_source(dbs, table, [4, 5], status="paid", updated_at=T0 + dt.timedelta(days=1))
    third = run(cfg, "run-3")
    assert (third.counts.processed, third.counts.updated, third.counts.created) == (2, 2, 0)
    change = next(s for s in third.samples if s.key == {"order_id": 4})
    assert change.changes["status"] == ["open", "paid"]

    full = run(cfg, "run-4", full_sync=True)
    assert (full.counts.processed, full.counts.unchanged, full.counts.failed) == (32, 31, 1)
    assert full.watermark_after == third.watermark_after

    assert {r["action"] for r in recorded(dbs, run_id="run-1")} == {"created", "failed"}
    assert len(recorded(dbs, run_id="run-1", action="created")) == 31
    updated = recorded(dbs, run_id="run-3")
    assert len(updated) == 2 and json.loads(updated[0]["changes"])["status"] == ["open", "paid"]


def test_too_many_failures_is_failed(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(i, qty="bad") for i in range(1, 5)] + [order(5)])
    result = run(orders_config(sqlite_dbs, max_failure_ratio=0.1), "r")
    assert result.status is RunStatus.FAILED
    assert "4 of 5 records failed" in (result.error or "")


@pytest.mark.slow
def test_cursor_ties_are_neither_lost_nor_read_twice(dbs: Databases) -> None:
    # 20 rows share one cursor value; batches of 7 split the tie in the middle.
    table = make_source(dbs, [order(i, updated_at=T0) for i in range(1, 21)])
    cfg = orders_config(dbs)
    first = run(cfg, "r1")
    assert first.counts.created == 20
    assert first.watermark_after is not None and first.watermark_after["key"] == [20]
    # New rows at the very same cursor value, with keys below and above the watermark's key.
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(table.insert(), [order(i, updated_at=T0) for i in (21, 22)])
    engine.dispose()
    second = run(cfg, "r2")
    assert (second.counts.processed, second.counts.created) == (2, 2)
    assert sorted(target_rows(dbs)) == list(range(1, 23))


@pytest.mark.slow
def test_delete_missing_and_its_guard(dbs: Databases) -> None:
    table = make_source(dbs, [order(i) for i in range(1, 21)])
    cfg = orders_config(dbs, mode="full", cursor=None, delete_missing=True, max_delete_ratio=0.25)
    assert run(cfg, "r1").counts.created == 20
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.id.in_([1, 2, 3])))
    engine.dispose()

    dry = run(cfg, "r2", dry_run=True)
    assert dry.counts.deleted == 3 and len(target_rows(dbs)) == 20

    result = run(cfg, "r3")
    assert result.status is RunStatus.COMPLETED
    assert (result.counts.deleted, result.counts.unchanged) == (3, 17)
    assert sorted(target_rows(dbs)) == list(range(4, 21))
    deleted = recorded(dbs, run_id="r3", action="deleted")
    assert sorted(json.loads(r["record_key"])["order_id"] for r in deleted) == [1, 2, 3]
    planned = recorded(dbs, run_id="r2", action="deleted")  # the dry run's plan named the same records
    assert [json.loads(r["record_key"]) for r in planned] == [json.loads(r["record_key"]) for r in deleted]

    # Deleting 6 of 17 (35%) is over the 25% guard: the run fails and deletes nothing.
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.id <= 9))
    engine.dispose()
    refused = run(cfg, "r4")
    assert refused.status is RunStatus.FAILED
    assert "refusing to delete 6 of 17" in (refused.error or "")
    assert sorted(target_rows(dbs)) == list(range(4, 21))


@pytest.mark.slow
def test_dry_run_writes_nothing(dbs: Databases) -> None:
    table = make_source(dbs, [order(i) for i in range(1, 11)])
    cfg = orders_config(dbs)
    dry_first = run(cfg, "dry-0", dry_run=True)
    assert dry_first.counts.created == 10
    assert not sa.inspect(dbs.target()).has_table("wh_orders")  # not even created
    run(cfg, "r1")
    state_before = bookkeeping(dbs, "SELECT watermark, version FROM _sync_state")
    update_source(dbs, table, [2], status="void", updated_at=T0 + dt.timedelta(days=2))

    dry = run(cfg, "dry-1", dry_run=True)
    assert dry.dry_run and (dry.counts.updated, dry.counts.processed) == (1, 1)
    assert dry.samples[0].changes["status"] == ["open", "void"]
    assert dry.watermark_after == dry.watermark_before
    assert bookkeeping(dbs, "SELECT watermark, version FROM _sync_state") == state_before
    assert [r["action"] for r in recorded(dbs, run_id="dry-1")] == ["updated"]  # its plan, under its own id
    assert target_rows(dbs)[2]["status"] == "open"


@pytest.mark.slow
def test_crash_between_batches_then_rerun_gives_exactly_the_source(
    dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_source(dbs, [order(i) for i in range(1, 51)])
    cfg = orders_config(dbs, max_failure_ratio=0)
    options = RunOptions(run_id="crashing")
    manifest = transform(cfg, extract(cfg, options), options)
    assert len(manifest.batches) == 8

    calls = {"n": 0}
    original = SqlTargetWriter.save_state

    def crash_after_three(self: SqlTargetWriter, conn: Any, state: Any) -> None:
        calls["n"] += 1
        # The run's claim writes the state first, then each batch: the 5th call is inside the 4th batch's
        # transaction, which must roll back whole.
        if calls["n"] == 5:
            raise Crash("killed")
        original(self, conn, state)

    monkeypatch.setattr(SqlTargetWriter, "save_state", crash_after_three)
    with pytest.raises(Crash):
        load(cfg, manifest, options)
    monkeypatch.setattr(SqlTargetWriter, "save_state", original)

    assert sorted(target_rows(dbs)) == list(range(1, 22))  # exactly three batches of 7
    state = bookkeeping(dbs, "SELECT watermark, last_batch FROM _sync_state")[0]
    assert json.loads(state[0])["key"] == [21] and state[1] == 2

    rerun = run(cfg, "after-crash")
    assert rerun.status is RunStatus.COMPLETED
    assert (rerun.counts.processed, rerun.counts.created) == (29, 29)
    rows = target_rows(dbs)
    assert sorted(rows) == list(range(1, 51))
    assert bookkeeping(dbs, "SELECT count(*), count(DISTINCT order_id) FROM wh_orders")[0] == (50, 50)


def test_reexecuting_a_failed_load_resumes_after_committed_batches(
    sqlite_dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 22)])
    cfg = orders_config(sqlite_dbs)
    options = RunOptions(run_id="same-run")
    manifest = transform(cfg, extract(cfg, options), options)
    restore = fail_nth_upsert(monkeypatch, 2, "lost connection")
    with pytest.raises(Crash):
        load(cfg, manifest, options)
    restore()
    result = load(cfg, manifest, options)  # same run, same staged batches
    assert result.counts.processed == 21 and result.counts.created == 21
    assert sorted(target_rows(sqlite_dbs)) == list(range(1, 22))


def test_a_run_that_read_before_another_committed_is_refused(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 6)])
    cfg = orders_config(sqlite_dbs)
    slow = RunOptions(run_id="slow")
    staged = transform(cfg, extract(cfg, slow), slow)
    run(cfg, "fast")
    with pytest.raises(ConcurrentRunError, match="run fast wrote the target after this run read its source"):
        load(cfg, staged, slow)


def test_missing_source_column_names_it(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(1)])
    cfg = orders_config(sqlite_dbs, mapping={"order_id": "id", "colour": "color"})
    with pytest.raises(PermanentConnectorError, match="source has no column\\(s\\) color"):
        run(cfg, "r")


def test_missing_source_table_is_permanent_and_hides_password(sqlite_dbs: Databases) -> None:
    cfg = orders_config(sqlite_dbs)
    with sqlite_dbs.source().connect():
        pass  # an empty database file, without the table
    with pytest.raises(PermanentConnectorError, match="source table 'orders' does not exist"):
        run(cfg, "r")


@pytest.mark.slow
def test_a_zero_key_is_written_as_zero(dbs: Databases) -> None:
    """A created target table gives its key no AUTO_INCREMENT: MariaDB would turn key 0 into a new number."""
    make_source(dbs, [order(0), order(1)])
    result = run_sync(orders_config(dbs), RunOptions(run_id="zero"))
    assert result.counts.created == 2
    engine = dbs.target()
    with engine.connect() as conn:
        ids = sorted(int(r[0]) for r in conn.execute(sa.text("SELECT order_id FROM wh_orders")))
    engine.dispose()
    assert ids == [0, 1]
