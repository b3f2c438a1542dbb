"""Bidirectional syncs on SQLite, PostgreSQL and MariaDB: changes, creations and deletes both ways."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.conflicts import list_conflicts, resolve_conflicts
from sync_pipelines.types import ConflictChoice, RecordAction, RunStatus
from sync_pipelines_tests.factories import make_source, order, run, target_rows
from sync_pipelines_tests.support.databases import Databases


def two_way(dbs: Databases, **overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "orders_sync",
        "source": {"kind": "sql", "url": dbs.source_url, "table": "orders"},
        "target": {"kind": "sql", "url": dbs.target_url, "table": "wh_orders", "key": ["order_id"]},
        "mapping": {
            "order_id": "id",
            "customer": {"type": "string"},
            "qty": {"type": "integer"},
            "price": {"type": "decimal(12,2)"},
            "status": {"type": "string"},
            "updated_at": {"type": "datetime"},
        },
        "mode": "full",
        "direction": "bidirectional",
        **overrides,
    }
    return SyncConfig.model_validate(data)


def source_rows(dbs: Databases) -> dict[int, dict[str, Any]]:
    engine = dbs.source()
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM orders")).mappings().all()
    engine.dispose()
    return {int(r["id"]): dict(r) for r in rows}


def execute(engine: sa.Engine, statement: Any) -> None:
    with engine.begin() as conn:
        conn.execute(statement)
    engine.dispose()


def wh_orders(dbs: Databases) -> sa.Table:
    engine = dbs.target()
    table = sa.Table("wh_orders", sa.MetaData(), autoload_with=engine)
    engine.dispose()
    return table


@pytest.fixture
def synced(dbs: Databases) -> tuple[Databases, sa.Table]:
    source = make_source(dbs, [order(i) for i in range(1, 11)])
    assert run(two_way(dbs), "run-1").counts.created == 10
    return dbs, source


def actions(result: Any) -> dict[str, RecordAction]:
    return {str(s.key["order_id"]): s.action for s in result.samples}


@pytest.mark.slow
def test_changes_flow_both_ways(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    target = wh_orders(dbs)
    execute(dbs.target(), target.update().where(target.c.order_id == 2).values(customer="edited on target", qty=9))
    execute(dbs.source(), source.update().where(source.c.id == 3).values(status="shipped"))
    cfg = two_way(dbs)

    result = run(cfg, "run-2")

    assert result.status is RunStatus.COMPLETED
    assert actions(result) == {"2": RecordAction.SOURCE_UPDATED, "3": RecordAction.UPDATED}
    assert (result.counts.updated, result.counts.unchanged, result.counts.conflicted) == (2, 8, 0)
    assert source_rows(dbs)[2]["customer"] == "edited on target"
    assert source_rows(dbs)[2]["qty"] == "9"  # written back as the source column's text
    assert target_rows(dbs)[3]["status"] == "shipped"
    settled = run(cfg, "run-3")
    assert (settled.counts.unchanged, settled.counts.updated) == (10, 0)


@pytest.mark.slow
def test_rows_created_on_the_target_reach_the_source(synced: tuple[Databases, sa.Table]) -> None:
    dbs, _ = synced
    row = {
        "order_id": 50,
        "customer": "walk-in",
        "qty": 2,
        "price": Decimal("12.50"),
        "status": "paid",
        "updated_at": dt.datetime(2024, 5, 1, 9, 30),
    }
    execute(dbs.target(), wh_orders(dbs).insert().values(**row))
    cfg = two_way(dbs)

    result = run(cfg, "run-2")

    assert actions(result) == {"50": RecordAction.SOURCE_CREATED}
    assert result.counts.created == 1
    created = source_rows(dbs)[50]
    assert (created["customer"], created["qty"], Decimal(str(created["price"]))) == ("walk-in", "2", Decimal("12.50"))
    settled = run(cfg, "run-3")
    assert (settled.counts.unchanged, settled.counts.created, settled.counts.updated) == (11, 0, 0)


@pytest.mark.slow
def test_a_change_on_both_sides_is_a_conflict(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    target = wh_orders(dbs)
    execute(dbs.target(), target.update().where(target.c.order_id == 4).values(customer="target side"))
    execute(dbs.source(), source.update().where(source.c.id == 4).values(customer="source side"))

    manual = run(two_way(dbs), "run-2")

    assert actions(manual) == {"4": RecordAction.CONFLICT}
    assert manual.counts.conflicted == 1
    assert (source_rows(dbs)[4]["customer"], target_rows(dbs)[4]["customer"]) == ("source side", "target side")
    [conflict] = list_conflicts(two_way(dbs))
    assert conflict.differences() == {
        "customer": {"source": "source side", "target": "target side", "baseline": None, "baseline_known": False}
    }

    target_wins = run(two_way(dbs, on_conflict="target_wins"), "run-3")

    assert actions(target_wins) == {"4": RecordAction.TARGET_WON}
    assert (source_rows(dbs)[4]["customer"], target_rows(dbs)[4]["customer"]) == ("target side", "target side")
    assert run(two_way(dbs), "run-4").counts.unchanged == 10


@pytest.mark.slow
@pytest.mark.parametrize("choice", [ConflictChoice.KEEP_SOURCE, ConflictChoice.KEEP_TARGET])
def test_a_resolved_conflict_leaves_both_sides_equal(
    synced: tuple[Databases, sa.Table], choice: ConflictChoice
) -> None:
    dbs, source = synced
    target = wh_orders(dbs)
    execute(dbs.target(), target.update().where(target.c.order_id == 4).values(customer="target side"))
    execute(dbs.source(), source.update().where(source.c.id == 4).values(customer="source side"))
    cfg = two_way(dbs)
    assert run(cfg, "run-2").counts.conflicted == 1

    resolve_conflicts(cfg, None, choice, "alice", run_id="resolve-1")

    kept = "source side" if choice is ConflictChoice.KEEP_SOURCE else "target side"
    assert (source_rows(dbs)[4]["customer"], target_rows(dbs)[4]["customer"]) == (kept, kept)
    after = run(cfg, "run-3")
    assert (after.counts.unchanged, after.counts.conflicted, after.counts.updated) == (10, 0, 0)


@pytest.mark.slow
def test_deletes_propagate_under_the_delete_guard(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    target = wh_orders(dbs)
    cfg = two_way(dbs, delete_missing=True, max_delete_ratio=0.2)
    execute(dbs.target(), target.delete().where(target.c.order_id == 6))
    execute(dbs.source(), source.delete().where(source.c.id == 7))

    result = run(cfg, "run-2")

    assert result.status is RunStatus.COMPLETED
    assert actions(result) == {"6": RecordAction.SOURCE_DELETED, "7": RecordAction.DELETED}
    assert result.counts.deleted == 2
    assert 6 not in source_rows(dbs) and 7 not in target_rows(dbs)
    assert len(source_rows(dbs)) == len(target_rows(dbs)) == 8

    execute(dbs.target(), target.delete().where(target.c.order_id.in_([1, 2, 3])))
    refused = run(cfg, "run-3")

    assert refused.status is RunStatus.FAILED
    assert "refusing to delete 3 of 8 source rows" in (refused.error or "")
    assert len(source_rows(dbs)) == 8


@pytest.mark.slow
def test_without_delete_missing_a_deleted_row_is_restored(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    target = wh_orders(dbs)
    execute(dbs.target(), target.delete().where(target.c.order_id == 6))
    execute(dbs.source(), source.delete().where(source.c.id == 7))

    result = run(two_way(dbs), "run-2")

    assert actions(result) == {"6": RecordAction.CREATED, "7": RecordAction.SOURCE_CREATED}
    assert len(source_rows(dbs)) == len(target_rows(dbs)) == 10


@pytest.mark.slow
def test_dry_run_plans_both_ways_and_writes_nothing(synced: tuple[Databases, sa.Table]) -> None:
    dbs, _ = synced
    target = wh_orders(dbs)
    execute(dbs.target(), target.update().where(target.c.order_id == 2).values(customer="edited on target"))

    result = run(two_way(dbs), "dry", dry_run=True)

    assert actions(result) == {"2": RecordAction.SOURCE_UPDATED}
    assert source_rows(dbs)[2]["customer"] == "c2"


def test_bidirectional_needs_a_full_sync_of_a_source_table(sqlite_dbs: Databases) -> None:
    with pytest.raises(ValidationError, match="needs mode `full`"):
        two_way(sqlite_dbs, mode="incremental", cursor="updated_at")
    with pytest.raises(ValidationError, match="needs a SQL source `table`"):
        two_way(sqlite_dbs, source={"kind": "sql", "url": sqlite_dbs.source_url, "query": "SELECT * FROM orders"})
    with pytest.raises(ValidationError, match="constant column"):
        two_way(sqlite_dbs, mapping={"order_id": "id", "origin": {"constant": "erp"}})
