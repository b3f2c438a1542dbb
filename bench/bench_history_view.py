"""Benchmark: how fast the history view answers for a run of 1M stored records (PostgreSQL ledger).

    .venv/bin/python bench/bench_history_view.py                  # 1M records, figures printed
    .venv/bin/python bench/bench_history_view.py --records 200000
    .venv/bin/python bench/bench_history_view.py --created-sets 1000000   # plus 1M created records in 20 sets

Fills `_sync_records` of a fresh database (``$BENCH_PG_DATABASE``, default sync_bench_history) with
COPY: one run of --records records (two entities; created, updated, deleted and 1% failed), plus
another run of 10% as many (with --created-sets, the measured run also has that many created
records stored as ``_sync_record_sets`` sets of 50,000 keys, one per batch), then asks the view
(its Starlette app, in process) for the run page, a late page of its records, filtered pages and a
filtered Excel download. Each figure is the first answer of a new view (cold) and the median of
--repeat more (warm). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import yaml
from starlette.testclient import TestClient

from sync_pipelines.config import load_configs
from sync_pipelines.connectors.record_sets import record_set_row, record_sets_table
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.records import ensure_record_indexes
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines.web import create_app

ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_PG_DATABASE", "sync_bench_history")
SYNC = "bench_users"
T0 = dt.datetime(2026, 12, 1, 2, 0)


def recreate_database() -> str:
    """A fresh database; returns its SQLAlchemy URL."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{BENCH_DB}"


def write_config(folder: Path, url: str) -> None:
    config = {
        "name": SYNC,
        "source": {"kind": "sql", "url": f"sqlite:///{folder / 'unused.db'}", "table": "users"},
        "target": {"kind": "sql", "url": url, "table": "users", "key": ["user_id"]},
        "mode": "full",
        "history": {"entity": "users"},
    }
    (folder / f"{SYNC}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def _action(i: int) -> tuple[str, str | None, str | None]:
    if i % 100 == 7:
        return "failed", None, f"qty: cannot convert 'x{i}' to integer"
    if i % 20 == 3:
        return "created", None, None
    if i % 50 == 11:
        return "deleted", None, None
    changes = json.dumps({"display_name": [f"User {i}", f"User {i} (Finance)"], "email": [f"u{i}@a.example", None]})
    return "updated", changes, None


def copy_records(dsn: str, run_id: str, count: int) -> float:
    """COPY ``count`` records of ``run_id``; returns the seconds it took."""
    started = time.perf_counter()
    columns = "run_id, sync, batch, record_key, entity, action, changes, error, recorded_at"
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY _sync_records ({columns}) FROM STDIN") as copy:
            for i in range(count):
                action, changes, error = _action(i)
                entity = "departments" if i % 5 == 0 else "users"
                copy.write_row((run_id, SYNC, i // 10_000, f'{{"user_id": {i}}}', entity, action, changes, error, T0))
        conn.commit()
    return time.perf_counter() - started


SET_SIZE = 50_000


def insert_sets(url: str, run_id: str, count: int) -> float:
    """Store ``count`` created records of ``run_id`` as sets of :data:`SET_SIZE` keys; returns the seconds."""
    import pyarrow as pa
    import sqlalchemy as sa

    started = time.perf_counter()
    table = record_sets_table(sa.MetaData())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        table.create(conn, checkfirst=True)
        for batch, first in enumerate(range(0, count, SET_SIZE)):
            ids = pa.array(range(10_000_000 + first, 10_000_000 + min(count, first + SET_SIZE)), pa.int64())
            keys = pa.table({"user_id": ids})
            conn.execute(
                sa.insert(table), [record_set_row(SYNC, "users", run_id, batch, RecordAction.CREATED, keys, T0)]
            )
    engine.dispose()
    return time.perf_counter() - started


def timed(folder: Path, path: str, repeat: int) -> tuple[float, float]:
    """Milliseconds of the first answer of a new view (cold: no counts kept) and median of ``repeat`` more."""
    client = TestClient(create_app(folder, "http://127.0.0.1:3000"))

    def once() -> float:
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (path, response.text[:500])
        return elapsed

    first = once()
    return first, statistics.median(once() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="Records of the measured run.")
    parser.add_argument("--repeat", type=int, default=5, help="Timed answers after the first.")
    parser.add_argument(
        "--created-sets", type=int, default=0, help="Created records of the measured run stored as record sets."
    )
    args = parser.parse_args()

    url = recreate_database()
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        folder = Path(tmp)
        write_config(folder, url)
        [cfg] = load_configs(folder)
        writer = SqlTargetWriter(cfg)
        writer.metadata.create_all(writer.engine, tables=[writer.records_table])
        writer.engine.dispose()
        big, other = str(uuid.uuid4()), str(uuid.uuid4())
        copy_s = copy_records(dsn, big, args.records) + copy_records(dsn, other, args.records // 10)
        sets_s = insert_sets(url, big, args.created_sets) if args.created_sets else 0.0
        with open_ledger(cfg) as ledger:
            for run_id, n in ((big, args.records), (other, args.records // 10)):
                entry = RunEntry(run_id, SYNC, Trigger.SCHEDULE, "full", status=RunStatus.PARTIAL, started_at=T0)
                entry.records_run_id = run_id
                entry.counts.update(processed=n)
                ledger.finish_run(entry)
            started = time.perf_counter()
            ensure_record_indexes(ledger)
            index_s = time.perf_counter() - started
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE _sync_records")

        last_page = max(1, (args.records + args.created_sets) // 50 // 2)
        cases = {
            "run page (counts, entity status, first 50 records)": f"/runs/{big}",
            f"run page, records page {last_page:,} of all records": f"/runs/{big}?page={last_page}",
            "records filtered: status=failed": f"/runs/{big}?status=failed",
            "records filtered: entity=departments, action=updated, page 100": (
                f"/runs/{big}?entity=departments&action=updated&page=100"
            ),
            **(
                {
                    f"records filtered: action=created, page {args.created_sets // 50 // 2:,}": (
                        f"/runs/{big}?action=created&page={args.created_sets // 50 // 2}"
                    )
                }
                if args.created_sets
                else {}
            ),
            "run history (sync list of runs)": "/runs",
            "sync list": "/",
            "Excel download of status=failed": f"/runs/{big}/records.xlsx?status=failed",
        }
        print(f"{args.records:,} records (+{args.records // 10:,} of another run) in PostgreSQL {BENCH_DB}")
        print(f"  COPY {copy_s:.1f} s, index (run, action, entity, id) built in {index_s:.1f} s")
        if args.created_sets:
            print(f"  +{args.created_sets:,} created records in sets of {SET_SIZE:,}, written in {sets_s:.1f} s")
        print(f"  {'answer':<66} {'cold':>9} {'warm':>9}")
        for label, path in cases.items():
            cold, warm = timed(folder, path, args.repeat)
            print(f"  {label:<66} {cold:6.0f} ms {warm:6.0f} ms")
        print("  cold: the first answer of a new view; warm: the median of the next answers (a finished run's")
        print("  counts per entity and action are kept in memory, so paging and filtering skip that pass)")


if __name__ == "__main__":
    sys.exit(main())
