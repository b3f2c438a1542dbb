"""Each dialect backend on its real server: capabilities, upsert, key lists, error classification, names."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from sync_pipelines.connectors.dialects import (
    MySqlBackend,
    PostgresBackend,
    SqliteBackend,
    backend,
    backend_of_error,
)
from sync_pipelines.connectors.sql import classify, create_sql_engine
from sync_pipelines.errors import PermanentConnectorError, TransientConnectorError
from sync_pipelines_tests.support.databases import Databases

EXPECTED = {"postgresql": PostgresBackend, "mariadb": MySqlBackend, "sqlite": SqliteBackend}


def _items(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50)),
        sa.Column("qty", sa.Integer),
    )


def test_the_backend_is_told_by_the_connection_not_by_the_caller(dbs: Databases) -> None:
    engine = dbs.target()
    try:
        db = backend(engine)
        assert isinstance(db, EXPECTED[dbs.backend])
        with engine.connect() as conn:
            assert backend(conn) is db
            # COPY is declared by PostgreSQL alone, and used only through psycopg 3.
            assert db.can_copy(conn) is (dbs.backend == "postgresql")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_upsert_inserts_new_keys_and_updates_existing_ones(dbs: Databases) -> None:
    engine = dbs.target()
    table = _items(sa.MetaData())
    db = backend(engine)
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(sa.insert(table), [{"id": 1, "name": "old", "qty": 1}, {"id": 2, "name": "kept", "qty": 2}])
            stmt = db.upsert_statement(table, ["id"], ["name", "qty"])
            conn.execute(stmt, [{"id": 1, "name": "new", "qty": 10}, {"id": 3, "name": "added", "qty": 3}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
        assert [tuple(r) for r in rows] == [(1, "new", 10), (2, "kept", 2), (3, "added", 3)]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_key_lists_longer_than_one_query_takes_are_found(dbs: Databases) -> None:
    engine = dbs.target()
    table = _items(sa.MetaData())
    db = backend(engine)
    wanted = [5, db.keys_per_query - 1, db.keys_per_query + 7, 10**6]
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(sa.insert(table), [{"id": i, "name": str(i), "qty": i} for i in range(1, 2 * 500 + 20)])
            found = conn.execute(sa.select(table.c.id).where(db.key_in(table.c.id, wanted))).scalars()
            assert sorted(found) == sorted(k for k in wanted if k < 2 * 500 + 20)
    finally:
        engine.dispose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
        "mysql+pymysql://root@127.0.0.1:{port}/test",
    ],
)
def test_an_unreachable_server_is_a_transient_error(url: str) -> None:
    engine, endpoint = create_sql_engine(url.format(port=_closed_port()), where="test")
    try:
        with pytest.raises(sa_exc.OperationalError) as caught, engine.connect():
            pass
        error = classify(caught.value, endpoint, "connecting")
        assert isinstance(error, TransientConnectorError), error
        assert backend_of_error(caught.value.orig) is backend(engine)
    finally:
        engine.dispose()


def test_a_missing_table_is_a_permanent_error(dbs: Databases) -> None:
    engine = dbs.target()
    try:
        with pytest.raises(sa_exc.DBAPIError) as caught, engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        error = classify(caught.value, dbs.backend, "reading")
        assert isinstance(error, PermanentConnectorError)
        assert not isinstance(error, TransientConnectorError)
        assert "reading failed" in str(error)
    finally:
        engine.dispose()


def test_a_locked_sqlite_database_is_a_transient_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with pytest.raises(sa_exc.OperationalError) as caught, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert isinstance(classify(caught.value, "sqlite", "writing"), TransientConnectorError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_a_mariadb_deadlock_is_a_transient_error(tmp_path: Path) -> None:
    """Two sessions lock two rows in opposite orders; the server kills one with ER_LOCK_DEADLOCK (1213)."""
    import threading

    from sync_pipelines_tests.support.databases import make_databases

    gen = make_databases("mariadb", tmp_path)
    dbs = next(gen)
    engine = dbs.target()
    table = _items(sa.MetaData())
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(sa.insert(table), [{"id": 1, "qty": 0}, {"id": 2, "qty": 0}])
        first, second = engine.connect(), engine.connect()
        errors: list[BaseException] = []
        first.begin()
        second.begin()
        first.execute(sa.update(table).where(table.c.id == 1).values(qty=1))
        second.execute(sa.update(table).where(table.c.id == 2).values(qty=1))

        def cross(conn: sa.Connection, key: int) -> None:
            try:
                conn.execute(sa.update(table).where(table.c.id == key).values(qty=2))
            except sa_exc.DBAPIError as exc:
                errors.append(exc)
                conn.rollback()

        threads = [threading.Thread(target=cross, args=(first, 2)), threading.Thread(target=cross, args=(second, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for conn in (first, second):
            if conn.in_transaction():
                conn.rollback()
            conn.close()
        assert len(errors) == 1
        assert isinstance(classify(errors[0], "mariadb", "writing"), TransientConnectorError)
    finally:
        engine.dispose()
        for _ in gen:
            pass


@pytest.mark.parametrize(
    ("db", "name", "problem"),
    [
        (MySqlBackend(), "odd`name", "backtick"),
        (MySqlBackend(), "x" * 65, "limit of 64"),
        (PostgresBackend(), "x" * 64, "limit of 63"),
        (SqliteBackend(), "odd`name", None),
        (PostgresBackend(), "orders; DROP TABLE x", None),
    ],
)
def test_identifier_rules_are_declared_per_backend(db: object, name: str, problem: str | None) -> None:
    assert hasattr(db, "identifier_problem")
    found = db.identifier_problem(name)  # type: ignore[attr-defined]
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_sqlite_stores_decimals_of_up_to_15_digits_exactly_and_longer_ones_not(tmp_path: Path) -> None:
    """NUMERIC affinity keeps a decimal as a REAL (or an INTEGER): 15 significant digits survive, more may not."""
    sqlite = backend("sqlite")
    assert sqlite.stores_exactly("decimal(15,2)", sa.Numeric(15, 2))
    assert not sqlite.stores_exactly("decimal(16,2)", sa.Numeric(16, 2))
    assert not sqlite.stores_exactly("decimal(12,2)", sa.Numeric(12, 3))  # another scale reads back otherwise
    with sqlite3.connect(tmp_path / "d.db") as db:
        db.execute("CREATE TABLE t (v NUMERIC(16, 2))")
        db.executemany("INSERT INTO t VALUES (?)", [("9999999999999.99",), ("99999999999999.99",)])
        stored = [v for (v,) in db.execute("SELECT v FROM t ORDER BY rowid")]
    assert repr(stored[0]) == "9999999999999.99"  # 15 digits: the same number back
    assert repr(stored[1]) != "99999999999999.99"  # 16 digits: the REAL lost one
