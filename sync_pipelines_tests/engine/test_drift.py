"""Schema drift at run start: a lost mapped column, or a type the mapping cannot cast, fails before any write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.compat import (
    TypeFamily,
    can_cast,
    can_store,
    family_of_arrow,
    family_of_declared,
    type_mismatches,
)
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import PermanentConnectorError, SchemaDriftError
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import SourceTable, make_source
from sync_pipelines_tests.support.databases import Databases

DRIFT_ORDERS = SourceTable("orders", {"name": sa.String(50), "qty": sa.Integer})


def config(dbs: Databases) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "orders_sync",
            "source": {"kind": "sql", "url": dbs.source_url, "table": "orders"},
            "target": {"kind": "sql", "url": dbs.target_url, "table": "orders", "key": ["id"]},
            "mapping": {"id": {"type": "integer"}, "name": {"type": "string"}, "qty": {"type": "integer"}},
        }
    )


def target_state(dbs: Databases) -> tuple[list[Any], list[Any]]:
    engine = dbs.target()
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text("SELECT id, name, qty FROM orders ORDER BY id"))]
        state = [tuple(r) for r in conn.execute(sa.text("SELECT sync, version, last_run_id FROM _sync_state"))]
    engine.dispose()
    return rows, state


def alter_source(dbs: Databases, *statements: str) -> None:
    engine = dbs.source()
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def staged_files(tmp_path: Path, run_id: str) -> list[Path]:
    folder = tmp_path / "staging" / run_id
    return sorted(p for p in folder.rglob("*.arrow")) if folder.exists() else []


@pytest.mark.slow
def test_lost_column_and_changed_type_fail_before_writing(dbs: Databases, tmp_path: Path) -> None:
    make_source(dbs, [{"id": i, "name": f"n{i}", "qty": i} for i in range(1, 6)], DRIFT_ORDERS)
    cfg = config(dbs)
    first = run_sync(cfg, RunOptions(run_id="run-1"))
    assert first.status is RunStatus.COMPLETED and first.counts.created == 5
    before = target_state(dbs)

    # The source loses a mapped column.
    alter_source(dbs, "ALTER TABLE orders DROP COLUMN qty")
    with pytest.raises(PermanentConnectorError, match=r"source has no column\(s\) qty \(sync orders_sync\)"):
        run_sync(cfg, RunOptions(run_id="run-2"))
    assert target_state(dbs) == before
    assert staged_files(tmp_path, "run-2") == []

    # The column comes back with a type no value of which can become an integer.
    blob = {"postgresql": "BYTEA", "mariadb": "BLOB", "sqlite": "BLOB"}[dbs.backend]
    alter_source(dbs, f"ALTER TABLE orders ADD COLUMN qty {blob}")
    with pytest.raises(SchemaDriftError) as caught:
        run_sync(cfg, RunOptions(run_id="run-3"))
    assert "schema drift in sync orders_sync: source column 'qty' is binary, which cannot be cast to integer " in str(
        caught.value
    )
    assert "(mapping.qty.type)" in str(caught.value)
    assert target_state(dbs) == before
    assert staged_files(tmp_path, "run-3") == []


def test_castable_type_changes_are_not_drift(sqlite_dbs: Databases) -> None:
    """Text can become a number value by value (bad values fail alone), so it is not drift."""
    make_source(sqlite_dbs, [{"id": i, "name": f"n{i}", "qty": i} for i in range(1, 6)], DRIFT_ORDERS)
    cfg = config(sqlite_dbs)
    types = {"id": pa.int64(), "name": pa.string(), "qty": pa.string()}
    assert type_mismatches(cfg, types) == []
    types["qty"] = pa.timestamp("us")
    assert [str(m) for m in type_mismatches(cfg, types)] == [
        "source column 'qty' is datetime, which cannot be cast to integer (mapping.qty.type)"
    ]


@pytest.mark.parametrize(
    ("source", "declared", "ok"),
    [
        (pa.string(), "date", True),
        (pa.int64(), "decimal(12,2)", True),
        (pa.int64(), "boolean", True),
        (pa.float64(), "integer", True),
        (pa.date32(), "datetime", True),
        (pa.timestamp("us", tz="UTC"), "date", True),
        (pa.bool_(), "integer", True),
        (pa.binary(), "string", True),
        (pa.int64(), "date", False),
        (pa.date32(), "integer", False),
        (pa.timestamp("us"), "float", False),
        (pa.bool_(), "datetime", False),
        (pa.decimal128(10, 2), "boolean", False),
        (pa.binary(), "integer", False),
    ],
)
def test_cast_table(source: pa.DataType, declared: str, ok: bool) -> None:
    assert can_cast(family_of_arrow(source), family_of_declared(declared)) is ok


def test_store_table() -> None:
    assert can_store(TypeFamily.INTEGER, TypeFamily.DECIMAL)
    assert can_store(TypeFamily.DATE, TypeFamily.DATETIME)
    assert can_store(TypeFamily.DATETIME, TypeFamily.STRING)
    assert not can_store(TypeFamily.STRING, TypeFamily.INTEGER)
    assert not can_store(TypeFamily.DATETIME, TypeFamily.INTEGER)
