"""Bookkeeping written by earlier releases is upgraded on first use, on each real database: no false
conflict, no lost conflict, no lost history.

Format 1 kept hex SHA-256 hashes and four indexes on the outcomes; format 2 their 64-bit prefixes, every
sync's baselines in one table ``_sync_baselines`` with a JSON copy of the target's values; format 3 (the
current one) one table of row hashes and field digests per sync, keyed by the record's key."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.column_types import LONG_TEXT
from sync_pipelines.connectors.dialects import backend
from sync_pipelines.connectors.fingerprint import hash_from_hex, key_hash, normalise_row, text_hash, values_hash
from sync_pipelines.engine.conflicts import list_conflicts, resolve_conflicts
from sync_pipelines.types import ConflictChoice, RunStatus
from sync_pipelines_tests.factories import edit_target, full_orders_config, make_source, order, run, update_source
from sync_pipelines_tests.support.databases import Databases

_V1_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _v1_digest(payload: Any) -> str:
    """The previous release's hash: the SHA-256 of the JSON text, as 64 hex characters."""
    return hashlib.sha256(_V1_ENCODER.encode(payload).encode()).hexdigest()


def _v1_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """``_sync_baselines`` and ``_sync_conflicts`` as the previous release created them."""
    baselines = sa.Table(
        "_sync_baselines",
        metadata,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("target_hash", sa.String(64), nullable=False),
        sa.Column("target_values", LONG_TEXT, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    # The conflicts table was the current one but for its hex key hash.
    current = bookkeeping.conflicts_table(sa.MetaData())
    conflicts = sa.Table(
        current.name,
        metadata,
        *(
            sa.Column("key_hash", sa.String(64), nullable=False) if c.name == "key_hash" else c._copy()
            for c in current.columns
        ),
    )
    return baselines, conflicts


TYPES = {
    "order_id": "integer",
    "customer": "string",
    "qty": "integer",
    "price": "decimal(12,2)",
    "status": "string",
    "updated_at": "datetime",
    "origin": "string",
}
FIELDS = [f for f in TYPES if f != "order_id"]
SYNC = "orders_sync"


def _snapshot(dbs: Databases) -> dict[int, dict[str, Any]]:
    """The target rows as they are (right after a run: the values both sides agree on)."""
    engine = dbs.target()
    with engine.connect() as conn:
        rows = {r["order_id"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM wh_orders")).mappings()}
    engine.dispose()
    return rows


def _to_format_2(dbs: Databases, agreed: dict[int, dict[str, Any]], sides: dict[int, str] | None = None) -> None:
    """Rewrite the sync's baselines as format 2 kept them: one shared table, by key hash, with the target's
    values. ``sides`` gives records whose two sides differed (the target stored this ``customer``)."""
    sides = sides or {}
    engine = dbs.target()
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE _sync_base_{SYNC}"))
        table = bookkeeping.baselines_table(sa.MetaData())
        table.create(conn)
        rows = []
        for order_id, row in agreed.items():
            source = normalise_row(row, TYPES, FIELDS)
            target = {**source, "customer": sides[order_id]} if order_id in sides else source
            rows.append(
                {
                    "sync": SYNC,
                    "key_hash": key_hash([order_id], ["integer"]),
                    "source_hash": values_hash(source),
                    "target_hash": values_hash(target),
                    "target_values": json.dumps(target, sort_keys=True, separators=(",", ":")),
                    "run_id": "run-1",
                    "updated_at": dt.datetime(2024, 1, 1),
                }
            )
        conn.execute(table.insert(), rows)
    engine.dispose()


def _to_previous_format(dbs: Databases, ids: range) -> None:
    """Rewrite the target's format-2 bookkeeping as format 1 kept it, hashes recomputed its way."""
    hex_of_key = {_v1_digest([i]): i for i in ids}
    engine = dbs.target()
    with engine.begin() as conn:
        current = sa.MetaData()
        baselines = conn.execute(sa.select(sa.Table("_sync_baselines", current, autoload_with=conn))).mappings().all()
        conflicts = conn.execute(sa.select(sa.Table("_sync_conflicts", current, autoload_with=conn))).mappings().all()
        by_prefix = {hash_from_hex(h): h for h in hex_of_key}
        old_rows = []
        for row in baselines:
            values_hex = _v1_digest(json.loads(row["target_values"]))
            # The current hashes are exactly the prefixes of the previous ones.
            assert hash_from_hex(values_hex) == row["target_hash"] == row["source_hash"]
            key_hex = by_prefix[row["key_hash"]]
            old_rows.append(
                {
                    **dict(row),
                    "key_hash": key_hex,
                    "record_key": json.dumps({"order_id": hex_of_key[key_hex]}),
                    "source_hash": values_hex,
                    "target_hash": values_hex,
                }
            )
        old_conflicts = [{**dict(c), "key_hash": by_prefix[c["key_hash"]]} for c in conflicts]
        conn.execute(sa.text("DROP TABLE _sync_baselines"))
        conn.execute(sa.text("DROP TABLE _sync_conflicts"))
        old_baselines, old_conflict_table = _v1_tables(sa.MetaData())
        old_baselines.create(conn)
        old_conflict_table.create(conn)
        conn.execute(old_baselines.insert(), old_rows)
        if old_conflicts:
            conn.execute(old_conflict_table.insert(), old_conflicts)
        records = sa.Table("_sync_records", sa.MetaData(), autoload_with=conn)
        sa.Index(bookkeeping.RECORDS_RUN_INDEX, records.c.run_id).drop(conn)
        sa.Index("ix__sync_records_run_id", records.c.run_id).create(conn)
        sa.Index("ix__sync_records_sync", records.c.sync).create(conn)
    engine.dispose()


def _inspect(dbs: Databases) -> tuple[set[str], dict[str, Any], set[str]]:
    engine = dbs.target()
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        kinds = {
            f"{t}.key_hash": next(c["type"] for c in inspector.get_columns(t) if c["name"] == "key_hash")
            for t in ("_sync_conflicts",)
        }
        indexes = {ix["name"] for ix in inspector.get_indexes("_sync_records")}
    engine.dispose()
    return tables, kinds, indexes


def _count(dbs: Databases, sql: str) -> int:
    engine = dbs.target()
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql)).scalar_one()
    engine.dispose()
    return int(value)


@pytest.mark.slow
def test_previous_bookkeeping_is_upgraded_without_false_or_lost_conflicts(dbs: Databases) -> None:
    source = make_source(dbs, [order(i) for i in range(1, 11)])
    cfg = full_orders_config(dbs)
    assert run(cfg, "run-1").counts.created == 10
    agreed = _snapshot(dbs)
    edit_target(dbs, 3, customer="edited by hand")
    update_source(dbs, source, [3], customer="changed at source")
    assert run(cfg, "run-2").counts.conflicted == 1
    (open_conflict,) = list_conflicts(cfg)
    _to_format_2(dbs, agreed)
    _to_previous_format(dbs, range(1, 11))

    # Changes made while the tables are in the old format: one update, one target edit, the conflict again.
    update_source(dbs, source, [5], status="shipped")
    edit_target(dbs, 6, customer="edited too")
    update_source(dbs, source, [3], customer="changed again")
    # A dry run plans on the upgraded tables exactly what the real run then does.
    planned = run(cfg, "dry-3", dry_run=True)
    result = run(cfg, "run-3")

    for counts in (planned.counts, result.counts):
        assert (counts.updated, counts.target_modified, counts.conflicted, counts.unchanged) == (1, 1, 1, 7)
        assert counts.created == counts.failed == 0
    assert result.status is RunStatus.COMPLETED
    (still_open,) = list_conflicts(cfg)
    assert still_open.id == open_conflict.id
    assert still_open.key_hash == open_conflict.key_hash
    assert still_open.source_values["customer"] == "changed again"
    tables, kinds, indexes = _inspect(dbs)
    assert not {"_sync_baselines", "_sync_baselines_v1", "_sync_conflicts_v1"} & tables
    assert all(isinstance(kind, sa.Integer) for kind in kinds.values()), kinds
    assert bookkeeping.RECORDS_RUN_INDEX in indexes
    assert not {"ix__sync_records_run_id", "ix__sync_records_sync"} & indexes
    # No history was lost: the outcomes of the runs before the upgrade are all there.
    assert _count(dbs, "SELECT count(*) FROM _sync_records WHERE run_id = 'run-2'") == 1
    assert _count(dbs, "SELECT sum(count) FROM _sync_record_sets WHERE run_id = 'run-1'") == 10
    assert _count(dbs, f"SELECT count(*) FROM _sync_base_{SYNC}") == 10

    # The carried-over conflict resolves by its id; a new one gets a new id; then everything is quiet.
    resolve_conflicts(cfg, [open_conflict.id], ConflictChoice.KEEP_SOURCE, "tester", run_id="resolve-1")
    edit_target(dbs, 7, customer="hand edit")
    update_source(dbs, source, [7], customer="source edit")
    assert run(cfg, "run-4").counts.conflicted == 1
    (new_conflict,) = list_conflicts(cfg)
    assert new_conflict.id > open_conflict.id
    resolve_conflicts(cfg, [new_conflict.id], ConflictChoice.KEEP_TARGET, "tester", run_id="resolve-2")
    quiet = run(cfg, "run-5").counts
    assert (quiet.conflicted, quiet.updated, quiet.created) == (0, 0, 0)


@pytest.mark.slow
def test_format_2_baselines_whose_sides_differed_are_judged_by_their_own_hashes(dbs: Databases) -> None:
    source = make_source(dbs, [order(i) for i in range(1, 7)])
    cfg = full_orders_config(dbs)
    assert run(cfg, "run-1").counts.created == 6
    agreed = _snapshot(dbs)
    # Record 4's target stored its customer otherwise than the source sent it (a lossy column would).
    edit_target(dbs, 4, customer="C4 AS STORED")
    _to_format_2(dbs, agreed, sides={4: "C4 AS STORED"})

    quiet = run(cfg, "run-2").counts
    assert (quiet.unchanged, quiet.updated, quiet.target_modified, quiet.conflicted) == (6, 0, 0, 0)
    assert _count(dbs, f"SELECT count(*) FROM _sync_base_{SYNC} WHERE version = 2") == 1
    assert _count(dbs, f"SELECT count(*) FROM _sync_base_{SYNC} WHERE version = 3") == 5
    assert "_sync_baselines" not in _inspect(dbs)[0]

    # Judged by its format-2 hashes: an edit on the target only, then a change at the source only.
    edit_target(dbs, 4, status="edited on the target")
    assert run(cfg, "run-3").counts.target_modified == 1
    update_source(dbs, source, [2], status="shipped")
    after = run(cfg, "run-4").counts
    assert (after.updated, after.target_modified, after.conflicted) == (1, 1, 0)


@pytest.mark.slow
def test_an_interrupted_upgrade_is_finished_by_the_next_run(dbs: Databases) -> None:
    source = make_source(dbs, [order(i) for i in range(1, 6)])
    cfg = full_orders_config(dbs)
    assert run(cfg, "run-1").counts.created == 5
    _to_format_2(dbs, _snapshot(dbs))
    _to_previous_format(dbs, range(1, 6))
    # Cut short after the old table was set aside and the new one half filled.
    engine = dbs.target()
    with engine.begin() as conn:
        old = sa.Table("_sync_baselines", sa.MetaData(), autoload_with=conn)
        backend(conn).rename_table(conn, old, "_sync_baselines_v1")
        current = bookkeeping.baselines_table(sa.MetaData())
        current.create(conn)
        conn.execute(
            current.insert(),
            [
                {
                    "sync": "orders_sync",
                    "key_hash": 1,
                    "source_hash": 2,
                    "target_hash": 3,
                    "target_values": "{}",
                    "run_id": "partial",
                    "updated_at": dt.datetime(2024, 1, 1),
                }
            ],
        )
    engine.dispose()
    update_source(dbs, source, [2], status="shipped")

    counts = run(cfg, "run-2").counts

    assert (counts.updated, counts.unchanged, counts.conflicted, counts.target_modified) == (1, 4, 0, 0)
    tables, _, _ = _inspect(dbs)
    assert not {"_sync_baselines_v1", "_sync_baselines"} & tables
    assert _count(dbs, f"SELECT count(*) FROM _sync_base_{SYNC}") == 5


@pytest.mark.parametrize("text", ["", "{}", '{"a":"1"}', '[42,"x"]'])
def test_a_previous_hash_converts_to_the_current_one(text: str) -> None:
    assert hash_from_hex(hashlib.sha256(text.encode()).hexdigest()) == text_hash(text)
