"""One timed benchmark run in a fresh process, so that its peak RSS is its own. Prints one JSON line."""

from __future__ import annotations

import json
import resource
import sys
import time
import uuid
from typing import Any

import floor_v3

PG_TYPES = ["int8", "int8", "varchar", "int4", "numeric", "varchar", "varchar", "timestamp", "timestamp"]


def _engine(spec: dict[str, Any]) -> dict[str, Any]:
    from sync_pipelines.config import SyncConfig
    from sync_pipelines.engine import RunOptions
    from sync_pipelines.engine.runner import extract, load, transform

    cfg = SyncConfig.model_validate(spec["config"])
    options = RunOptions(run_id=uuid.uuid4().hex, full_sync=spec["full_sync"], dry_run=spec["dry_run"])
    # run_sync's three stages, each timed: what a goal's budget leaves for the stage it is about.
    started = time.perf_counter()
    manifest = extract(cfg, options)
    extracted = time.perf_counter()
    manifest = transform(cfg, manifest, options)
    transformed = time.perf_counter()
    result = load(cfg, manifest, options)
    ended = time.perf_counter()
    out = {
        "wall_s": ended - started,
        "status": result.status.value,
        "counts": result.counts.as_dict(),
        "stages": {"extract": extracted - started, "transform": transformed - extracted, "load": ended - transformed},
    }
    scan = result.details.get("key_scan")
    if scan:  # the key scan of an incremental run with delete_missing, timed inside the run
        out["figures"] = {"key_scan": scan["scan_s"] + scan["compare_s"]}
    return out


def _dagster(spec: dict[str, Any]) -> dict[str, Any]:
    from dagster import DagsterInstance

    from sync_pipelines.config import SyncConfig
    from sync_pipelines.orchestration import build_definitions, job_name

    cfg = SyncConfig.model_validate(spec["config"])
    with DagsterInstance.local_temp() as instance:
        job = build_definitions([cfg]).get_job_def(job_name(cfg.name))
        started = time.perf_counter()
        result = job.execute_in_process(
            run_config={"full_sync": spec["full_sync"], "dry_run": spec["dry_run"]}, instance=instance
        )
        wall = time.perf_counter() - started
    return {"wall_s": wall, "status": "completed" if result.success else "failed"}


def _read_source(spec: dict[str, Any]) -> Any:
    """Yield typed source rows from SQLite (PostgreSQL sources are copied block by block instead)."""
    import sqlite3

    with sqlite3.connect(spec["sqlite_path"]) as db:
        cur = db.execute("SELECT * FROM orders ORDER BY id")
        while chunk := cur.fetchmany(50_000):
            for r in chunk:
                yield _typed(r)


def _typed(r: tuple[Any, ...]) -> tuple[Any, ...]:
    """A SQLite ``orders`` row with PostgreSQL's types (Decimal prices, datetimes)."""
    import datetime as dt
    from decimal import Decimal

    stamp = dt.datetime.fromisoformat
    return (*r[:4], Decimal(str(r[4])).quantize(Decimal("0.01")), r[5], r[6], stamp(r[7]), stamp(r[8]))


def _copy(spec: dict[str, Any], *, upsert: bool) -> dict[str, Any]:
    import psycopg

    started = time.perf_counter()
    table = f"{spec['target_schema']}.orders"
    with psycopg.connect(spec["target_dsn"]) as dst, dst.cursor() as out:
        into = table
        if upsert:
            out.execute(f"CREATE TEMP TABLE orders_stage (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
            into = "orders_stage"
        with out.copy(f"COPY {into} FROM STDIN (FORMAT BINARY)") as sink:
            if spec["source"] == "postgresql":
                with psycopg.connect(spec["source_dsn"]) as src, src.cursor() as inp:
                    query = f"COPY (SELECT * FROM {spec['source_schema']}.orders) TO STDOUT (FORMAT BINARY)"
                    with inp.copy(query) as reader:
                        for block in reader:
                            sink.write(block)
            else:
                sink.set_types(PG_TYPES)
                for row in _read_source(spec):
                    sink.write_row(row)
        if upsert:
            cols = ["customer_id", "sku", "qty", "unit_price", "status", "note", "created_at", "updated_at"]
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
            distinct = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in cols)
            out.execute(
                f"INSERT INTO {table} SELECT * FROM orders_stage ON CONFLICT (id) DO UPDATE SET {sets} WHERE {distinct}"
            )
    return {"wall_s": time.perf_counter() - started}


def _source_arrow(spec: dict[str, Any]) -> Any:
    """The whole source as one Arrow table: ``COPY ... TO STDOUT (FORMAT csv)`` parsed by pyarrow.csv, as the
    engine reads a PostgreSQL source (a SQLite source goes through a CSV file)."""
    import io
    import os
    import tempfile

    import psycopg
    import pyarrow.csv as pa_csv

    names = list(floor_v3.ARROW_TYPES)
    read = pa_csv.ReadOptions(column_names=names, use_threads=False)
    if spec["source"] == "postgresql":
        query = f"COPY (SELECT * FROM {spec['source_schema']}.orders) TO STDOUT (FORMAT csv)"
        with psycopg.connect(spec["source_dsn"]) as src, src.cursor() as cur:
            cur.execute("SET LOCAL DateStyle = 'ISO, MDY'")
            with cur.copy(query) as reader:
                data = b"".join(bytes(block) for block in reader)
        nulls = pa_csv.ConvertOptions(
            column_types=floor_v3.ARROW_TYPES,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        return pa_csv.read_csv(io.BytesIO(data), read_options=read, convert_options=nulls)
    fd, path = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    try:
        _source_csv(spec, path)
        nulls = pa_csv.ConvertOptions(column_types=floor_v3.ARROW_TYPES, null_values=["\\N"], strings_can_be_null=True)
        return pa_csv.read_csv(path, read_options=read, convert_options=nulls)
    finally:
        os.unlink(path)


def _copy_bookkeeping(spec: dict[str, Any]) -> dict[str, Any]:
    """The write floor of bookkeeping format v3 (``floor_v3``), its target rows copied batch by batch by key
    range: piped from the source's binary COPY (PostgreSQL) or written as typed rows (SQLite)."""
    import contextlib
    import sqlite3

    import psycopg

    table = f"{spec['target_schema']}.orders"
    with contextlib.ExitStack() as stack:
        if spec["source"] == "postgresql":
            src = stack.enter_context(psycopg.connect(spec["source_dsn"], autocommit=True))

            def write_target(cur: Any, low: int, high: int) -> None:
                query = (
                    f"COPY (SELECT * FROM {spec['source_schema']}.orders WHERE id BETWEEN {low} AND {high}) "
                    "TO STDOUT (FORMAT BINARY)"
                )
                with (
                    cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as sink,
                    src.cursor() as inp,
                    inp.copy(query) as reader,
                ):
                    for block in reader:
                        sink.write(block)

        else:
            db = stack.enter_context(contextlib.closing(sqlite3.connect(spec["sqlite_path"])))

            def write_target(cur: Any, low: int, high: int) -> None:
                rows = db.execute("SELECT * FROM orders WHERE id BETWEEN ? AND ? ORDER BY id", (low, high))
                with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as sink:
                    sink.set_types(PG_TYPES)
                    for r in rows:
                        sink.write_row(_typed(r))

        return floor_v3.copy_bookkeeping(spec, lambda: _source_arrow(spec), write_target)


def _source_csv(spec: dict[str, Any], path: str) -> None:
    """The source's rows as CSV in ``path`` (``\\N`` for NULL), read with COPY (PostgreSQL) or sqlite3."""
    import csv
    import sqlite3

    import psycopg

    with open(path, "w", newline="") as out:
        if spec["source"] == "postgresql":
            query = f"COPY (SELECT * FROM {spec['source_schema']}.orders) TO STDOUT (FORMAT csv, NULL '\\N')"
            with psycopg.connect(spec["source_dsn"]) as src, src.cursor() as cur, cur.copy(query) as reader:
                for block in reader:
                    out.write(bytes(block).decode())
            return
        writer = csv.writer(out)
        with sqlite3.connect(spec["sqlite_path"]) as db:
            for row in db.execute("SELECT * FROM orders"):
                writer.writerow(["\\N" if v is None else v for v in row])


_MARIADB_DDL = """
CREATE TABLE orders (
    id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, sku VARCHAR(16) NOT NULL, qty INTEGER NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL, status VARCHAR(16) NOT NULL, note VARCHAR(64),
    created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL
)
"""


def _mariadb_load_data(spec: dict[str, Any]) -> dict[str, Any]:
    """MariaDB's bulk floor: the source's rows to a CSV file, then ``LOAD DATA LOCAL INFILE`` into an empty table."""
    import os
    import tempfile

    import pymysql

    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", database=spec["mariadb_database"], local_infile=True
    )
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS orders")
        cur.execute(_MARIADB_DDL)
    conn.commit()
    fd, path = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    started = time.perf_counter()
    try:
        _source_csv(spec, path)
        with conn.cursor() as cur:
            cur.execute(
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE orders FIELDS TERMINATED BY ',' "
                "OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'"
            )
        conn.commit()
        wall = time.perf_counter() - started
    finally:
        os.unlink(path)
        conn.close()
    return {"wall_s": wall}


def _sqlite_executemany(spec: dict[str, Any]) -> dict[str, Any]:
    """SQLite's bulk floor: the source's typed rows written by one ``executemany`` in one transaction."""
    import sqlite3

    import psycopg

    path = spec["target_sqlite_path"]
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS orders")
        db.execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, sku VARCHAR(16) NOT NULL, "
            "qty INTEGER NOT NULL, unit_price NUMERIC(12,2) NOT NULL, status VARCHAR(16) NOT NULL, "
            "note VARCHAR(64), created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)"
        )
    started = time.perf_counter()
    if spec["source"] == "postgresql":
        with psycopg.connect(spec["source_dsn"]) as src, src.cursor() as cur:
            cur.execute(f"SELECT * FROM {spec['source_schema']}.orders")
            rows: Any = ((*r[:4], str(r[4]), r[5], r[6], r[7].isoformat(" "), r[8].isoformat(" ")) for r in cur)
            _sqlite_write(path, rows)
    else:
        with sqlite3.connect(spec["sqlite_path"]) as db:
            _sqlite_write(path, db.execute("SELECT * FROM orders"))
    return {"wall_s": time.perf_counter() - started}


def _sqlite_write(path: str, rows: Any) -> None:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _dlt(spec: dict[str, Any]) -> dict[str, Any]:
    import dlt
    from dlt.sources.sql_database import sql_database

    source = sql_database(
        spec["source_url"], schema=spec.get("source_schema"), table_names=["orders"], backend="pyarrow"
    ).with_resources("orders")
    source.orders.apply_hints(
        primary_key="id", write_disposition="merge", incremental=dlt.sources.incremental("updated_at")
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:8]}",
        pipelines_dir=spec["work_dir"],
        destination=dlt.destinations.postgres(spec["target_url"]),
        dataset_name=spec["dataset"],
    )
    started = time.perf_counter()
    pipeline.run(source)
    return {"wall_s": time.perf_counter() - started}


def main() -> None:
    spec = json.loads(sys.argv[1])
    runners = {
        "engine": _engine,
        "dagster": _dagster,
        "copy": lambda s: _copy(s, upsert=False),
        "copy_upsert": lambda s: _copy(s, upsert=True),
        "copy_bookkeeping": _copy_bookkeeping,
        "mariadb_load_data": _mariadb_load_data,
        "sqlite_executemany": _sqlite_executemany,
        "dlt": _dlt,
    }
    out = runners[spec["kind"]](spec)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
