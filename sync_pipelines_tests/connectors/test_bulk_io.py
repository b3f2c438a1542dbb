"""The backends' bulk reads and writes of Arrow batches, on the real SQLite, PostgreSQL and MariaDB servers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pymysql
import pytest
import sqlalchemy as sa

from sync_pipelines.connectors.column_types import LONG_TEXT, timestamp_type
from sync_pipelines.connectors.dialects import backend
from sync_pipelines.connectors.sql import create_sql_engine
from sync_pipelines_tests.support.databases import Databases, make_databases

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("ratio", pa.float64()),
        ("active", pa.bool_()),
        ("born", pa.date32()),
        ("seen_at", pa.timestamp("us")),
    ]
)
ODD_TEXT = "tab\there\nnew line\\back slash \"quoted\" 'single' \r end, comma ; é 漢字 😀"


def _engine(dbs: Databases) -> sa.Engine:
    engine, _ = create_sql_engine(dbs.target_url, where="test", bulk_load=True)  # as a target's engine
    return engine


@pytest.fixture
def engine(dbs: Databases) -> Iterator[sa.Engine]:
    engine = _engine(dbs)
    yield engine
    engine.dispose()


def _items(name: str = "items", schema: str | None = None) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(schema=schema),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", LONG_TEXT),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("ratio", sa.Double),
        sa.Column("active", sa.Boolean),
        sa.Column("born", sa.Date),
        sa.Column("seen_at", timestamp_type()),
    )


def _rows(ids: list[int], *, name: str = "n") -> pa.Table:
    count = len(ids)
    return pa.table(
        {
            "id": ids,
            "name": [f"{name}{i}" for i in ids],
            "price": [Decimal(i) / 100 for i in ids],
            "ratio": [i / 4 for i in ids],
            "active": [i % 2 == 0 for i in ids],
            "born": [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in ids],
            "seen_at": [dt.datetime(2024, 5, 1, 12, 30, 15, 123456) + dt.timedelta(seconds=i) for i in ids],
        },
        schema=SCHEMA,
    ).slice(0, count)


def _odd_rows() -> pa.Table:
    return pa.table(
        {
            "id": [1, 2, 3, 4],
            "name": [ODD_TEXT, "", None, "NULL"],
            "price": [Decimal("-1234567890.12"), Decimal("0.00"), None, Decimal("0.10")],
            "ratio": [0.1, -2.5e-10, None, 1e20],
            "active": [True, False, None, True],
            "born": [dt.date(1999, 12, 31), dt.date(2024, 2, 29), None, dt.date(1, 1, 1)],
            "seen_at": [
                dt.datetime(2024, 1, 2, 3, 4, 5, 6),
                dt.datetime(2024, 12, 31, 23, 59, 59, 999999),
                None,
                dt.datetime(2000, 1, 1),
            ],
        },
        schema=SCHEMA,
    )


def _create(engine: sa.Engine, table: sa.Table) -> None:
    with engine.begin() as conn:
        table.create(conn)


def _read_all(engine: sa.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


def _sorted(rows: pa.Table, key: str = "id") -> pa.Table:
    return rows.sort_by(key)


def _keys(ids: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64())})


def test_insert_writes_every_value_as_sqlalchemy_writes_it(engine: sa.Engine) -> None:
    table = _items()
    twin = _items("twin")
    _create(engine, table)
    _create(engine, twin)
    rows = _odd_rows()
    with engine.begin() as conn:
        backend(conn).insert_arrow(conn, table, rows)
        conn.execute(sa.insert(twin), rows.to_pylist())
    written = _read_all(engine, table)
    assert written == _read_all(engine, twin)
    assert written[0][1] == ODD_TEXT
    assert [r[1] for r in written] == [ODD_TEXT, "", None, "NULL"]
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT * FROM items ORDER BY id").all()
        twin_raw = conn.exec_driver_sql("SELECT * FROM twin ORDER BY id").all()
    assert raw == twin_raw  # the stored forms too (SQLite keeps dates and decimals as SQLAlchemy writes them)


def test_round_trip_returns_the_input_with_every_declared_type(engine: sa.Engine) -> None:
    table = _items()
    _create(engine, table)
    rows = _odd_rows()
    with engine.begin() as conn:
        db = backend(conn)
        db.insert_arrow(conn, table, rows)
        back = db.read_arrow(conn, table, SCHEMA.names, _keys([1, 2, 3, 4, 99]), SCHEMA)
    assert back.schema == SCHEMA
    assert _sorted(back).equals(rows)


def test_read_returns_only_the_asked_keys_and_columns(engine: sa.Engine) -> None:
    table = _items()
    _create(engine, table)
    with engine.begin() as conn:
        db = backend(conn)
        db.insert_arrow(conn, table, _rows(list(range(1, 1201))))
        back = db.read_arrow(conn, table, ["name", "id"], _keys([5, 700, 1200, 5000]), SCHEMA)
        none = db.read_arrow(conn, table, ["id", "price"], _keys([]), SCHEMA)
    assert back.column_names == ["name", "id"]
    assert sorted(back.to_pylist(), key=lambda r: r["id"]) == [
        {"name": "n5", "id": 5},
        {"name": "n700", "id": 700},
        {"name": "n1200", "id": 1200},
    ]
    assert none.num_rows == 0
    assert none.column_names == ["id", "price"]


def test_upsert_inserts_new_keys_and_updates_existing_ones(engine: sa.Engine) -> None:
    table = _items()
    _create(engine, table)
    with engine.begin() as conn:
        backend(conn).insert_arrow(conn, table, _rows([1, 2, 3]))
    changed = _rows([2, 3, 4], name="new").drop_columns(["ratio"])
    with engine.begin() as conn:
        backend(conn).upsert_arrow(conn, table, changed, ["id"])
    written = _read_all(engine, table)
    assert [(r[0], r[1], r[3]) for r in written] == [
        (1, "n1", 0.25),
        (2, "new2", 0.5),
        (3, "new3", 0.75),
        (4, "new4", None),
    ]
    assert written[3][2] == Decimal("0.04")


def test_upsert_of_key_only_rows_inserts_the_missing_keys(engine: sa.Engine) -> None:
    table = sa.Table("tags", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False))
    _create(engine, table)
    with engine.begin() as conn:
        db = backend(conn)
        db.upsert_arrow(conn, table, _keys([1, 2]), ["id"])
        db.upsert_arrow(conn, table, _keys([2, 3]), ["id"])
    assert _read_all(engine, table) == [(1,), (2,), (3,)]


def test_upsert_with_a_composite_key_leaves_other_rows_alone(engine: sa.Engine) -> None:
    table = sa.Table(
        "stock",
        sa.MetaData(),
        sa.Column("site", sa.String(20), primary_key=True),
        sa.Column("sku", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("qty", sa.Integer),
    )
    _create(engine, table)
    first = pa.table({"site": ["a", "a", "b"], "sku": [1, 2, 1], "qty": [10, 20, 30]})
    second = pa.table({"site": ["a", "b"], "sku": [2, 2], "qty": [21, 40]})
    with engine.begin() as conn:
        backend(conn).insert_arrow(conn, table, first)
        backend(conn).upsert_arrow(conn, table, second, ["site", "sku"])
    assert _read_all(engine, table) == [("a", 1, 10), ("a", 2, 21), ("b", 1, 30), ("b", 2, 40)]


def test_delete_by_single_and_composite_keys_counts_the_deleted_rows(engine: sa.Engine) -> None:
    items = _items()
    stock = sa.Table(
        "stock",
        sa.MetaData(),
        sa.Column("site", sa.String(20), primary_key=True),
        sa.Column("sku", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    _create(engine, items)
    _create(engine, stock)
    with engine.begin() as conn:
        db = backend(conn)
        db.insert_arrow(conn, items, _rows(list(range(1, 1101))))
        db.insert_arrow(conn, stock, pa.table({"site": ["a", "a", "b"], "sku": [1, 2, 1]}))
        assert db.delete_arrow(conn, items, _keys([*range(2, 1001), 5000])) == 999
        assert db.delete_arrow(conn, items, _keys([])) == 0
        assert db.delete_arrow(conn, stock, pa.table({"site": ["a", "b", "c"], "sku": [2, 1, 1]})) == 2
    assert [r[0] for r in _read_all(engine, items)] == [1, *range(1001, 1101)]
    assert _read_all(engine, stock) == [("a", 1)]


def test_writes_roll_back_with_the_transaction(engine: sa.Engine) -> None:
    table = _items()
    _create(engine, table)
    with engine.begin() as conn:
        backend(conn).insert_arrow(conn, table, _rows([1, 2]))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        db = backend(conn)
        db.insert_arrow(conn, table, _rows([3]))
        db.upsert_arrow(conn, table, _rows([1, 4], name="x"), ["id"])
        assert db.delete_arrow(conn, table, _keys([2])) == 1
        assert db.read_arrow(conn, table, ["id"], _keys([1, 2, 3, 4]), SCHEMA).num_rows == 3
        raise RuntimeError("the batch failed")
    assert [(r[0], r[1]) for r in _read_all(engine, table)] == [(1, "n1"), (2, "n2")]


def test_insert_of_an_existing_key_fails(engine: sa.Engine) -> None:
    table = _items()
    _create(engine, table)
    with engine.begin() as conn:
        backend(conn).insert_arrow(conn, table, _rows([1]))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        backend(conn).insert_arrow(conn, table, _rows([2, 1]))
    assert [r[0] for r in _read_all(engine, table)] == [1]


def test_identifiers_that_need_quoting(engine: sa.Engine) -> None:
    table = sa.Table(
        'odd "name" é%',
        sa.MetaData(),
        sa.Column("key col", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("it's 'x'", sa.String(50)),
        sa.Column("größe %s", sa.Integer),
    )
    _create(engine, table)
    schema = pa.schema([("key col", pa.int64()), ("it's 'x'", pa.string()), ("größe %s", pa.int64())])
    rows = pa.table({"key col": [1, 2], "it's 'x'": ["a", "b"], "größe %s": [5, 6]}, schema=schema)
    with engine.begin() as conn:
        db = backend(conn)
        db.insert_arrow(conn, table, rows)
        db.upsert_arrow(conn, table, rows.slice(1).set_column(2, "größe %s", pa.array([7])), ["key col"])
        assert db.delete_arrow(conn, table, pa.table({"key col": [1]})) == 1
        back = db.read_arrow(conn, table, schema.names, pa.table({"key col": [1, 2]}), schema)
    assert back.to_pylist() == [{"key col": 2, "it's 'x'": "b", "größe %s": 7}]


def test_read_falls_back_to_text_where_a_value_does_not_convert_exactly(engine: sa.Engine) -> None:
    table = sa.Table(
        "loose",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("amount", sa.Numeric(12, 3)),
        sa.Column("exact", sa.Numeric(12, 3)),
        sa.Column("real", sa.Double),
        sa.Column("flag", sa.SmallInteger),
        sa.Column("code", sa.String(16)),  # declared an integer, holding text a CSV line must quote
    )
    _create(engine, table)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(table),
            [
                {
                    "id": 1,
                    "amount": Decimal("1.234"),
                    "exact": Decimal("1.230"),
                    "real": 1.5,
                    "flag": 1,
                    "code": '7,"x"\n',
                },
                {"id": 2, "amount": None, "exact": None, "real": None, "flag": 2, "code": ""},
            ],
        )
    wanted = pa.schema(
        [
            ("id", pa.int64()),
            ("amount", pa.decimal128(12, 2)),
            ("exact", pa.decimal128(12, 2)),
            ("real", pa.decimal128(12, 2)),
            ("flag", pa.bool_()),
            ("code", pa.int64()),
        ]
    )
    with engine.begin() as conn:
        back = _sorted(backend(conn).read_arrow(conn, table, wanted.names, _keys([1, 2]), wanted))
    assert back.column("id").type == pa.int64()
    assert back.column("amount").type == pa.string()
    assert back.column("amount").to_pylist() == ["1.234", None]
    assert back.column("exact").type == pa.decimal128(12, 2)
    assert back.column("exact").to_pylist() == [Decimal("1.23"), None]
    assert back.column("real").type == pa.string()
    assert back.column("real").to_pylist() == ["1.5", None]
    assert back.column("flag").type == pa.string()
    assert back.column("flag").to_pylist() == ["1", "2"]
    assert back.column("code").to_pylist() == ['7,"x"\n', ""]


def test_sqlite_text_in_an_integer_column_reads_as_text(sqlite_dbs: Databases) -> None:
    engine = _engine(sqlite_dbs)
    table = _items()
    _create(engine, table)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO items (id, name, price, born, seen_at) VALUES "
            "(1, 'a', 1.5, '2024-01-02', '2024-01-02 03:04:05.000007'), (2, 'b', 'abc', 'soon', 'later')"
        )
        back = _sorted(backend(conn).read_arrow(conn, table, SCHEMA.names, _keys([1, 2]), SCHEMA))
        good = backend(conn).read_arrow(conn, table, SCHEMA.names, _keys([1]), SCHEMA)
        conn.exec_driver_sql("INSERT INTO items (id, ratio) VALUES ('abc', 1.0)")
        ids = backend(conn).read_arrow(conn, table, ["id"], pa.table({"id": ["abc"]}), SCHEMA)
    assert back.column("price").to_pylist() == ["1.5", "abc"]
    assert back.column("born").to_pylist() == ["2024-01-02", "soon"]
    assert back.column("seen_at").to_pylist() == ["2024-01-02 03:04:05.000007", "later"]
    assert good.column("price").to_pylist() == [Decimal("1.50")]
    assert good.column("seen_at").to_pylist() == [dt.datetime(2024, 1, 2, 3, 4, 5, 7)]
    assert ids.column("id").type == pa.string()
    assert ids.column("id").to_pylist() == ["abc"]
    engine.dispose()


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    gen = make_databases("postgresql", tmp_path)
    engine = _engine(next(gen))
    yield engine
    engine.dispose()
    for _ in gen:
        pass


def test_postgresql_table_in_a_schema_and_time_zones(pg_engine: sa.Engine) -> None:
    schema = 'sales "eu"'
    table = _items("orders", schema=schema)
    aware = sa.Table(
        "events",
        sa.MetaData(schema=schema),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True)),
    )
    with pg_engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
        table.create(conn)
        aware.create(conn)
        # A permanent table named like the staging table must not be touched.
        conn.exec_driver_sql("CREATE TABLE public._sync_arrow_stage (id bigint)")
    rows = _odd_rows()
    at = dt.datetime(2024, 6, 1, 8, 0, 0, 5)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("SET TIME ZONE 'Asia/Tokyo'")
        db = backend(conn)
        db.insert_arrow(conn, table, rows.slice(0, 2))
        db.upsert_arrow(conn, table, rows.slice(1), ["id"])
        db.upsert_arrow(conn, aware, pa.table({"id": [1], "at": pa.array([at], pa.timestamp("us"))}), ["id"])
        back = db.read_arrow(conn, table, SCHEMA.names, _keys([1, 2, 3, 4]), SCHEMA)
        events = db.read_arrow(
            conn, aware, ["id", "at"], _keys([1]), pa.schema([("id", pa.int64()), ("at", pa.timestamp("us"))])
        )
        stored = conn.exec_driver_sql(
            f'SELECT "at" AT TIME ZONE \'UTC\' FROM "{schema.replace(chr(34), chr(34) * 2)}".events'
        ).scalar()
        assert db.delete_arrow(conn, table, _keys([1, 3])) == 2
    assert _sorted(back).equals(rows)
    assert stored == at
    assert events.column("at").to_pylist() == [at]
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM public._sync_arrow_stage").scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 2


def test_only_a_targets_mariadb_connection_sends_a_file_and_only_its_own(tmp_path: Path) -> None:
    """``LOAD DATA LOCAL INFILE`` lets the server name the file the client sends: a source's connection
    never allows it, and a target's allows it only for the file of its own bulk write."""
    gen = make_databases("mariadb", tmp_path)
    dbs = next(gen)
    secret = tmp_path / "secret.txt"
    secret.write_text("1\tfrom a file the sync never loads\n", encoding="utf-8")
    source, _ = create_sql_engine(dbs.target_url, where="source.url")
    target, _ = create_sql_engine(dbs.target_url, where="target.url", bulk_load=True)
    table = _items()
    try:
        _create(target, table)
        for engine, announced in ((source, False), (target, True)):
            with engine.connect() as conn:
                assert backend(conn).can_load_local(conn) is announced
            # What a hostile server can do: answer a statement by asking for a file of its choosing.
            raw = engine.raw_connection()
            try:
                with pytest.raises((RuntimeError, pymysql.err.MySQLError)), raw.cursor() as cur:
                    cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE items (id, name)")
            finally:
                raw.invalidate()  # a refused request leaves the protocol mid-exchange
        assert _read_all(target, table) == []
        with target.begin() as conn:
            backend(conn).insert_arrow(conn, table, _odd_rows().slice(0, 2))  # its own file: LOAD DATA
        assert [r[0] for r in _read_all(target, table)] == [1, 2]
    finally:
        source.dispose()
        target.dispose()
        for _ in gen:
            pass


def test_connections_without_the_bulk_protocol_give_the_same_results(dbs: Databases) -> None:
    # MariaDB without local_infile (multi-row INSERT), PostgreSQL through psycopg2 (SQLAlchemy's executemany).
    url = sa.make_url(dbs.target_url)
    if dbs.backend == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url)
    table = _items()
    _create(engine, table)
    rows = _odd_rows()
    try:
        with engine.begin() as conn:
            db = backend(conn)
            assert not db.can_copy(conn)
            db.insert_arrow(conn, table, rows.slice(0, 2))
            db.upsert_arrow(conn, table, rows.slice(1), ["id"])
            back = db.read_arrow(conn, table, SCHEMA.names, _keys([1, 2, 3, 4]), SCHEMA)
            assert db.delete_arrow(conn, table, _keys([4, 7])) == 1
        assert _sorted(back).equals(rows)
        assert [r[0] for r in _read_all(engine, table)] == [1, 2, 3]
    finally:
        engine.dispose()


def test_binary_values_round_trip_byte_for_byte(engine: sa.Engine) -> None:
    table = sa.Table(
        "blobs",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary),
    )
    every_byte = bytes(range(256))
    values = [every_byte, b"", None, b"\t\n\\\x00\r\"'", every_byte[::-1] * 3]
    rows = pa.table({"id": pa.array(range(1, 6), pa.int64()), "data": pa.array(values, pa.binary())})
    schema = pa.schema([("id", pa.int64()), ("data", pa.binary())])
    with engine.begin() as conn:
        table.create(conn)
        db = backend(conn)
        db.insert_arrow(conn, table, rows.slice(0, 3))
        db.upsert_arrow(conn, table, rows.slice(2), ["id"])
        read = db.read_arrow(conn, table, ["id", "data"], rows.select(["id"]), schema)
    assert read.schema.field("data").type == pa.binary()
    assert sorted(read.to_pylist(), key=lambda r: r["id"]) == rows.to_pylist()


@pytest.mark.parametrize("streaming", [False, True])
def test_a_connection_that_scanned_a_table_still_reads_every_row(engine: sa.Engine, streaming: bool) -> None:
    """A scan streams its rows; the reads after it on the same connection (a key scan, then the rows it
    found missing) still get every row, the first one included, even on a connection a caller set to stream
    (SQLAlchemy then buffers a result's first rows before the driver's cursor is read)."""
    table = _items()
    _create(engine, table)
    rows = _rows([1, 2, 3])
    with engine.begin() as conn:
        db = backend(conn)
        db.insert_arrow(conn, table, rows)
        if streaming:
            conn.execution_options(yield_per=2)  # on the connection itself, as SQLAlchemy 2 applies it
        assert sorted(db.scan_arrow(conn, table, ["id"], SCHEMA).column("id").to_pylist()) == [1, 2, 3]
        for keys in (_keys([1, 2, 3]), _keys([3, 1])):
            read = db.read_arrow(conn, table, SCHEMA.names, keys, SCHEMA)
            assert sorted(read.column("id").to_pylist()) == sorted(keys.column("id").to_pylist())


def test_texts_that_look_like_the_load_files_markup_round_trip(engine: sa.Engine) -> None:
    """Text that reads as NULL, a quote, a separator or an escape in a bulk file (MariaDB's ``LOAD DATA``
    file, the CSV lines it is read back as, PostgreSQL's CSV) is written and read back as it was, beside
    NULLs and booleans."""
    texts = ["NULL", "null", "\\N", "", '"', '""', 'a"', '"a', "a,b", "a\r\nb", " padded ", "back\\", "\t", None]
    table = sa.Table(
        "markup",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("s", LONG_TEXT),
        sa.Column("flag", sa.Boolean),
    )
    rows = pa.table(
        {
            "id": pa.array(range(len(texts)), pa.int64()),
            "s": pa.array(texts, pa.string()),
            "flag": pa.array([i % 3 == 0 if i % 4 else None for i in range(len(texts))], pa.bool_()),
        }
    )
    with engine.begin() as conn:
        table.create(conn)
        db = backend(conn)
        db.insert_arrow(conn, table, rows.slice(0, 8))
        db.upsert_arrow(conn, table, rows.slice(4), ["id"])
        read = db.read_arrow(conn, table, rows.column_names, rows.select(["id"]), rows.schema)
    assert _sorted(read).to_pylist() == rows.to_pylist()


def test_binary_values_beside_text_round_trip(engine: sa.Engine) -> None:
    """A row with binary and text values (escapes, letters beyond ASCII) is written and read back as it was: on
    MariaDB such a file is sent as binary, its text converted from UTF-8 on the server."""
    table = sa.Table(
        "mixed",
        sa.MetaData(),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary),
        sa.Column("note", LONG_TEXT),
        sa.Column("n", sa.Integer),
    )
    rows = pa.table(
        {
            "name": ["é 漢字 😀", "tab\there", "back\\slash\\N", "plain"],
            "data": pa.array([bytes(range(256)), b"\\N", None, b""], pa.binary()),
            "note": [ODD_TEXT, None, "", "\\N"],
            "n": pa.array([1, None, 3, 4], pa.int32()),
        }
    )
    schema = rows.schema
    with engine.begin() as conn:
        table.create(conn)
        db = backend(conn)
        db.insert_arrow(conn, table, rows.slice(0, 3))
        db.upsert_arrow(conn, table, rows.slice(2), ["name"])
        read = db.read_arrow(conn, table, schema.names, rows.select(["name"]), schema)
    assert sorted(read.to_pylist(), key=lambda r: r["name"]) == sorted(rows.to_pylist(), key=lambda r: r["name"])


def test_mariadb_text_of_another_character_set_beside_binary_values(tmp_path: Path) -> None:
    """A file with binary values is read as binary: text still lands in a latin1 column as its letters, not as
    the bytes of their UTF-8."""
    gen = make_databases("mariadb", tmp_path)
    dbs = next(gen)
    engine = _engine(dbs)
    table = sa.Table(
        "latin",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(32)),
        sa.Column("data", sa.LargeBinary),
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE latin (id BIGINT PRIMARY KEY, name VARCHAR(32) CHARACTER SET latin1, data BLOB)"
            )
            db = backend(conn)
            assert db.can_load_local(conn)
            rows = pa.table(
                {"id": pa.array([1, 2], pa.int64()), "name": ["Müller\tçà", None], "data": [b"\xe9\x00", b"\t"]}
            )
            db.insert_arrow(conn, table, rows)
            stored = conn.exec_driver_sql("SELECT HEX(name), CHAR_LENGTH(name) FROM latin WHERE id = 1").one()
            read = db.read_arrow(conn, table, rows.column_names, rows.select(["id"]), rows.schema)
        assert tuple(stored) == ("Müller\tçà".encode("latin-1").hex().upper(), 9)
        assert sorted(read.to_pylist(), key=lambda r: r["id"]) == rows.to_pylist()
        with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="Incorrect string value"):
            backend(conn).insert_arrow(
                conn, table, pa.table({"id": pa.array([3], pa.int64()), "name": ["漢字"], "data": [b"x"]})
            )
    finally:
        engine.dispose()
        for _ in gen:
            pass


def test_read_of_keys_in_key_order_returns_exactly_those_keys(engine: sa.Engine) -> None:
    """Ascending keys of a short range (a full read's batch) and scattered ones give the same answer."""
    table = sa.Table(
        "ranged",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text),
    )
    rows = pa.table({"id": pa.array(range(1, 41), pa.int64()), "note": [f"n{i}" for i in range(1, 41)]})
    schema = pa.schema([("id", pa.int64()), ("note", pa.string())])
    ascending = pa.table({"id": pa.array([3, 4, 6, 7, 9, 10], pa.int64())})
    whole = pa.table({"id": pa.array(range(11, 21), pa.int64())})  # every key of its range
    scattered = pa.table({"id": pa.array([40, 3, 17, 99], pa.int64())})
    with engine.begin() as conn:
        table.create(conn)
        db = backend(conn)
        db.insert_arrow(conn, table, rows)
        dense = db.read_arrow(conn, table, ["id", "note"], ascending, schema)
        complete = db.read_arrow(conn, table, ["id", "note"], whole, schema)
        sparse = db.read_arrow(conn, table, ["id", "note"], scattered, schema)
    assert sorted(dense.column("id").to_pylist()) == [3, 4, 6, 7, 9, 10]
    assert sorted(complete.column("id").to_pylist()) == list(range(11, 21))
    assert sorted(sparse.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 3, "note": "n3"},
        {"id": 17, "note": "n17"},
        {"id": 40, "note": "n40"},
    ]


def test_two_tables_keyed_alike_are_read_together(engine: sa.Engine) -> None:
    """A target and its baselines read by the same keys: each side as its own read would give it."""
    metadata = sa.MetaData()
    left = sa.Table(
        "left_side",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text),
    )
    right = sa.Table(
        "right_side",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text),  # the same column name on both sides
        sa.Column("digest", sa.LargeBinary),
    )
    left_schema = pa.schema([("id", pa.int64()), ("note", pa.string())])
    right_schema = pa.schema([("id", pa.int64()), ("note", pa.string()), ("digest", pa.binary())])
    with engine.begin() as conn:
        metadata.create_all(conn)
        db = backend(conn)
        db.insert_arrow(conn, left, pa.table({"id": pa.array(range(1, 6), pa.int64()), "note": list("abcde")}))
        right_rows = {"id": pa.array(range(3, 9), pa.int64()), "note": list("CDEFGH"), "digest": [b"\x00\t"] * 6}
        db.insert_arrow(conn, right, pa.table(right_rows, schema=right_schema))
        results = {}
        for label, wanted in (("dense", [2, 3, 4, 5, 6, 7]), ("scattered", [7, 2, 100, 4])):
            keys = pa.table({"id": pa.array(wanted, pa.int64())})
            together = db.read_arrow_sides(
                conn, [(left, ["id", "note"], left_schema), (right, ["id", "note", "digest"], right_schema)], keys
            )
            alone = [
                db.read_arrow(conn, left, ["id", "note"], keys, left_schema),
                db.read_arrow(conn, right, ["id", "note", "digest"], keys, right_schema),
            ]
            results[label] = (together, alone)
    for together, alone in results.values():
        for joined, single in zip(together, alone, strict=True):
            assert sorted(joined.to_pylist(), key=lambda r: r["id"]) == sorted(
                single.to_pylist(), key=lambda r: r["id"]
            )
    dense_left, dense_right = results["dense"][0]
    assert sorted(dense_left.column("id").to_pylist()) == [2, 3, 4, 5]
    assert sorted(dense_right.column("id").to_pylist()) == [3, 4, 5, 6, 7]
    assert set(dense_right.column("digest").to_pylist()) == {b"\x00\t"}
    assert sorted(results["scattered"][0][1].column("id").to_pylist()) == [4, 7]


def test_mariadb_lines_cut_at_the_concat_limit_are_read_again_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read's lines travel as one ``GROUP_CONCAT`` value; where they reach its limit, they are read again one
    row each, and the rows come back whole."""
    from sync_pipelines.connectors.dialects import mysql

    gen = make_databases("mariadb", tmp_path)
    engine = _engine(next(gen))
    table = _items()
    rows = pa.concat_tables([_odd_rows(), _rows(list(range(5, 60)))])
    cuts: list[int] = []
    row_by_row = mysql.fetched

    def counted(*args: Any, **kwargs: Any) -> Any:
        cuts.append(1)
        return row_by_row(*args, **kwargs)

    monkeypatch.setattr(mysql, "fetched", counted)
    try:
        _create(engine, table)
        with engine.begin() as conn:
            db = backend(conn)
            db.insert_arrow(conn, table, rows)
            whole = _sorted(db.read_arrow(conn, table, SCHEMA.names, rows.select(["id"]), SCHEMA))
            assert cuts == []
            monkeypatch.setattr(mysql, "_CONCAT_LIMIT", "300")
            cut = _sorted(db.read_arrow(conn, table, SCHEMA.names, rows.select(["id"]), SCHEMA))
            scattered = _keys([59, 1, 30, 2])
            few = _sorted(db.read_arrow(conn, table, SCHEMA.names, scattered, SCHEMA))
        assert cuts and whole.equals(_sorted(rows)) and cut.equals(whole)
        assert few.equals(_sorted(rows.filter(pa.compute.is_in(rows.column("id"), scattered.column("id")))))
    finally:
        engine.dispose()
        for _ in gen:
            pass
