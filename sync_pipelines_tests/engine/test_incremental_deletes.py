"""Deletes of incremental syncs (``delete_missing`` with mode ``incremental``): the key scan on SQLite, PostgreSQL
and MariaDB, its guard, dry runs, partition runs and ``delete_scan``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.deletes import missing_keys, scan_due
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines_tests.factories import ORDERS_T0 as T0
from sync_pipelines_tests.factories import bookkeeping, make_source, order, orders_config, recorded, run, target_rows
from sync_pipelines_tests.support.databases import Databases


def _deleting(dbs: Databases, **overrides: Any) -> SyncConfig:
    return orders_config(dbs, delete_missing=True, **overrides)


def _source(dbs: Databases, sql: str, params: dict[str, Any] | None = None) -> None:
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params or {})
    engine.dispose()


def _insert(dbs: Databases, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    engine.dispose()


@pytest.mark.slow
def test_an_incremental_run_deletes_what_left_the_source(dbs: Databases) -> None:
    # Twenty rows tied on one cursor value, read in batches of 7.
    table = make_source(dbs, [order(i, updated_at=T0) for i in range(1, 21)])
    cfg = _deleting(dbs, filter=[{"column": "status", "op": "ne", "value": "void"}])
    assert run(cfg, "r1").counts.created == 20

    _source(dbs, "DELETE FROM orders WHERE id IN (3, 10, 5, 7)")
    # 5 comes back with new values (and a newer cursor), 7 exactly as it was: neither is deleted.
    _insert(dbs, table, [order(5, customer="new", updated_at=T0 + dt.timedelta(hours=1)), order(7, updated_at=T0)])
    # New rows tied with the watermark's cursor value, and a row that stops matching the filter.
    _insert(dbs, table, [order(i, updated_at=T0) for i in (21, 22)])
    _source(dbs, "UPDATE orders SET status = 'void', updated_at = :t WHERE id = 8", {"t": T0 + dt.timedelta(hours=2)})

    second = run(cfg, "r2")
    assert second.status is RunStatus.COMPLETED, second.error
    assert (second.counts.created, second.counts.updated, second.counts.deleted) == (2, 1, 3)
    assert sorted(target_rows(dbs)) == [i for i in range(1, 23) if i not in (3, 8, 10)]
    assert target_rows(dbs)[5]["customer"] == "new"
    deleted = recorded(dbs, run_id="r2", action="deleted")
    assert sorted(json.loads(r["record_key"])["order_id"] for r in deleted) == [3, 8, 10]
    last = next(json.loads(r["changes"]) for r in deleted if json.loads(r["record_key"]) == {"order_id": 3})
    assert last["customer"] == ["c3", None] and last["qty"] == [4, None] and last["status"] == ["open", None]
    assert second.details["key_scan"]["source_keys"] == 19

    third = run(cfg, "r3")
    assert (third.counts.processed, third.counts.deleted) == (0, 0)
    assert len(recorded(dbs, action="deleted")) == 3  # each record deleted exactly once


@pytest.mark.slow
def test_a_composite_key(dbs: Databases) -> None:
    lines = sa.Table(
        "order_lines",
        sa.MetaData(),
        sa.Column("order_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(20)),
        sa.Column("updated_at", sa.DateTime),
    )
    engine = dbs.source()
    lines.metadata.create_all(engine)
    engine.dispose()
    pairs = [(o, n) for o in (1, 2, 3) for n in (1, 2, 3)]
    _insert(dbs, lines, [{"order_id": o, "line": n, "sku": f"s{o}{n}", "updated_at": T0} for o, n in pairs])
    cfg = SyncConfig.model_validate(
        {
            "name": "lines_sync",
            "source": {"kind": "sql", "url": dbs.source_url, "table": "order_lines"},
            "target": {"kind": "sql", "url": dbs.target_url, "table": "wh_lines", "key": ["order_id", "line"]},
            "mode": "incremental",
            "cursor": "updated_at",
            "delete_missing": True,
            "max_delete_ratio": 0.5,
            "batch_size": 4,
        }
    )
    assert run(cfg, "r1").counts.created == 9
    # (1, 2) and (2, 1) go; (2, 1)'s numbers survive in other pairs, so each column alone would not tell.
    _source(dbs, "DELETE FROM order_lines WHERE (order_id = 1 AND line = 2) OR (order_id = 2 AND line = 1)")

    second = run(cfg, "r2")

    assert second.status is RunStatus.COMPLETED, second.error
    assert second.counts.deleted == 2
    engine = dbs.target()
    with engine.connect() as conn:
        left = sorted(tuple(r) for r in conn.execute(sa.text("SELECT order_id, line FROM wh_lines")))
    engine.dispose()
    assert left == sorted(p for p in pairs if p not in ((1, 2), (2, 1)))
    keys = sorted(
        (k["order_id"], k["line"]) for k in (json.loads(r["record_key"]) for r in recorded(dbs, action="deleted"))
    )
    assert keys == [(1, 2), (2, 1)]


@pytest.mark.slow
def test_the_guard_refuses_and_leaves_the_target_untouched(dbs: Databases) -> None:
    make_source(dbs, [order(i) for i in range(1, 21)])
    cfg = _deleting(dbs, max_delete_ratio=0.25)
    run(cfg, "r1")
    before = target_rows(dbs)
    _source(dbs, "DELETE FROM orders WHERE id <= 6")

    refused = run(cfg, "r2")

    assert refused.status is RunStatus.FAILED
    assert "refusing to delete 6 of 20 target rows" in (refused.error or "")
    assert "max_delete_ratio" in (refused.error or "")
    assert target_rows(dbs) == before
    assert recorded(dbs, run_id="r2") == []
    assert bookkeeping(dbs, "SELECT run_id FROM _sync_key_scans") == [("r1",)]


@pytest.mark.slow
def test_a_dry_run_reports_the_deletes_it_would_make(dbs: Databases) -> None:
    make_source(dbs, [order(i) for i in range(1, 21)])
    cfg = _deleting(dbs)
    run(cfg, "r1")
    scans = bookkeeping(dbs, "SELECT run_id, scanned_at FROM _sync_key_scans")
    _source(dbs, "DELETE FROM orders WHERE id IN (4, 9)")

    dry = run(cfg, "dry", dry_run=True)

    assert dry.dry_run and dry.counts.deleted == 2
    sampled = sorted(s.key["order_id"] for s in dry.samples if s.action is RecordAction.DELETED)
    assert sampled == [4, 9]
    assert next(s for s in dry.samples if s.key == {"order_id": 4}).changes["customer"] == ["c4", None]
    assert sorted(target_rows(dbs)) == list(range(1, 21))
    planned = recorded(dbs, run_id="dry")  # the plan, under the dry run's own id: each delete with its last values
    assert [(json.loads(r["record_key"]), r["action"]) for r in planned] == [
        ({"order_id": 4}, "deleted"),
        ({"order_id": 9}, "deleted"),
    ]
    assert json.loads(planned[0]["changes"])["customer"] == ["c4", None]
    assert bookkeeping(dbs, "SELECT run_id, scanned_at FROM _sync_key_scans") == scans


@pytest.mark.slow
def test_partition_runs_never_delete(dbs: Databases) -> None:
    make_source(dbs, [order(i) for i in range(1, 21)])
    cfg = _deleting(dbs)
    run(cfg, "r1")
    _source(dbs, "DELETE FROM orders WHERE id = 2")

    window = (T0, T0 + dt.timedelta(days=1))
    partition = run(cfg, "p1", window=window)

    assert partition.status is RunStatus.COMPLETED and partition.counts.deleted == 0
    assert 2 in target_rows(dbs)
    assert run(cfg, "r2").counts.deleted == 1
    assert 2 not in target_rows(dbs)


@pytest.mark.slow
def test_hourly_scans_wait_for_the_next_hour(sqlite_dbs: Databases) -> None:
    dbs = sqlite_dbs
    make_source(dbs, [order(i) for i in range(1, 21)])
    cfg = _deleting(dbs, delete_scan="hourly")
    run(cfg, "r1")
    _source(dbs, "DELETE FROM orders WHERE id = 2")

    same_hour = run(cfg, "r2")
    assert same_hour.counts.deleted == 0 and "key_scan" not in same_hour.details
    assert 2 in target_rows(dbs)

    engine = dbs.target()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE _sync_key_scans SET scanned_at = :t"), {"t": dt.datetime(2020, 1, 1, 23, 59)})
    engine.dispose()
    next_hour = run(cfg, "r3")
    assert next_hour.counts.deleted == 1 and 2 not in target_rows(dbs)


def _config(**overrides: Any) -> SyncConfig:
    base = {
        "name": "s",
        "source": {"kind": "sql", "url": "sqlite:///s.db", "table": "t"},
        "target": {"kind": "sql", "url": "sqlite:///t.db", "table": "t", "key": ["id"]},
        "mode": "incremental",
        "cursor": "updated_at",
        "delete_missing": True,
    }
    return SyncConfig.model_validate(base | overrides)


def test_scan_due_by_clock_hour_and_local_day() -> None:
    now = dt.datetime(2026, 5, 1, 16, 5)  # 00:05 on May 2nd in Shanghai
    assert scan_due(_config(), now, now)
    assert scan_due(_config(delete_scan="hourly"), None, now)
    assert not scan_due(_config(delete_scan="hourly"), dt.datetime(2026, 5, 1, 16, 0), now)
    assert scan_due(_config(delete_scan="hourly"), dt.datetime(2026, 5, 1, 15, 59), now)
    assert not scan_due(_config(delete_scan="daily"), dt.datetime(2026, 5, 1, 0, 1), now)
    shanghai = _config(delete_scan="daily", timezone="Asia/Shanghai")
    assert scan_due(shanghai, dt.datetime(2026, 5, 1, 15, 59), now)
    assert not scan_due(shanghai, dt.datetime(2026, 5, 1, 16, 1), now)


def test_missing_keys_single_composite_and_mixed_types() -> None:
    target = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64())})
    assert missing_keys(target, pa.table({"id": pa.array([4, 2, 9], pa.int64())})).column("id").to_pylist() == [1, 3]
    pairs = pa.table({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"]})
    source = pa.table({"a": [1, 2], "b": ["y", "x"]})
    assert missing_keys(pairs, source).to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    text = pa.table({"id": pa.array(["1", "x"], pa.string())})
    assert missing_keys(text, pa.table({"id": pa.array([1], pa.int64())})).column("id").to_pylist() == ["x"]
    assert missing_keys(target, target.slice(0, 0)).num_rows == 4


def test_sqlite_keys_come_from_the_cursor_as_sqlalchemy_would_give_them(sqlite_dbs: Databases) -> None:
    """Keys are fetched from sqlite3's cursor as SQLAlchemy would give them: integers, texts, and dates (which
    the reader takes as SQLite's text) as they are, a boolean converted from SQLite's 0 and 1; the filter's
    values are still bound through SQLAlchemy."""
    from sync_pipelines.kinds import source_reader

    events = sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("code", sa.String(10)),
        sa.Column("at", sa.DateTime),
        sa.Column("flag", sa.Boolean),
    )
    engine = sqlite_dbs.source()
    events.metadata.create_all(engine)
    engine.dispose()
    rows = [{"id": i, "code": f"c{i}", "at": T0 + dt.timedelta(hours=i), "flag": i % 2 == 0} for i in range(1, 8)]
    _insert(sqlite_dbs, events, rows)

    def keys(key: list[str], query: str | None = None, **extra: Any) -> list[Any]:
        source = {"kind": "sql", "url": sqlite_dbs.source_url, "table": "events"}
        if query is not None:
            source = {"kind": "sql", "url": sqlite_dbs.source_url, "query": query}
        cfg = SyncConfig.model_validate(
            {
                "name": "events_sync",
                "source": source,
                "target": {"kind": "sql", "url": sqlite_dbs.target_url, "table": "wh_events", "key": key},
                "mapping": {
                    "id": {"type": "integer"},
                    "code": {"type": "string"},
                    "at": {"type": "datetime"},
                    "flag": {"type": "boolean"},
                },
                # A datetime bound as SQLAlchemy stores it on SQLite (microseconds included), not as sqlite3 would.
                "filter": [{"column": "at", "op": "ge", "value": T0 + dt.timedelta(hours=3)}],
                **extra,
            }
        )
        reader = source_reader(cfg)
        try:
            batches = list(reader.read_keys(batch_size=2))  # type: ignore[attr-defined]
        finally:
            reader.close()  # type: ignore[attr-defined]
        table = pa.concat_tables(batches)
        return sorted(zip(*[table.column(k).to_pylist() for k in key], strict=True))

    assert keys(["id", "code"]) == [(i, f"c{i}") for i in range(3, 8)]
    # A source defined by a query is probed for its columns first (a streamed statement): the keys read after
    # it on the same connection still start with the first one.
    assert keys(["id", "code"], query="SELECT id, code, at, flag FROM events") == [(i, f"c{i}") for i in range(3, 8)]
    stored = [(f"{T0 + dt.timedelta(hours=i):%Y-%m-%d %H:%M:%S.%f}",) for i in range(3, 8)]
    assert keys(["at"]) == stored
    flagged = keys(["id", "flag"])
    assert flagged == [(i, i % 2 == 0) for i in range(3, 8)]
    assert all(type(flag) is bool for _, flag in flagged)  # SQLAlchemy's rows: booleans, not sqlite3's 0 and 1
