"""The demo's source databases: deterministic, built once, and shaped to exercise the syncs."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from sync_pipelines.config import load_configs
from sync_pipelines.demo.sources import BAD_QTY, ORDER_COUNT, USER_COUNT, build_demo_databases

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_demo_databases(tmp_path_factory.mktemp("demo"))


def query(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_builds_the_source_databases_only(demo: dict[str, Path]) -> None:
    assert sorted(demo) == ["directory", "erp"]
    assert {p.name for p in demo["erp"].parent.iterdir()} == {"erp.db", "directory.db"}


def test_same_rows_every_time(demo: dict[str, Path], tmp_path: Path) -> None:
    again = build_demo_databases(tmp_path / "again")

    for name in demo:
        for table in ("orders",) if name == "erp" else ("departments", "users"):
            sql = f"SELECT * FROM {table} ORDER BY id"
            assert query(again[name], sql) == query(demo[name], sql)


def test_existing_databases_are_left_alone(tmp_path: Path) -> None:
    first = build_demo_databases(tmp_path)
    before = {name: digest(path) for name, path in first.items()}
    with closing(sqlite3.connect(first["erp"])) as connection, connection:
        connection.execute("UPDATE orders SET note = 'edited' WHERE id = 1")
    edited = digest(first["erp"])

    second = build_demo_databases(tmp_path)

    assert second == first
    assert digest(second["erp"]) == edited
    assert digest(second["directory"]) == before["directory"]


def test_orders(demo: dict[str, Path]) -> None:
    erp = demo["erp"]
    assert query(erp, "SELECT count(*) FROM orders") == [(ORDER_COUNT,)]
    statuses = dict(query(erp, "SELECT status, count(*) FROM orders GROUP BY status"))
    assert set(statuses) == {"draft", "placed", "paid", "shipped", "cancelled"}
    assert all(count > 100 for count in statuses.values())
    # Prices keep two decimals; nulls only where expected.
    assert query(erp, "SELECT count(*) FROM orders WHERE round(unit_price, 2) != unit_price") == [(0,)]
    assert query(erp, "SELECT count(*) FROM orders WHERE note IS NOT NULL")[0][0] > 100
    assert query(erp, "SELECT count(*) FROM orders WHERE updated_at < created_at") == [(0,)]
    indexes = query(erp, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders'")
    assert ("ix_orders_updated_at_id",) in indexes
    assert query(erp, "PRAGMA index_info(ix_orders_updated_at_id)") == [(0, 8, "updated_at"), (1, 0, "id")]


def test_orders_with_text_quantities_will_fail_the_cast(demo: dict[str, Path]) -> None:
    rows = query(demo["erp"], "SELECT id, qty, status FROM orders WHERE typeof(qty) != 'integer' ORDER BY id")

    assert rows == [(order_id, qty, "placed") for order_id, qty in sorted(BAD_QTY.items())]


def test_cursor_ties_span_a_batch_boundary(demo: dict[str, Path]) -> None:
    """Rows sharing `updated_at` must straddle a batch edge so the (cursor, key) watermark matters."""
    [orders] = [c for c in load_configs(REPO / "syncs") if c.name == "erp_orders"]
    read = query(demo["erp"], "SELECT updated_at FROM orders WHERE status != 'draft' ORDER BY updated_at, id")
    edges = range(orders.batch_size, len(read), orders.batch_size)

    assert any(read[edge - 1] == read[edge] for edge in edges)
    largest_tie = query(demo["erp"], "SELECT count(*) FROM orders GROUP BY updated_at ORDER BY 1 DESC LIMIT 1")
    assert largest_tie[0][0] >= 20


def test_directory(demo: dict[str, Path]) -> None:
    directory = demo["directory"]
    assert query(directory, "SELECT count(*) FROM users") == [(USER_COUNT,)]
    assert query(directory, "SELECT count(DISTINCT username), count(DISTINCT email) FROM users") == [
        (USER_COUNT, USER_COUNT)
    ]
    assert 25 <= query(directory, "SELECT count(*) FROM departments")[0][0] <= 40
    # One root; every parent and every user's department exists; every manager is a member.
    assert query(directory, "SELECT id FROM departments WHERE parent_id IS NULL") == [(1,)]
    orphans = """
        SELECT count(*) FROM departments d LEFT JOIN departments p ON p.id = d.parent_id
        WHERE d.parent_id IS NOT NULL AND p.id IS NULL
    """
    assert query(directory, orphans) == [(0,)]
    homeless = "SELECT count(*) FROM users u LEFT JOIN departments d ON d.id = u.department_id WHERE d.id IS NULL"
    assert query(directory, homeless) == [(0,)]
    foreign_managers = """
        SELECT count(*) FROM departments d JOIN users u ON u.username = d.manager
        WHERE u.department_id != d.id
    """
    assert query(directory, foreign_managers) == [(0,)]
    inactive = query(directory, "SELECT count(*) FROM users WHERE NOT active")[0][0]
    assert 0 < inactive < USER_COUNT * 0.1


def test_demo_module_does_not_import_dagster() -> None:
    code = "import sys, sync_pipelines.demo.sources; print('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "False"
