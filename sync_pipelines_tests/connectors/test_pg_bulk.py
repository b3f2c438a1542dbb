"""The set-based path on PostgreSQL: its SQL renders values, keys and hashes exactly as the per-record path does."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from psycopg import sql

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.conflict_store import _json
from sync_pipelines.connectors.fingerprint import key_hash, normalise_row, values_hash
from sync_pipelines.connectors.pg_bulk import BulkSpec, _hash64, bulk_spec
from sync_pipelines.connectors.pg_copy import read_csv_batches
from sync_pipelines.connectors.values import display, dumps
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines_tests.support.databases import Databases, make_databases

TYPES = {
    "code": "string",
    "n": "integer",
    "amount": "decimal(12,2)",
    "at": "datetime",
    "day": "date",
    "flag": "boolean",
    "note": "string",
}
ROWS: list[dict[str, Any]] = [
    {
        "code": 'quote " back \\ tab \t nl \n ctl \x01 é 中 \u2028',
        "n": -(2**62),
        "amount": Decimal("-1234567890.05"),
        "at": dt.datetime(2024, 2, 29, 23, 59, 59, 1),
        "day": dt.date(99, 1, 2),
        "flag": True,
        "note": "",
    },
    {
        "code": "plain",
        "n": 0,
        "amount": Decimal("0.00"),
        "at": dt.datetime(1999, 12, 31),
        "day": dt.date(2024, 1, 1),
        "flag": False,
        "note": None,
    },
    {"code": "nulls", "n": None, "amount": None, "at": None, "day": None, "flag": None, "note": "x" * 300},
]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases("postgresql", tmp_path)


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "things",
        metadata,
        sa.Column("code", sa.String(100), primary_key=True),
        sa.Column("n", sa.BigInteger),
        sa.Column("amount", sa.Numeric(14, 2)),
        sa.Column("at", sa.DateTime),
        sa.Column("day", sa.Date),
        sa.Column("flag", sa.Boolean),
        sa.Column("note", sa.Text),
    )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_sql_renders_the_texts_and_hashes_the_per_record_path_computes(pg: Databases) -> None:
    engine = pg.target()
    table = _table(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), ROWS)
    fields = [c for c in TYPES if c != "code"]
    spec = BulkSpec(table, "s", list(TYPES), ["code"], fields, TYPES)
    with engine.connect() as conn:
        query = sql.SQL("SELECT t.code, {}, {}, {}, {} FROM things t ORDER BY t.code").format(
            spec.values_json("t"),
            _hash64(spec.values_json("t")),
            _hash64(spec.key_json("t")),
            spec.record_key_json("t"),
        )
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(query)
            rendered = {row[0]: row[1:] for row in cur.fetchall()}
        stored = {row["code"]: dict(row) for row in conn.execute(sa.select(table)).mappings()}
    assert len(rendered) == len(ROWS)
    for code, (values, values_sha, key_sha, outcome_key) in rendered.items():
        normalised = normalise_row(stored[code], TYPES, fields)
        assert values == _json(normalised)
        assert values_sha == values_hash(normalised)
        assert key_sha == key_hash([code], ["string"])
        assert outcome_key == dumps({"code": display(code)})
    engine.dispose()


def test_only_exact_column_types_and_tables_without_triggers_qualify(pg: Databases) -> None:
    engine = pg.target()
    metadata = sa.MetaData()
    table = _table(metadata)
    sa.Table(
        "lossy", metadata, sa.Column("code", sa.String(10), primary_key=True), sa.Column("amount", sa.Numeric(12, 1))
    )
    with engine.begin() as conn:
        metadata.create_all(conn)
    with engine.begin() as conn:
        reflected = sa.Table("things", sa.MetaData(), autoload_with=conn)
        assert bulk_spec(conn, reflected, "s", TYPES, list(TYPES), ["code"]) is not None
        lossy_reflected = sa.Table("lossy", sa.MetaData(), autoload_with=conn)
        types = {"code": "string", "amount": "decimal(12,2)"}
        assert bulk_spec(conn, lossy_reflected, "s", types, list(types), ["code"]) is None
        assert bulk_spec(conn, reflected, "s", {**TYPES, "n": "float"}, list(TYPES), ["code"]) is None
        conn.exec_driver_sql("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
        conn.exec_driver_sql("CREATE TRIGGER touching BEFORE INSERT ON things FOR EACH ROW EXECUTE FUNCTION touch()")
        assert bulk_spec(conn, reflected, "s", TYPES, list(TYPES), ["code"]) is None
    assert table.name == "things"
    engine.dispose()


def test_csv_reads_give_the_values_row_reads_give(pg: Databases) -> None:
    engine = pg.source()
    table = _table(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), ROWS)
    import pyarrow as pa

    types = {
        "code": pa.string(),
        "n": pa.int64(),
        "amount": pa.decimal128(14, 2),
        "at": pa.timestamp("us"),
        "day": pa.date32(),
        "flag": pa.bool_(),
        "note": pa.string(),
    }
    with engine.connect() as conn:
        query = sa.select(table).where(table.c.code.in_(["plain", "nulls", ROWS[0]["code"]])).order_by(table.c.code)
        batches = list(read_csv_batches(conn, query, types, batch_size=2))
        expected = [dict(r) for r in conn.execute(query).mappings()]
    assert [b.num_rows for b in batches] == [2, 1]
    assert [row for b in batches for row in b.to_pylist()] == expected
    engine.dispose()


@pytest.mark.slow
def test_a_sync_through_the_set_based_path_keeps_baselines_the_per_record_path_reads(pg: Databases) -> None:
    source = pg.source()
    table = _table(sa.MetaData())
    with source.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), ROWS)
    cfg = SyncConfig.model_validate(
        {
            "name": "things_sync",
            "source": {"kind": "sql", "url": pg.source_url, "table": "things"},
            "target": {"kind": "sql", "url": pg.target_url, "table": "things", "key": ["code"]},
            "mapping": {name: {"type": kind} for name, kind in TYPES.items()},
            "mode": "full",
            "batch_size": 2,
        }
    )
    first = run_sync(cfg, RunOptions(run_id="r1", full_sync=True))
    assert first.counts.created == 3
    target = pg.target()
    with target.connect() as conn:
        by_hash = {r["key_hash"]: r for r in conn.execute(sa.text("SELECT * FROM _sync_baselines")).mappings()}
        baselines = {r["code"]: by_hash[key_hash([r["code"]], ["string"])] for r in ROWS}
        assert len(by_hash) == len(ROWS)
        records = conn.execute(sa.text("SELECT record_key, action FROM _sync_records ORDER BY id")).all()
    fields = [c for c in TYPES if c != "code"]
    for row in ROWS:
        baseline = baselines[row["code"]]
        normalised = normalise_row(row, TYPES, fields)
        assert baseline["key_hash"] == key_hash([row["code"]], ["string"])
        assert baseline["source_hash"] == baseline["target_hash"] == values_hash(normalised)
        assert json.loads(baseline["target_values"]) == normalised
    assert sorted(json.loads(k)["code"] for k, _ in records) == sorted(r["code"] for r in ROWS)
    assert {a for _, a in records} == {"created"}
    # Unchanged, then one source change and one target edit: judged record by record, with their changes.
    assert run_sync(cfg, RunOptions(run_id="r2", full_sync=True)).counts.unchanged == 3
    # Rows equal on both sides but without baselines (written before baselines existed) get theirs back.
    with target.begin() as conn:
        conn.execute(sa.text("DELETE FROM _sync_baselines"))
    assert run_sync(cfg, RunOptions(run_id="r2b", full_sync=True)).counts.unchanged == 3
    with target.connect() as conn:
        restored = conn.execute(sa.text("SELECT key_hash, source_hash FROM _sync_baselines")).all()
    assert sorted(restored) == sorted(
        (key_hash([r["code"]], ["string"]), baselines[r["code"]]["source_hash"]) for r in ROWS
    )
    with source.begin() as conn:
        conn.execute(table.update().where(table.c.code == "plain").values(n=5))
    with target.begin() as conn:
        conn.execute(sa.text("UPDATE things SET note = 'edited' WHERE code = 'nulls'"))
    third = run_sync(cfg, RunOptions(run_id="r3", full_sync=True))
    assert (third.counts.updated, third.counts.target_modified, third.counts.unchanged) == (1, 1, 1)
    changes = {s.key["code"]: (s.action.value, s.changes) for s in third.samples}
    assert changes["plain"] == ("updated", {"n": [0, 5]})
    assert changes["nulls"][0] == "target_modified"
    with target.connect() as conn:
        written = conn.execute(sa.text("SELECT n FROM things WHERE code = 'plain'")).scalar_one()
        recorded = conn.execute(
            sa.text("SELECT changes FROM _sync_records WHERE run_id = 'r3' AND action = 'updated'")
        ).scalar_one()
    assert (written, json.loads(recorded)) == (5, {"n": [0, 5]})
    # The update's baseline follows both sides: the next run finds the record unchanged.
    fourth = run_sync(cfg, RunOptions(run_id="r4", full_sync=True))
    assert (fourth.counts.updated, fourth.counts.target_modified, fourth.counts.unchanged) == (0, 1, 2)
    source.dispose()
    target.dispose()


@pytest.mark.slow
def test_a_composite_key_is_hashed_and_recorded_like_the_per_record_path_does(pg: Databases) -> None:
    source = pg.source()
    metadata = sa.MetaData()
    lines = sa.Table(
        "lines",
        metadata,
        sa.Column("region", sa.String(10), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("qty", sa.Integer),
    )
    with source.begin() as conn:
        metadata.create_all(conn)
        conn.execute(sa.insert(lines), [{"region": r, "line_no": n, "qty": n} for r in ("eu", "us") for n in (1, 2)])
    cfg = SyncConfig.model_validate(
        {
            "name": "lines_sync",
            "source": {"kind": "sql", "url": pg.source_url, "table": "lines"},
            # Key order differs from name order: outcomes keep the key order, baselines sort the names.
            "target": {"kind": "sql", "url": pg.target_url, "table": "lines", "key": ["region", "line_no"]},
            "mapping": {"region": {"type": "string"}, "line_no": {"type": "integer"}, "qty": {"type": "integer"}},
            "mode": "full",
        }
    )
    assert run_sync(cfg, RunOptions(run_id="r1", full_sync=True)).counts.created == 4
    with source.begin() as conn:
        conn.execute(lines.update().where(lines.c.region == "us", lines.c.line_no == 2).values(qty=20))
    second = run_sync(cfg, RunOptions(run_id="r2", full_sync=True))
    assert (second.counts.updated, second.counts.unchanged) == (1, 3)
    target = pg.target()
    with target.connect() as conn:
        baselines = conn.execute(sa.text("SELECT key_hash FROM _sync_baselines")).all()
        records = conn.execute(sa.text("SELECT record_key, action FROM _sync_records ORDER BY id")).all()
    assert sorted(h for (h,) in baselines) == sorted(
        key_hash([r, n], ["string", "integer"]) for r in ("eu", "us") for n in (1, 2)
    )
    assert records[0] == (dumps({"region": "eu", "line_no": 1}), "created")
    assert records[-1] == (dumps({"region": "us", "line_no": 2}), "updated")
    source.dispose()
    target.dispose()
