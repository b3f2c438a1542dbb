"""The COPY helpers used on PostgreSQL targets, against the real server: same results as row-by-row writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.connectors import pg_copy
from sync_pipelines.connectors.dialects import backend
from sync_pipelines_tests.support.databases import Databases, make_databases


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases("postgresql", tmp_path)


def _orders(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("note", sa.Text),
        sa.Column("at", sa.DateTime),
    )


def test_copy_upsert_inserts_updates_and_keeps_the_last_of_repeated_keys(pg: Databases) -> None:
    engine = pg.target()
    table = _orders(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), [{"id": 1, "price": Decimal("1.00"), "note": "old", "at": None}])
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with engine.begin() as conn:
        assert backend(conn).can_copy(conn)
        conn.exec_driver_sql("SET TIME ZONE 'UTC'")
        pg_copy.copy_upsert(
            conn,
            table,
            ["id"],
            [
                {"id": 1, "price": Decimal("2.50"), "note": "tab\tand\nnewline", "at": aware},
                {"id": 2, "price": None, "note": "first", "at": dt.datetime(2024, 1, 1)},
                {"id": 2, "price": Decimal("3"), "note": "second", "at": dt.datetime(2024, 1, 2)},
            ],
        )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
    assert [tuple(r) for r in rows] == [
        (1, Decimal("2.50"), "tab\tand\nnewline", dt.datetime(2024, 5, 1, 10, 0)),
        (2, Decimal("3.00"), "second", dt.datetime(2024, 1, 2)),
    ]


def test_copy_rows_commits_and_rolls_back_with_the_transaction(pg: Databases) -> None:
    engine = pg.target()
    table = _orders(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        pg_copy.copy_rows(conn, table, [{"id": 1, "price": None, "note": "x", "at": None}])
        raise RuntimeError("the batch failed after the copy")
    with engine.begin() as conn:
        pg_copy.copy_rows(conn, table, [{"id": 2, "price": None, "note": "y", "at": None}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(table.c.id)).scalars().all() == [2]


def test_driver_errors_surface_as_sqlalchemy_errors(pg: Databases) -> None:
    engine = pg.target()
    table = _orders(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        pg_copy.copy_rows(conn, table, [{"id": 1, "note": "a"}, {"id": 1, "note": "b"}])
    with pytest.raises(sa.exc.DataError), engine.begin() as conn:
        pg_copy.copy_upsert(conn, table, ["id"], [{"id": 3, "price": "not a number"}])
