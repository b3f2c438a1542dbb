"""The run ledger and record history on SQLite, PostgreSQL and MariaDB, and the pure helpers around them."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from sync_pipelines.engine import RunOptions, extract, load, run_sync, transform
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.queries import find_run, list_runs
from sync_pipelines.history.records import RecordFilter, RunRecords
from sync_pipelines.history.stats import compute_stats, percentile
from sync_pipelines.orchestration.metadata import trigger_of, user_of
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import Crash, fail_nth_upsert, make_source, order, orders_config
from sync_pipelines_tests.support.databases import Databases

T0 = dt.datetime(2024, 5, 1, 8, 0, 0)


def entry(run_id: str, minutes: int, **overrides: object) -> RunEntry:
    values: dict[str, object] = {
        "run_id": run_id,
        "sync": "orders_sync",
        "trigger": Trigger.MANUAL,
        "mode": "incremental",
        "started_at": T0 + dt.timedelta(minutes=minutes),
    }
    values.update(overrides)
    return RunEntry(**values)  # type: ignore[arg-type]


@pytest.mark.slow
def test_ledger_rows_open_finish_and_close_on_every_backend(dbs: Databases) -> None:
    cfg = orders_config(dbs)
    with open_ledger(cfg) as ledger:
        ledger.open_run(entry("run-a", 0, user="alice", trigger=Trigger.API))
        ledger.open_run(entry("run-a", 5))  # a later step of the same run keeps the first row
        done = entry("run-a", 0, status=RunStatus.PARTIAL, finished_at=T0 + dt.timedelta(seconds=90))
        done.counts.update(processed=10, succeeded=9, created=9, failed=1)
        ledger.finish_run(done)
        ledger.open_run(entry("run-b", 10))
        assert ledger.close_run(
            "run-b", RunStatus.CANCELLED, error="stopped", finished_at=T0 + dt.timedelta(minutes=11)
        )
        assert not ledger.close_run("run-b", RunStatus.FAILED, error="again")  # already closed
        assert not ledger.close_run("run-a", RunStatus.FAILED, error="late")

        a, b = ledger.get("run-a"), ledger.get("run-b")
        by_prefix = ledger.get_by_prefix("run-")  # two runs match: ambiguous
        assert ledger.count(status=RunStatus.PARTIAL) == 1

    assert a is not None and b is not None and by_prefix is None
    assert (a.status, a.trigger, a.user, a.counts["created"], a.started_at) == (
        RunStatus.PARTIAL,
        Trigger.MANUAL,  # the finished row is the one the load step wrote
        None,
        9,
        T0,
    )
    assert a.duration_s == 90.0
    assert (b.status, b.error, b.duration_s) == (RunStatus.CANCELLED, "stopped", 60.0)


@pytest.mark.slow
def test_records_keep_entity_and_field_changes_and_the_ledger_pages_them(dbs: Databases) -> None:
    make_source(dbs, [order(i) for i in range(1, 6)])
    cfg = orders_config(dbs, history={"store_unchanged": True, "entity": "orders"})
    run_sync(cfg, RunOptions(run_id="run-1"))
    with dbs.source().begin() as conn:
        conn.execute(sa.text("UPDATE orders SET status = 'paid', updated_at = :t WHERE id = 2"), {"t": T0})
    run_sync(cfg, RunOptions(run_id="run-2", full_sync=True))
    with open_ledger(cfg) as ledger:
        entries = [
            entry(run_id, i, records_run_id=run_id, status=RunStatus.COMPLETED)
            for i, run_id in enumerate(("run-1", "run-2"))
        ]
        for finished in entries:
            ledger.finish_run(finished)
        records = list(RunRecords(ledger, entries[1]).iter_rows(RecordFilter(), chunk=2))

    assert [(r["action"], r["entity"]) for r in records].count(("unchanged", "orders")) == 4
    [updated] = [r for r in records if r["action"] == "updated"]
    assert json.loads(updated["record_key"]) == {"order_id": 2}
    assert json.loads(updated["changes"])["status"] == ["open", "paid"]
    page = list_runs([cfg], page=2, page_size=1)
    assert (page.total, page.pages, [e.run_id for e in page.entries]) == (2, 2, ["run-1"])
    found = find_run([cfg], "run-2")
    assert found is not None and found[1].records_run_id == "run-2"


def test_an_older_records_table_gains_the_entity_column(sqlite_dbs: Databases) -> None:
    with sqlite_dbs.target().begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE _sync_records (id INTEGER PRIMARY KEY, run_id VARCHAR(64) NOT NULL, "
                "sync VARCHAR(128) NOT NULL, batch INTEGER NOT NULL, record_key TEXT NOT NULL, "
                "action VARCHAR(16) NOT NULL, changes TEXT, error TEXT, recorded_at DATETIME NOT NULL)"
            )
        )
    make_source(sqlite_dbs, [order(1), order(2, qty="n/a")])

    run_sync(orders_config(sqlite_dbs), RunOptions(run_id="run-1"))

    with sqlite_dbs.target().connect() as conn:
        rows = conn.execute(sa.text("SELECT entity, action FROM _sync_records")).all()
    assert [tuple(r) for r in rows] == [("wh_orders", "failed")]


@pytest.mark.parametrize(
    ("tags", "parent", "expected"),
    [
        ({}, None, Trigger.MANUAL),
        ({"sync/trigger": "cli"}, None, Trigger.MANUAL),
        ({"sync/trigger": "api"}, None, Trigger.API),
        ({"dagster/schedule_name": "orders_schedule"}, None, Trigger.SCHEDULE),
        ({"dagster/sensor_name": "drop"}, None, Trigger.SENSOR),
        ({"dagster/backfill": "abc"}, None, Trigger.BACKFILL),
        ({"dagster/schedule_name": "orders_schedule"}, "parent-run", Trigger.RETRY),
        ({"dagster/parent_run_id": "parent-run", "sync/trigger": "api"}, None, Trigger.RETRY),
    ],
)
def test_trigger_of_tags(tags: dict[str, str], parent: str | None, expected: Trigger) -> None:
    assert trigger_of(tags, parent) is expected


def test_user_of_tags() -> None:
    assert user_of({"sync/user": " alice "}) == "alice"
    assert user_of({"dagster/user": "bob@example.com"}) == "bob@example.com"
    assert user_of({"sync/user": ""}) is None


def test_percentiles_and_success_rate() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)
    runs = [
        entry("a", 0, status=RunStatus.COMPLETED, duration_s=2.0),
        entry("b", 1, status=RunStatus.PARTIAL, duration_s=4.0),
        entry("c", 2, status=RunStatus.FAILED, duration_s=6.0),
        entry("d", 3, status=RunStatus.RUNNING),
        entry("e", 4, status=RunStatus.COMPLETED, dry_run=True, duration_s=1.0),
    ]
    runs[0].counts.update(processed=5, created=5)
    runs[4].counts.update(processed=5, created=5)  # a dry run: left out of the statistics

    stats = compute_stats(runs, ["orders_sync", "idle"])

    s = stats["orders_sync"]
    assert (s.runs, s.finished, s.succeeded, s.success_rate) == (4, 3, 2, 2 / 3)
    assert (s.records["created"], s.processed, s.p50_s) == (5, 5, 4.0)
    assert stats["idle"].runs == 0 and stats["idle"].success_rate is None


def test_a_failed_run_closed_after_its_reexecution_committed_counts_only_its_own_batches(
    sqlite_dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-execution files its records under the failed run it resumes; closing either run late (the failed
    one after its re-execution committed batches, or a re-execution that died too) counts each one's own."""
    make_source(sqlite_dbs, [order(i) for i in range(1, 22)])
    cfg = orders_config(sqlite_dbs)  # batches of 7: three batches
    parent = RunOptions(run_id="parent")
    manifest = transform(cfg, extract(cfg, parent), parent)
    with open_ledger(cfg) as ledger:
        ledger.open_run(entry("parent", 0))
        restore = fail_nth_upsert(monkeypatch, 2, "worker killed")
        with pytest.raises(Crash, match="worker killed"):
            load(cfg, manifest, parent)
        restore()

        # The re-execution resumes the parent's staged batches before the parent's row is closed.
        ledger.open_run(entry("retry", 1, parent_run_id="parent", records_run_id="parent"))
        retry = RunOptions(run_id="parent", process_run_id="retry")
        result = load(cfg, manifest, retry)
        assert result.counts.created == 21  # the whole sync run: 7 resumed, 14 written now
        engine = sa.create_engine(sqlite_dbs.target_url)
        with engine.connect() as conn:
            attempts = conn.execute(sa.text("SELECT batch, attempt FROM _sync_batches ORDER BY batch")).all()
        assert [tuple(a) for a in attempts] == [(0, "parent"), (1, "retry"), (2, "retry")]
        with engine.begin() as conn:  # the parent's batch as an earlier release recorded it: no attempt
            conn.execute(sa.text("UPDATE _sync_batches SET attempt = NULL WHERE batch = 0"))
        engine.dispose()

        assert ledger.close_run("parent", RunStatus.FAILED, error="process died")
        assert ledger.close_run("retry", RunStatus.FAILED, error="process died")
        closed_parent, closed_retry = ledger.get("parent"), ledger.get("retry")
    assert closed_parent is not None and closed_retry is not None
    assert closed_parent.counts["created"] == 7
    assert closed_retry.counts["created"] == 14


@pytest.mark.slow
def test_a_resume_record_of_an_earlier_release_gains_the_attempt_column(dbs: Databases) -> None:
    cfg = orders_config(dbs)
    engine = sa.create_engine(dbs.target_url)
    with engine.begin() as conn:  # _sync_batches as an earlier release created it
        conn.execute(
            sa.text(
                "CREATE TABLE _sync_batches (sync VARCHAR(128) NOT NULL, run_id VARCHAR(64) NOT NULL, "
                "batch INTEGER NOT NULL, chunk INTEGER NOT NULL, committed_at TIMESTAMP NULL, "
                "PRIMARY KEY (sync, run_id, batch))"
            )
        )
    engine.dispose()
    make_source(dbs, [order(i) for i in range(1, 9)])
    result = run_sync(cfg, RunOptions(run_id="after-upgrade"))
    assert result.counts.created == 8
    engine = sa.create_engine(dbs.target_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT batch, attempt FROM _sync_batches ORDER BY batch")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(0, "after-upgrade"), (1, "after-upgrade")]
