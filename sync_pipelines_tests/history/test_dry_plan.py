"""A dry run's plan in the ledger tables: every record it would create, update, delete, leave failed or hold back,
listed and filtered like a real run's records, on SQLite, PostgreSQL and MariaDB; the target, its baselines and
the records of real runs untouched."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.history.export import export_csv
from sync_pipelines.history.ledger import RunEntry, Trigger, open_ledger
from sync_pipelines.history.records import RecordFilter, RecordStatus, RunRecords
from sync_pipelines.types import COUNT_KEYS, RecordAction
from sync_pipelines_tests.factories import (
    bookkeeping,
    edit_target,
    full_orders_config,
    make_source,
    order,
    orders_config,
    recorded,
    run,
    target_rows,
    update_source,
)
from sync_pipelines_tests.support.databases import Databases


def ledger_entry(cfg: SyncConfig, result: Any) -> RunEntry:
    """Write the ledger row the load step writes for ``result`` (as ``audit.record_result`` does) and return it."""
    entry = RunEntry(
        result.run_id,
        cfg.name,
        Trigger.MANUAL,
        "full" if result.full_sync else "incremental",
        status=result.status,
        records_run_id=result.run_id,
        dry_run=result.dry_run,
        counts=result.counts.as_dict(),
    )
    with open_ledger(cfg) as ledger:
        ledger.finish_run(entry)
        found = ledger.get(result.run_id)
    assert found is not None
    return found


def untouched(dbs: Databases) -> dict[str, list[Any]]:
    """What a dry run must leave as it was: the target rows and every bookkeeping table but the ledger's."""
    engine = dbs.target()
    with engine.connect() as conn:
        names = [
            t
            for t in sa.inspect(conn).get_table_names()
            if t not in ("_sync_runs", "_sync_records", "_sync_record_sets")
        ]
        found = {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}")).all()), key=repr) for t in names}
    engine.dispose()
    assert {"wh_orders", "_sync_state"} <= set(found) and "_sync_base_orders_sync" in found
    return found


def by_action(records: RunRecords, filters: RecordFilter | None = None) -> dict[str, list[Any]]:
    page = records.page(filters or RecordFilter(), page_size=500)
    found: dict[str, list[Any]] = {}
    for row in page.rows:
        found.setdefault(row.action.value, []).append(row)
    return found


@pytest.mark.slow
def test_a_dry_runs_page_lists_its_updates_deletes_conflicts_and_target_edits(dbs: Databases, tmp_path: Path) -> None:
    source = make_source(dbs, [order(i) for i in range(1, 11)])
    cfg = full_orders_config(dbs, delete_missing=True, max_delete_ratio=0.5)
    real = run(cfg, "run-1")
    assert real.counts.created == 10
    real_records = recorded(dbs, run_id="run-1")
    update_source(dbs, source, [3], status="paid")
    edit_target(dbs, 2, qty=99)  # and changed at the source: a conflict
    update_source(dbs, source, [2], qty="4")
    edit_target(dbs, 6, status="held")  # edited on the target only
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(source.delete().where(source.c.id == 4))
        conn.execute(source.insert(), [order(11), order(12, qty="n/a")])
    engine.dispose()
    before = untouched(dbs)

    dry = run(cfg, "dry-1", dry_run=True)

    counts = dry.counts
    assert (counts.updated, counts.deleted, counts.conflicted, counts.target_modified) == (1, 1, 1, 1)
    assert (counts.created, counts.failed) == (1, 1)
    assert untouched(dbs) == before  # nothing written to the target or its bookkeeping
    assert 11 not in target_rows(dbs) and 4 in target_rows(dbs)
    assert recorded(dbs, run_id="run-1") == real_records  # the real run's history is as it was

    entry = ledger_entry(cfg, dry)
    with open_ledger(cfg) as ledger:
        records = RunRecords(ledger, entry)
        listed = by_action(records)
        assert {a: len(rows) for a, rows in listed.items()} == {
            "created": 1,
            "updated": 1,
            "deleted": 1,
            "failed": 1,
            "conflict": 1,
            "target_modified": 1,
        }
        assert listed["updated"][0].key == "order_id=3"
        assert [(c.field, c.before, c.after) for c in listed["updated"][0].changes] == [("status", "open", "paid")]
        assert listed["conflict"][0].key == "order_id=2"
        assert {c.field: (c.before, c.after) for c in listed["conflict"][0].changes}["qty"] == (99, 4)
        assert listed["deleted"][0].key == "order_id=4"
        assert listed["created"][0].key == "order_id=11"
        assert "qty" in (listed["failed"][0].error or "")

        # The per-entity row agrees with the run's counts.
        (status,) = records.entity_statuses("wh_orders")
        assert status.by_action.get(RecordAction.UNCHANGED) == counts.unchanged
        assert status.total == counts.processed + counts.deleted
        assert status.by_action[RecordAction.FAILED] == counts.failed
        assert status.updated == counts.updated

        # Filters work as on a real run.
        failed = records.page(RecordFilter(status=RecordStatus.FAILED))
        assert [r.key for r in failed.rows] == ["order_id=12"]
        held = records.page(RecordFilter(status=RecordStatus.NOT_WRITTEN))
        assert sorted(r.action.value for r in held.rows) == ["conflict", "target_modified"]

        # And the download.
        path = tmp_path / "plan.csv"
        assert export_csv(path, ledger, entry) == 6
        with path.open(encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        assert {r["action"] for r in rows} == {"created", "updated", "deleted", "failed", "conflict", "target_modified"}

        # The ledger row's counts are the plan's, and a real run after it records its own records only.
        assert {k: entry.counts[k] for k in COUNT_KEYS} == counts.as_dict()
    second = run(cfg, "run-2")
    assert {r["action"] for r in recorded(dbs, run_id="run-2")} >= {"updated", "deleted", "created", "failed"}
    assert len(recorded(dbs, run_id="dry-1")) == 6  # the plan stays the dry run's own
    assert second.counts.deleted == 1


@pytest.mark.slow
def test_a_first_dry_run_lists_its_failed_records(dbs: Databases) -> None:
    rows = [order(i) for i in range(1, 21)] + [order(20 + i, qty="bad") for i in range(1, 5)]
    make_source(dbs, rows)
    cfg = orders_config(dbs, max_failure_ratio=0.5)

    dry = run(cfg, "dry-0", dry_run=True)

    assert (dry.counts.created, dry.counts.failed) == (20, 4)
    assert not sa.inspect(dbs.target()).has_table("wh_orders")  # the target is not even created
    entry = ledger_entry(cfg, dry)
    with open_ledger(cfg) as ledger:
        records = RunRecords(ledger, entry)
        (status,) = records.entity_statuses("wh_orders")
        assert (status.by_action[RecordAction.FAILED], status.by_action[RecordAction.CREATED]) == (4, 20)
        assert status.success == 20 and status.total == 24
        failed = records.page(RecordFilter(action=(RecordAction.FAILED,)))
        assert failed.total == 4
        assert sorted(r.key for r in failed.rows) == [f"order_id={i}" for i in (21, 22, 23, 24)]
        assert all("qty" in (r.error or "") for r in failed.rows)
    # Created records are stored compactly, as a real run stores them: one key set per batch.
    sets = bookkeeping(dbs, "SELECT run_id, action, count FROM _sync_record_sets")
    assert {(r[0], r[1]) for r in sets} == {("dry-0", "created")} and sum(r[2] for r in sets) == 20
    assert len(sets) == 3  # batches of 7: the fourth (orders 22-24) holds failed records only

    real = run(cfg, "run-1")
    assert real.counts.created == 20
    assert len(recorded(dbs, run_id="run-1", action="created")) == 20
    assert len(recorded(dbs, run_id="dry-0")) == 24
