"""The benchmark's ERP-like `orders` table: generated at run time in SQLite and PostgreSQL, then changed."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

STATUSES = ("open", "paid", "shipped", "closed", "void")
T0 = dt.datetime(2024, 1, 1)
COLUMNS = ("id", "customer_id", "sku", "qty", "unit_price", "status", "note", "created_at", "updated_at")

PG_DDL = """
CREATE TABLE {schema}.orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    sku varchar(16) NOT NULL,
    qty integer NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    status varchar(16) NOT NULL,
    note varchar(64),
    created_at timestamp NOT NULL,
    updated_at timestamp NOT NULL
)
"""
SQLITE_DDL = """
CREATE TABLE orders (
    id BIGINT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    sku VARCHAR(16) NOT NULL,
    qty INTEGER NOT NULL,
    unit_price NUMERIC(12,2) NOT NULL,
    status VARCHAR(16) NOT NULL,
    note VARCHAR(64),
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
)
"""


def rows(start: int, count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """``count`` orders with ids from ``start``, deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(start, start + count):
        created = T0 + dt.timedelta(seconds=i * 7)
        yield (
            i,
            rng.randrange(1, 50_000),
            f"SKU-{rng.randrange(100_000):06d}",
            rng.randrange(1, 20),
            Decimal(rng.randrange(100, 1_000_000)) / 100,
            rng.choice(STATUSES),
            "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=40)),
            created,
            created + dt.timedelta(seconds=rng.randrange(0, 3600)),
        )


def create_pg(conn: psycopg.Connection[Any], schema: str, size: int) -> None:
    """(Re)create ``schema.orders`` with ``size`` rows, loaded with COPY."""
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(PG_DDL.format(schema=schema))
        with cur.copy(f"COPY {schema}.orders ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows(1, size, seed=size):
                copy.write_row(row)
        cur.execute(f"CREATE INDEX ON {schema}.orders (updated_at, id)")
        cur.execute(f"ANALYZE {schema}.orders")
    conn.commit()


def create_sqlite(path: Path, size: int) -> None:
    """(Re)create a SQLite file holding ``orders`` with ``size`` rows."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(SQLITE_DDL)
        as_text = (
            (*r[:4], str(r[4]), r[5], r[6], r[7].isoformat(" ", "microseconds"), r[8].isoformat(" ", "microseconds"))
            for r in rows(1, size, seed=size)
        )
        db.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * len(COLUMNS))})", as_text)
        db.execute("CREATE INDEX orders_updated ON orders (updated_at, id)")


class Changes:
    """Applies the same changes to a SQLite or PostgreSQL source: updates, inserts and deletes."""

    def __init__(self, backend: str, size: int, *, sqlite_path: Path, pg_dsn: str, schema: str):
        self.backend, self.size = backend, size
        self.sqlite_path, self.pg_dsn, self.schema = sqlite_path, pg_dsn, schema
        self.next_id = size + 1
        self.clock = T0 + dt.timedelta(days=3650)
        self.rng = random.Random(7)

    def _execute(self, sql_pg: str, sql_lite: str, params: list[tuple[Any, ...]]) -> None:
        if self.backend == "postgresql":
            with psycopg.connect(self.pg_dsn) as conn, conn.cursor() as cur:
                cur.executemany(sql_pg.format(schema=self.schema), params)
        else:
            with sqlite3.connect(self.sqlite_path) as db:
                db.executemany(sql_lite, params)

    def _ids(self, share: float) -> list[int]:
        return self.rng.sample(range(1, self.size + 1), max(1, int(self.size * share)))

    def update_and_insert(self, updated: float = 0.01, inserted: float = 0.001) -> int:
        """Touch ``updated`` of the rows and add ``inserted`` new ones; returns the rows changed."""
        self.clock += dt.timedelta(hours=1)
        stamp: Any = self.clock if self.backend == "postgresql" else self.clock.isoformat(" ", "microseconds")
        ids = self._ids(updated)
        self._execute(
            "UPDATE {schema}.orders SET status = 'paid', qty = qty + 1, updated_at = %s WHERE id = %s",
            "UPDATE orders SET status = 'paid', qty = qty + 1, updated_at = ? WHERE id = ?",
            [(stamp, i) for i in ids],
        )
        count = max(1, int(self.size * inserted))
        new = list(rows(self.next_id, count, seed=self.next_id))
        self.next_id += count
        if self.backend != "postgresql":
            new = [(*r[:4], str(r[4]), r[5], r[6], r[7].isoformat(" ", "microseconds"), stamp) for r in new]
        else:
            new = [(*r[:8], stamp) for r in new]
        self._execute(
            "INSERT INTO {schema}.orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            f"INSERT INTO orders VALUES ({', '.join('?' * len(COLUMNS))})",
            new,
        )
        return len(ids) + count

    def delete(self, share: float = 0.01) -> int:
        """Delete ``share`` of the original rows (ids not deleted before)."""
        ids = self._ids(share)
        self._execute(
            "DELETE FROM {schema}.orders WHERE id = %s", "DELETE FROM orders WHERE id = ?", [(i,) for i in ids]
        )
        return len(ids)
