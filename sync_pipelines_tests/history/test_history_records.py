"""Paged, filtered record history and run filters of the history view, on real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.ledger import RunFilter
from sync_pipelines.history.queries import last_runs, list_backfills, list_runs
from sync_pipelines.history.records import (
    RECORDS_RUN_INDEX,
    RecordFilter,
    RecordStatus,
    RunRecords,
    ensure_record_indexes,
)
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines_tests.factories import make_source, order, orders_config
from sync_pipelines_tests.support.databases import Databases, make_databases

T0 = dt.datetime(2024, 5, 1, 8, 0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """A fresh source and target on SQLite, then on PostgreSQL."""
    yield from make_databases(request.param, tmp_path)


def _two_runs(dbs: Databases) -> SyncConfig:
    """Run 1 creates 19 orders (order 3 fails: its qty is no number); run 2 updates orders 5 and 6."""
    rows = [order(i) for i in range(1, 21)]
    rows[2]["qty"] = "n/a"
    make_source(dbs, rows)
    cfg = orders_config(dbs, history={"entity": "orders"})
    run_sync(cfg, RunOptions(run_id="run-1"))
    with dbs.source().begin() as conn:
        conn.execute(sa.text("UPDATE orders SET status = 'paid', updated_at = :t WHERE id IN (5, 6)"), {"t": T0})
    run_sync(cfg, RunOptions(run_id="run-2", full_sync=True))
    with open_ledger(cfg) as ledger:
        first = RunEntry("run-1", cfg.name, Trigger.MANUAL, "incremental", status=RunStatus.PARTIAL, started_at=T0)
        first.records_run_id = "run-1"
        second = RunEntry(
            "run-2", cfg.name, Trigger.SCHEDULE, "full", status=RunStatus.COMPLETED, user="alice", started_at=T0
        )
        second.started_at = T0 + dt.timedelta(hours=1)
        second.records_run_id = "run-2"
        second.counts.update(processed=19, succeeded=19, unchanged=17, updated=2)
        ledger.finish_run(first)
        ledger.finish_run(second)
        ledger.finish_run(
            RunEntry("run-3", cfg.name, Trigger.MANUAL, "full", dry_run=True, started_at=T0 + dt.timedelta(hours=2))
        )
        ensure_record_indexes(ledger)
        ensure_record_indexes(ledger)  # idempotent
    return cfg


@pytest.mark.slow
def test_records_page_and_filter_by_action_status_and_entity(history_dbs: Databases) -> None:
    cfg = _two_runs(history_dbs)
    with open_ledger(cfg) as ledger:
        first = ledger.get("run-1")
        second = ledger.get("run-2")
        assert first is not None and second is not None
        one, two = RunRecords(ledger, first), RunRecords(ledger, second)
        all_first = one.page(RecordFilter(), page=2, page_size=7)
        whole = one.page(RecordFilter(), page=1, page_size=20)
        failed = one.page(RecordFilter(status=RecordStatus.FAILED))
        created = one.count(RecordFilter(action=(RecordAction.CREATED,)))
        none = one.count(RecordFilter(entity="departments"))
        updated = two.page(RecordFilter(action=(RecordAction.UPDATED,), entity="orders"))
        statuses = two.entity_statuses("orders")
        exported = list(one.iter_rows(RecordFilter(status=RecordStatus.SUCCESS), chunk=4))
        indexes = {ix["name"] for ix in sa.inspect(ledger.engine).get_indexes("_sync_records")}

    assert (all_first.total, all_first.pages, len(all_first.rows)) == (20, 3, 7)
    # Pages follow the order the run wrote its records in (created records are kept as sets, in batch order).
    assert [r.key for r in all_first.rows] == [r.key for r in whole.rows][7:14]
    assert [(r.key, r.status, r.error is not None) for r in failed.rows] == [("order_id=3", RecordStatus.FAILED, True)]
    assert (created, none, len(exported)) == (19, 0, 19)
    assert [r.key for r in updated.rows] == ["order_id=5", "order_id=6"]
    [status_change] = [c for c in updated.rows[0].changes if c.field == "status"]
    assert (status_change.before, status_change.after) == ("open", "paid")
    # Unchanged records are not stored: the ledger's count is added to the sync's entity.
    [orders] = statuses
    assert (orders.entity, orders.success, orders.total, orders.updated) == ("orders", 19, 20, 2)  # order 3 fails again
    assert RECORDS_RUN_INDEX in indexes


@pytest.mark.slow
def test_runs_filter_by_trigger_user_dry_run_and_dates(history_dbs: Databases) -> None:
    cfg = _two_runs(history_dbs)
    scheduled = list_runs([cfg], where=RunFilter(trigger=Trigger.SCHEDULE))
    by_alice = list_runs([cfg], where=RunFilter(user="alice"))
    real = list_runs([cfg], where=RunFilter(dry_run=False), page_size=1)
    window = list_runs([cfg], where=RunFilter(since=T0 + dt.timedelta(minutes=30), until=T0 + dt.timedelta(hours=2)))
    latest = last_runs([cfg])

    assert [e.run_id for e in scheduled.entries] == ["run-2"]
    assert [e.run_id for e in by_alice.entries] == ["run-2"]
    assert (real.total, real.pages, [e.run_id for e in real.entries]) == (2, 2, ["run-2"])
    assert [e.run_id for e in window.entries] == ["run-2"]
    assert latest[cfg.name].run_id == "run-2"  # the later dry run does not count as the last status


def test_backfills_group_partition_runs_with_their_counts(sqlite_dbs: Databases) -> None:
    cfg = orders_config(sqlite_dbs)
    with open_ledger(cfg) as ledger:
        for day, status, created in ((1, RunStatus.COMPLETED, 10), (2, RunStatus.FAILED, 0), (3, RunStatus.PARTIAL, 7)):
            run = RunEntry(
                f"bf-run-{day}",
                cfg.name,
                Trigger.BACKFILL,
                f"partition 2024-03-0{day}",
                status=status,
                backfill_id="abcdefgh",
                started_at=T0 + dt.timedelta(minutes=day),
            )
            run.counts.update(created=created, processed=created, succeeded=created)
            ledger.finish_run(run)
        ledger.finish_run(RunEntry("plain", cfg.name, Trigger.MANUAL, "incremental", started_at=T0))
        runs = ledger.select(where=RunFilter(backfill_id="abcdefgh"))

    [backfill] = list_backfills([cfg])
    assert (backfill.backfill_id, backfill.runs, backfill.counts["created"]) == ("abcdefgh", 3, 17)
    assert (backfill.by_status[RunStatus.FAILED], backfill.by_status[RunStatus.COMPLETED]) == (1, 1)
    assert [r.mode for r in runs] == ["partition 2024-03-03", "partition 2024-03-02", "partition 2024-03-01"]


def test_an_older_ledger_gains_the_backfill_column(sqlite_dbs: Databases) -> None:
    cfg = orders_config(sqlite_dbs)
    with sqlite_dbs.target().begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE _sync_runs (run_id VARCHAR(64) PRIMARY KEY, sync VARCHAR(128) NOT NULL, "
                "trigger VARCHAR(16) NOT NULL, user VARCHAR(128), parent_run_id VARCHAR(64), "
                "records_run_id VARCHAR(64), mode VARCHAR(128) NOT NULL, dry_run BOOLEAN NOT NULL, "
                "status VARCHAR(16) NOT NULL, processed BIGINT NOT NULL, succeeded BIGINT NOT NULL, "
                "failed BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL, "
                "unchanged BIGINT NOT NULL, deleted BIGINT NOT NULL, skipped BIGINT NOT NULL, "
                "conflicted BIGINT NOT NULL, target_modified BIGINT NOT NULL, started_at DATETIME NOT NULL, "
                "finished_at DATETIME, duration_s FLOAT, error TEXT, error_details TEXT)"
            )
        )
    with open_ledger(cfg) as ledger:
        ledger.open_run(RunEntry("r1", cfg.name, Trigger.BACKFILL, "partition 2024-03-01", backfill_id="bf1"))
        found = ledger.get("r1")
    assert found is not None and found.backfill_id == "bf1"
