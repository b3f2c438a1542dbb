"""Benchmark: a backfill of daily partitions, one partition run at a time against two at once.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_partitions.py                   # 8 days x 50k rows, 1 round
    PYTHONPATH=$PWD .venv/bin/python bench/bench_partitions.py --rows-per-day 100000 --rounds 2

Each partition is a real run: ``sync-pipelines run NAME --partition DAY`` in a process of its own (a run
worker: Dagster's in-process executor, the persistent instance in a temporary DAGSTER_HOME), from a
PostgreSQL source into an empty PostgreSQL target. The serial backfill starts the next run when one
ends; the parallel one keeps ``--workers`` runs going, as the queued coordinator does with that many
slots in the sync's pool (``partitions.max_parallel``). Both are timed in the same invocation, the
rounds alternating, each round on a fresh target; every run must succeed and the target must hold every
row. Results are printed and written as JSON to bench/results/. ``$BENCH_PG_DATABASE`` names the
database (default sync_bench).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sync import BENCH_DB, ensure_database, pg_dsn, sa_url
from data import COLUMNS, PG_DDL, STATUSES

HERE = Path(__file__).resolve().parent
SRC, DST = "bench_part_src", "bench_part_dst"
DAY0 = dt.datetime(2024, 1, 1)
CLI = [sys.executable, "-c", "from sync_pipelines.cli import main; main()"]


def create_source(rows_per_day: int, days: int) -> int:
    """``SRC.orders`` with ``rows_per_day`` rows on each of ``days`` days from DAY0; returns the row count."""
    total = rows_per_day * days
    step = dt.timedelta(days=days) / total
    with psycopg.connect(pg_dsn(BENCH_DB)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SRC} CASCADE")
        cur.execute(f"CREATE SCHEMA {SRC}")
        cur.execute(PG_DDL.format(schema=SRC))
        with cur.copy(f"COPY {SRC}.orders ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i in range(total):
                at = DAY0 + step * i
                copy.write_row(
                    (i + 1, i % 50_000, f"SKU-{i % 100_000:06d}", i % 19 + 1, Decimal(i % 99_999) / 100,
                     STATUSES[i % 5], f"note {i}", at, at)
                )  # fmt: skip
        cur.execute(f"CREATE INDEX ON {SRC}.orders (updated_at, id)")
        cur.execute(f"ANALYZE {SRC}.orders")
    return total


def reset_target() -> None:
    with psycopg.connect(pg_dsn(BENCH_DB), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {DST} CASCADE")
        conn.execute(f"CREATE SCHEMA {DST}")


def target_rows() -> int:
    with psycopg.connect(pg_dsn(BENCH_DB)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {DST}.orders").fetchone()[0])  # type: ignore[index]


def write_config(folder: Path, days: int, workers: int, batch_size: int) -> str:
    url = sa_url(pg_dsn(BENCH_DB))
    cfg = {
        "name": "bench_days",
        "source": {"kind": "sql", "url": url, "schema": SRC, "table": "orders"},
        "target": {"kind": "sql", "url": url, "schema": DST, "table": "orders", "key": ["id"]},
        "mode": "incremental",
        "cursor": "updated_at",
        "batch_size": batch_size,
        "partitions": {"granularity": "daily", "start": DAY0.strftime("%Y-%m-%d"), "max_parallel": workers},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench_days.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(cfg["name"])


def backfill(name: str, partitions: list[str], workers: int, env: dict[str, str], cwd: Path) -> float:
    """Run every partition, ``workers`` at a time; the wall-clock seconds of the whole backfill."""
    todo = list(partitions)
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    failed: list[str] = []
    started = time.monotonic()
    while todo or running:
        while todo and len(running) < workers:
            day = todo.pop(0)
            proc = subprocess.Popen(
                [*CLI, "run", name, "--partition", day, "--json"],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            running.append((day, proc))
        time.sleep(0.05)
        for day, proc in list(running):
            if proc.poll() is not None:
                running.remove((day, proc))
                out = json.loads(proc.stdout.read() if proc.stdout else b"{}")
                if proc.returncode != 0 or out.get("status") != "completed":
                    failed.append(f"{day}: {out.get('status')} {out.get('error')}")
    elapsed = time.monotonic() - started
    if failed:
        raise SystemExit(f"partition runs failed: {failed}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-day", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="runs at once in the parallel backfill")
    parser.add_argument("--rounds", type=int, default=1, help="serial and parallel backfills, alternating")
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()
    ensure_database()
    total = create_source(args.rows_per_day, args.days)
    partitions = [(DAY0 + dt.timedelta(days=d)).strftime("%Y-%m-%d") for d in range(args.days)]
    figures: dict[int, list[float]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory(prefix="bench_partitions_") as tmp:
        work = Path(tmp)
        name = write_config(work / "syncs", args.days, args.workers, args.batch_size)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(work / "dagster_home"),
            "SYNC_PIPELINES_CONFIG_DIR": str(work / "syncs"),
            "SYNC_PIPELINES_STAGING_DIR": str(work / "staging"),
        }
        (work / "dagster_home").mkdir()
        # The instance's storage is created once, before runs start side by side (and the pool limit is set).
        subprocess.run([*CLI, "pools"], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
        for _ in range(args.rounds):
            for workers in (1, args.workers):
                reset_target()
                seconds = backfill(name, partitions, workers, env, work)
                assert target_rows() == total, "the target does not hold every source row"
                figures[workers].append(seconds)
                print(f"{workers} at a time: {seconds:.1f} s", flush=True)
    serial, parallel = statistics.median(figures[1]), statistics.median(figures[args.workers])
    result: dict[str, Any] = {
        "rows_per_day": args.rows_per_day,
        "days": args.days,
        "workers": args.workers,
        "rounds": args.rounds,
        "serial_s": round(serial, 2),
        "parallel_s": round(parallel, 2),
        "speed_up": round(serial / parallel, 2),
        "runs_s": {str(k): [round(v, 2) for v in vs] for k, vs in figures.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    print(
        f"{args.days} partitions x {args.rows_per_day} rows: one at a time {serial:.1f} s, "
        f"{args.workers} at a time {parallel:.1f} s, speed-up {serial / parallel:.2f} x"
    )
    out = HERE / "results" / f"partitions-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
