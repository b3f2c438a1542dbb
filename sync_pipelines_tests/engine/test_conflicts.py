"""Edits made on the target: baselines, the three conflict policies, dry runs and resolution (engine level)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.fingerprint import key_hash, normalise, values_hash
from sync_pipelines.engine.conflicts import (
    conflict_summary,
    get_conflict,
    list_conflicts,
    resolve_conflicts,
)
from sync_pipelines.errors import ConflictResolutionError
from sync_pipelines.types import ConflictChoice, ConflictStatus, RecordAction, RunStatus
from sync_pipelines_tests.factories import (
    ORDERS_T0 as T0,
)
from sync_pipelines_tests.factories import (
    bookkeeping,
    edit_target,
    full_orders_config,
    make_source,
    order,
    run,
    target_rows,
    update_source,
)
from sync_pipelines_tests.support.databases import Databases


def outcomes(result: Any, action: RecordAction) -> list[Any]:
    return [s for s in result.samples if s.action is action]


@pytest.fixture
def synced(dbs: Databases) -> tuple[Databases, sa.Table]:
    """Ten orders synced once, so that every target row has its baseline."""
    table = make_source(dbs, [order(i) for i in range(1, 11)])
    first = run(full_orders_config(dbs), "run-1")
    assert first.counts.created == 10
    return dbs, table


def test_fingerprint_is_stable_across_driver_representations() -> None:
    assert normalise(True, "boolean") == normalise(1, "boolean") == normalise("true", "boolean")
    assert normalise(Decimal("1.5"), "decimal(12,2)") == normalise("1.50", "decimal(12,2)") == "1.50"
    assert normalise(3, "float") == normalise(3.0, "float")
    assert normalise("2024-03-01 08:00:00", "datetime") == normalise(
        __import__("datetime").datetime(2024, 3, 1, 8), "datetime"
    )
    assert key_hash([7], ["integer"]) == key_hash([Decimal(7)], ["integer"])
    assert values_hash({"a": "1"}) != values_hash({"a": "2"})


@pytest.mark.slow
@given(
    st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1)),
    st.integers(min_value=-14, max_value=14),
)
def test_normalised_values_do_not_depend_on_the_driver_representation(
    amount: Decimal, moment: dt.datetime, offset_hours: int
) -> None:
    assert normalise(amount, "decimal(12,2)") == normalise(str(amount), "decimal(12,2)")
    assert normalise(amount, "decimal(12,2)") == normalise(amount.quantize(Decimal("0.0001")), "decimal(12,2)")
    zone = dt.timezone(dt.timedelta(hours=offset_hours))
    aware = moment.replace(tzinfo=dt.UTC).astimezone(zone)
    assert normalise(aware, "datetime") == normalise(moment, "datetime") == normalise(moment.isoformat(), "datetime")


@pytest.mark.slow
def test_every_written_record_has_a_baseline(synced: tuple[Databases, sa.Table]) -> None:
    dbs, _ = synced
    rows = bookkeeping(dbs, "SELECT count(*), min(version), max(version) FROM _sync_base_orders_sync")
    assert [tuple(r) for r in rows] == [(10, 3, 3)]


@pytest.mark.slow
def test_target_edit_alone_is_left_alone(synced: tuple[Databases, sa.Table]) -> None:
    dbs, _ = synced
    edit_target(dbs, 3, customer="edited by hand")

    result = run(full_orders_config(dbs), "run-2")

    assert result.status is RunStatus.COMPLETED
    assert result.counts.target_modified == 1
    assert result.counts.unchanged == 9
    assert result.counts.conflicted == 0
    (modified,) = outcomes(result, RecordAction.TARGET_MODIFIED)
    assert modified.key == {"order_id": 3}
    assert modified.changes == {"customer": ["c3", "edited by hand"]}
    assert target_rows(dbs)[3]["customer"] == "edited by hand"
    assert list_conflicts(full_orders_config(dbs)) == []


@pytest.mark.slow
def test_manual_policy_records_a_conflict_and_keeps_the_target(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    edit_target(dbs, 3, customer="edited by hand")
    update_source(dbs, source, [3], customer="changed at source", status="shipped")
    update_source(dbs, source, [4], status="shipped")
    cfg = full_orders_config(dbs)

    result = run(cfg, "run-2")

    assert result.status is RunStatus.COMPLETED
    assert (result.counts.conflicted, result.counts.updated, result.counts.unchanged) == (1, 1, 8)
    (outcome,) = outcomes(result, RecordAction.CONFLICT)
    assert outcome.changes == {
        "customer": ["edited by hand", "changed at source"],
        "status": ["open", "shipped"],
    }
    rows = target_rows(dbs)
    assert rows[3]["customer"] == "edited by hand" and rows[3]["status"] == "open"
    assert rows[4]["status"] == "shipped"
    (conflict,) = list_conflicts(cfg)
    assert conflict.record_key == {"order_id": 3}
    assert conflict.status is ConflictStatus.OPEN
    assert conflict.run_id == "run-2"
    assert conflict.changed_fields == ["customer", "status"]
    # Both sides changed the customer: its value at the last sync is not kept, only that each side changed it.
    assert conflict.differences()["customer"] == {
        "source": "changed at source",
        "target": "edited by hand",
        "baseline": None,
        "baseline_known": False,
    }
    # Only the source changed the status: the target still holds the value of the last sync.
    assert conflict.differences()["status"]["baseline"] == "open"
    assert conflict.source_values["price"] == "0.75"
    assert conflict.target_values["price"] == "0.75"

    again = run(cfg, "run-3")
    assert again.counts.conflicted == 1
    (still,) = list_conflicts(cfg)
    assert (still.id, still.run_id) == (conflict.id, "run-3")
    assert conflict_summary(cfg).open_count == 1


@pytest.mark.slow
def test_source_wins_overwrites_and_logs_it(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    edit_target(dbs, 5, customer="edited by hand")
    update_source(dbs, source, [5], customer="changed at source")
    cfg = full_orders_config(dbs, on_conflict="source_wins")

    result = run(cfg, "run-2")

    assert result.counts.conflicted == 1
    (won,) = outcomes(result, RecordAction.SOURCE_WON)
    assert won.changes == {"customer": ["edited by hand", "changed at source"]}
    assert target_rows(dbs)[5]["customer"] == "changed at source"
    assert list_conflicts(cfg, status=None) == []
    assert bookkeeping(dbs, "SELECT action FROM _sync_records WHERE run_id = 'run-2'") == [("source_won",)]
    assert run(cfg, "run-3").counts.unchanged == 10


@pytest.mark.slow
def test_target_wins_keeps_the_edit_until_the_source_changes_again(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    edit_target(dbs, 5, customer="edited by hand")
    update_source(dbs, source, [5], customer="changed at source")
    cfg = full_orders_config(dbs, on_conflict="target_wins")

    result = run(cfg, "run-2")

    assert result.counts.conflicted == 1
    assert len(outcomes(result, RecordAction.TARGET_WON)) == 1
    assert target_rows(dbs)[5]["customer"] == "edited by hand"
    assert list_conflicts(cfg, status=None) == []
    later = run(cfg, "run-3")
    assert (later.counts.unchanged, later.counts.target_modified, later.counts.conflicted) == (10, 0, 0)
    assert target_rows(dbs)[5]["customer"] == "edited by hand"
    update_source(dbs, source, [5], customer="changed again")
    assert run(cfg, "run-4").counts.updated == 1
    assert target_rows(dbs)[5]["customer"] == "changed again"


@pytest.mark.slow
def test_dry_run_reports_conflicts_without_recording_them(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    edit_target(dbs, 2, qty=99)
    update_source(dbs, source, [2], qty="4")
    edit_target(dbs, 6, status="held")
    cfg = full_orders_config(dbs)

    result = run(cfg, "dry", dry_run=True)

    assert (result.counts.conflicted, result.counts.target_modified) == (1, 1)
    assert outcomes(result, RecordAction.CONFLICT)[0].changes == {"qty": [99, 4]}
    assert list_conflicts(cfg) == []
    assert target_rows(dbs)[2]["qty"] == 99


@pytest.mark.slow
def test_sides_that_agree_again_close_the_conflict(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    edit_target(dbs, 7, customer="edited by hand")
    update_source(dbs, source, [7], customer="changed at source")
    cfg = full_orders_config(dbs)
    run(cfg, "run-2")
    assert conflict_summary(cfg).open_count == 1

    edit_target(dbs, 7, customer="changed at source")
    result = run(cfg, "run-3")

    assert (result.counts.conflicted, result.counts.unchanged) == (0, 10)
    (closed,) = list_conflicts(cfg, status=None)
    assert closed.status is ConflictStatus.RESOLVED
    assert closed.resolved_by == "run run-3 (source and target agree)"


def _conflicted(dbs: Databases, source: sa.Table, ids: list[int]) -> SyncConfig:
    for i in ids:
        edit_target(dbs, i, customer=f"hand {i}")
    update_source(dbs, source, ids, customer="changed at source")
    cfg = full_orders_config(dbs)
    assert run(cfg, "run-2").counts.conflicted == len(ids)
    return cfg


@pytest.mark.slow
def test_resolve_keep_source_writes_the_source_and_settles(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    cfg = _conflicted(dbs, source, [3, 4])
    first = list_conflicts(cfg)[0]

    resolution = resolve_conflicts(cfg, [first.id], ConflictChoice.KEEP_SOURCE, "alice", run_id="resolve-1")

    assert (resolution.resolved, resolution.remaining_open) == ([first.id], 1)
    assert target_rows(dbs)[3]["customer"] == "changed at source"
    assert target_rows(dbs)[4]["customer"] == "hand 4"
    resolved = get_conflict(cfg, first.id)
    assert resolved.status is ConflictStatus.RESOLVED
    assert (resolved.resolved_by, resolved.resolution) == ("alice", ConflictChoice.KEEP_SOURCE)
    assert resolved.resolved_at is not None
    later = run(cfg, "run-3")
    assert (later.counts.conflicted, later.counts.target_modified, later.counts.unchanged) == (1, 0, 9)


@pytest.mark.slow
def test_resolve_keep_target_keeps_the_edit(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    cfg = _conflicted(dbs, source, [3, 4])

    resolution = resolve_conflicts(cfg, None, ConflictChoice.KEEP_TARGET, "bob", run_id="resolve-1")

    assert len(resolution.resolved) == 2 and resolution.remaining_open == 0
    assert target_rows(dbs)[3]["customer"] == "hand 3"
    later = run(cfg, "run-3")
    assert (later.counts.conflicted, later.counts.target_modified, later.counts.unchanged) == (0, 0, 10)
    assert target_rows(dbs)[4]["customer"] == "hand 4"
    assert {r[0] for r in bookkeeping(dbs, "SELECT resolution FROM _sync_conflicts")} == {"keep_target"}


@pytest.mark.slow
def test_resolving_twice_or_unknown_ids_is_an_error_that_changes_nothing(
    synced: tuple[Databases, sa.Table],
) -> None:
    dbs, source = synced
    cfg = _conflicted(dbs, source, [3, 4])
    one, two = list_conflicts(cfg)
    resolve_conflicts(cfg, [one.id], ConflictChoice.KEEP_TARGET, "bob", run_id="resolve-1")

    with pytest.raises(ConflictResolutionError, match=rf"conflict {one.id} \(by bob at .*\) already resolved"):
        resolve_conflicts(cfg, [one.id, two.id], ConflictChoice.KEEP_SOURCE, "alice", run_id="resolve-2")
    with pytest.raises(ConflictResolutionError, match=r"no conflict 999; nothing was resolved"):
        resolve_conflicts(cfg, [two.id, 999], ConflictChoice.KEEP_SOURCE, "alice", run_id="resolve-3")
    with pytest.raises(ConflictResolutionError, match="resolved_by"):
        resolve_conflicts(cfg, [two.id], ConflictChoice.KEEP_SOURCE, " ", run_id="resolve-4")

    assert get_conflict(cfg, two.id).status is ConflictStatus.OPEN
    assert get_conflict(cfg, one.id).resolution is ConflictChoice.KEEP_TARGET
    assert target_rows(dbs)[4]["customer"] == "hand 4"
    resolve_conflicts(cfg, None, ConflictChoice.KEEP_SOURCE, "alice", run_id="resolve-5")
    with pytest.raises(ConflictResolutionError, match="no open conflicts"):
        resolve_conflicts(cfg, None, ConflictChoice.KEEP_SOURCE, "alice", run_id="resolve-6")


@pytest.mark.slow
def test_deleted_records_lose_their_baseline(synced: tuple[Databases, sa.Table]) -> None:
    dbs, source = synced
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(source.delete().where(source.c.id == 10))
    engine.dispose()
    cfg = full_orders_config(dbs, delete_missing=True)

    result = run(cfg, "run-2", full_sync=True)

    assert result.counts.deleted == 1
    assert bookkeeping(dbs, "SELECT count(*) FROM _sync_base_orders_sync") == [(9,)]


@pytest.mark.slow
def test_a_target_column_with_less_precision_is_not_an_edit(dbs: Databases) -> None:
    """The target keeps whole seconds and one decimal; what it stored is its side of the baseline."""
    precise = T0 + dt.timedelta(microseconds=123_456)
    make_source(dbs, [order(i, updated_at=precise, price=Decimal("1.25")) for i in range(1, 6)])
    engine = dbs.target()
    timestamp = sa.DateTime().with_variant(postgresql.TIMESTAMP(precision=0), "postgresql")
    sa.Table(
        "wh_orders",
        sa.MetaData(),
        sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("customer", sa.Text),
        sa.Column("qty", sa.BigInteger),
        sa.Column("price", sa.Numeric(12, 1)),
        sa.Column("status", sa.Text),
        sa.Column("updated_at", timestamp),
        sa.Column("origin", sa.Text),
    ).create(engine)
    engine.dispose()
    cfg = full_orders_config(dbs)
    assert run(cfg, "run-1").counts.created == 5

    again = run(cfg, "run-2")

    assert (again.counts.unchanged, again.counts.target_modified, again.counts.updated) == (5, 0, 0)
    edit_target(dbs, 2, price=Decimal("9.9"))
    edited = run(cfg, "run-3")
    assert (edited.counts.target_modified, edited.counts.unchanged) == (1, 4)
