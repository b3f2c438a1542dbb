"""Benchmark: sync_pipelines beside binary COPY and dlt, on an ERP-like `orders` table, into PostgreSQL
(and, with --targets, into MariaDB and SQLite beside each one's own bulk floor).

    .venv/bin/python bench/bench_sync.py --quick        # 20k rows, PostgreSQL source, one run each, under 2 minutes
    .venv/bin/python bench/bench_sync.py                # 100k and 1M rows
    .venv/bin/python bench/bench_sync.py --workers 1,2 --sizes 100000   # case 1 with `parallel:` workers
    .venv/bin/python bench/bench_sync.py --sizes 1000000 --sources postgresql --cases 1 --runners engine \
        --runs 1 --no-dlt                               # peak RSS of case 1 at 1M rows
    .venv/bin/python bench/bench_sync.py --sizes 100000 --sources postgresql --targets mariadb,sqlite --runs 1

    .venv/bin/python bench/bench_sync.py --sizes 100000,1000000 --sources postgresql --cases '' \
        --floors copy,copy_bookkeeping --no-dlt         # the write floors only

Anchors (--floors): copy (binary COPY of the rows), copy_upsert (COPY into a temp table + one upsert),
copy_bookkeeping (the write floor of bookkeeping format v3, bench/floor_v3.py; its runs also time
read_source, the source into Arrow, and hash_<rows>, hashing every row with the engine's row hash).
Cases, each through the engine and through the Dagster job (in-process executor):
  0 incremental, nothing changed since the last run (timed after case 3, or after a full load)
  1 full sync into an empty target        2 full sync, all rows unchanged
  3 incremental after 1% updated + 0.1% inserted    4 dry run of case 3
  5 full sync with delete_missing after 1% of the source was deleted
  6 incremental with delete_missing after case 3's changes and 0.1% of the source deleted (its run also
    reports `key_scan`: reading every source key and comparing them with the target's, inside the run)
  7 the first incremental run into an empty target: the whole source, read in cursor order (keys repeated
    across batches are then looked up among every key seen, where a full read compares neighbours)
An engine figure also gives its three stages' times (extract / transform / load, each timed around the
stage's own call, as run_sync chains them); two ratios tell what share of a goal's budget the work a case
cannot skip takes (case 2's extract and transform; case 1's write floor plus reading the source). Every
figure is the median of --runs timed runs, each in a fresh process (its peak RSS is its own; the worker
processes of `parallel:` are not counted). $BENCH_PG_DATABASE names the database used
(default sync_bench), so that two measurements on one server do not drop each other's tables.
Results are printed and written as JSON to bench/results/.
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
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import Changes, create_pg, create_sqlite

HERE = Path(__file__).resolve().parent
ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_PG_DATABASE", "sync_bench")
SRC_SCHEMA, DST_SCHEMA = "bench_src", "bench_dst"


def pg_dsn(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


def sa_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def ensure_database() -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {BENCH_DB}")


def reset_target() -> None:
    with psycopg.connect(pg_dsn(BENCH_DB), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {DST_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {DST_SCHEMA}")
        conn.execute("DROP SCHEMA IF EXISTS dlt_bench CASCADE")


MARIADB_URL = os.environ.get("BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")


def ensure_mariadb() -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(MARIADB_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS {BENCH_DB}"))
    engine.dispose()


def reset_other_target(target: str, work: Path) -> None:
    """Empty the MariaDB database or remove the SQLite file that a non-PostgreSQL target run writes."""
    import sqlalchemy as sa

    if target == "sqlite":
        (work / "target.db").unlink(missing_ok=True)
        for lock in work.glob("target.db.*.lock"):
            lock.unlink()
        return
    engine = sa.create_engine(MARIADB_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {BENCH_DB}"))
        conn.execute(sa.text(f"CREATE DATABASE {BENCH_DB}"))
    engine.dispose()


def target_url(target: str, work: Path) -> str:
    if target == "sqlite":
        return f"sqlite:///{work / 'target.db'}"
    return MARIADB_URL.rstrip("/") + f"/{BENCH_DB}"


def sync_config(source: str, sqlite_path: Path, *, mode: str, batch_size: int) -> dict[str, Any]:
    src: dict[str, Any] = {"kind": "sql", "table": "orders"}
    if source == "postgresql":
        src.update(url=sa_url(pg_dsn(BENCH_DB)), schema=SRC_SCHEMA)
    else:
        src.update(url=f"sqlite:///{sqlite_path}")
    cfg: dict[str, Any] = {
        "name": f"bench_orders_{mode}",
        "source": src,
        "target": {
            "kind": "sql",
            "url": sa_url(pg_dsn(BENCH_DB)),
            "schema": DST_SCHEMA,
            "table": "orders",
            "key": ["id"],
        },
        "mapping": {
            "id": {"type": "integer"},
            "customer_id": {"type": "integer"},
            "sku": {"type": "string"},
            "qty": {"type": "integer"},
            "unit_price": {"type": "decimal(12,2)"},
            "status": {"type": "string"},
            "note": {"type": "string"},
            "created_at": {"type": "datetime"},
            "updated_at": {"type": "datetime"},
        },
        "batch_size": batch_size,
    }
    if mode == "incremental":
        cfg.update(mode="incremental", cursor="updated_at")
    else:
        cfg.update(mode="full", delete_missing=True, max_delete_ratio=0.05)
    return cfg


def child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "child.py"), json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "runs": [round(r["wall_s"], 3) for r in runs],
    }
    if all("stages" in r for r in runs):  # an engine run: its stages, each the median of its runs
        out["stages"] = {name: statistics.median(r["stages"][name] for r in runs) for name in runs[0]["stages"]}
    return out


class Timer:
    """Times one figure: the median of ``runs`` fresh-process runs, stored in ``out`` under its label and printed."""

    def __init__(self, out: dict[str, Any], base: dict[str, Any], runs: int, prefix: str):
        self.out, self.base, self.runs, self.prefix = out, base, runs, prefix

    def __call__(self, label: str, spec: dict[str, Any], before: Any = None) -> None:
        runs = []
        for _ in range(self.runs):
            if before:
                before()
            runs.append(child({**self.base, **spec}))
        self._store(label, runs)
        # Figures a run times beside its own (the v3 floor's source read and hashing), each under its name.
        for name in runs[0].get("figures", {}):
            self._store(name, [{"wall_s": r["figures"][name], "peak_rss_mb": r["peak_rss_mb"]} for r in runs])

    def _store(self, label: str, runs: list[dict[str, Any]]) -> None:
        fig = self.out[label] = median_of(runs)
        stages = "  " + " / ".join(f"{k} {v:.3f}" for k, v in fig["stages"].items()) if "stages" in fig else ""
        print(f"  {self.prefix} {label:<28} {fig['wall_s']:8.3f} s  {fig['peak_rss_mb']:7.0f} MB{stages}", flush=True)


def measure(size: int, source: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    sqlite_path = work / f"orders_{size}.db"
    with psycopg.connect(pg_dsn(BENCH_DB)) as conn:
        create_pg(conn, SRC_SCHEMA, size)
    if source == "sqlite":
        create_sqlite(sqlite_path, size)
    changes = Changes(source, size, sqlite_path=sqlite_path, pg_dsn=pg_dsn(BENCH_DB), schema=SRC_SCHEMA)
    incremental = sync_config(source, sqlite_path, mode="incremental", batch_size=args.batch_size)
    full = sync_config(source, sqlite_path, mode="full", batch_size=args.batch_size)
    base = {
        "source": source,
        "sqlite_path": str(sqlite_path),
        "source_dsn": pg_dsn(BENCH_DB),
        "source_schema": SRC_SCHEMA,
        "target_dsn": pg_dsn(BENCH_DB),
        "target_schema": DST_SCHEMA,
    }
    out: dict[str, Any] = {"rows": size, "source": source}
    timed = Timer(out, base, args.runs, f"{source:<10} {size:>8}")

    def prepare_copy() -> None:
        reset_target()
        with psycopg.connect(pg_dsn(BENCH_DB), autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {DST_SCHEMA}.orders (LIKE {SRC_SCHEMA}.orders INCLUDING ALL)")

    floors = args.floors.split(",") if args.floors else []
    if "copy" in floors or "copy_upsert" in floors:
        timed("copy", {"kind": "copy"}, before=prepare_copy)
    if "copy_upsert" in floors:
        timed("copy_upsert", {"kind": "copy_upsert"}, before=None)  # into the target the last COPY filled
    if "copy_bookkeeping" in floors:
        timed("copy_bookkeeping", {"kind": "copy_bookkeeping", "batch_size": args.batch_size}, before=prepare_copy)
    cases = {int(c) for c in args.cases.split(",") if c.strip()}
    for runner in args.runners.split(","):
        run = {"kind": runner, "config": incremental, "full_sync": True, "dry_run": False}

        def fill() -> None:
            child({**base, "kind": "engine", "config": incremental, "full_sync": True, "dry_run": False})

        if 1 in cases:
            timed(f"{runner}_1_full_empty", run, before=reset_target)
        elif cases and runner == args.runners.split(",")[0]:
            reset_target()
            fill()  # the later cases start from a synced target
        if 2 in cases:
            timed(f"{runner}_2_full_unchanged", run)
        if 3 in cases:
            timed(f"{runner}_3_incremental", {**run, "full_sync": False}, before=changes.update_and_insert)
        if 0 in cases:
            if 3 not in cases:  # an incremental run brings the watermark to the source's last change
                child({**base, "kind": "engine", "config": incremental, "full_sync": False, "dry_run": False})
            timed(f"{runner}_0_incremental_unchanged", {**run, "full_sync": False})

        def change_for_dry_run() -> None:
            child({**base, "kind": "engine", "config": incremental, "full_sync": False, "dry_run": False})
            changes.update_and_insert()

        if 4 in cases:
            timed(f"{runner}_4_dry_run", {**run, "full_sync": False, "dry_run": True}, before=change_for_dry_run)
        if 5 in cases:
            child({**base, "kind": "engine", "config": incremental, "full_sync": False, "dry_run": False})
            timed(f"{runner}_5_full_delete", {**run, "config": full}, before=changes.delete)
        if 6 in cases:
            deleting = {**incremental, "delete_missing": True}
            child({**base, "kind": "engine", "config": deleting, "full_sync": False, "dry_run": False})

            def change_and_delete() -> None:
                changes.update_and_insert()
                changes.delete(0.001)

            timed(
                f"{runner}_6_incremental_delete",
                {**run, "config": deleting, "full_sync": False},
                before=change_and_delete,
            )
        if 7 in cases:
            timed(f"{runner}_7_incremental_first", {**run, "full_sync": False}, before=reset_target)
    if args.dlt:

        def prepare_dlt() -> None:
            reset_target()

        dlt_spec = {
            "kind": "dlt",
            "source_url": sa_url(pg_dsn(BENCH_DB)) if source == "postgresql" else f"sqlite:///{sqlite_path}",
            # dlt insists on a password; the local server trusts 127.0.0.1 and ignores it.
            "target_url": pg_dsn(BENCH_DB).replace("postgres@", "postgres:unused@"),
            "dataset": "dlt_bench",
            "work_dir": str(work / "dlt"),
        }
        if source != "postgresql":
            dlt_spec["source_schema"] = None
        try:
            timed("dlt_merge_full", dlt_spec, before=prepare_dlt)
        except RuntimeError as exc:
            out["dlt_error"] = next((line for line in reversed(str(exc).splitlines()) if line.strip()), str(exc))
            print(f"  dlt failed: {out['dlt_error']}")
    return out


FLOORS = {"mariadb": "mariadb_load_data", "sqlite": "sqlite_executemany"}


def measure_target(size: int, source: str, target: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Cases 1 and 2 (engine) into a MariaDB or SQLite target, beside that target's own bulk floor."""
    sqlite_path = work / f"orders_{size}.db"
    with psycopg.connect(pg_dsn(BENCH_DB)) as conn:
        create_pg(conn, SRC_SCHEMA, size)
    if source == "sqlite":
        create_sqlite(sqlite_path, size)
    cfg = sync_config(source, sqlite_path, mode="incremental", batch_size=args.batch_size)
    cfg["name"] = f"bench_orders_{target}"
    cfg["target"] = {"kind": "sql", "url": target_url(target, work), "table": "orders", "key": ["id"]}
    base = {
        "source": source,
        "sqlite_path": str(sqlite_path),
        "source_dsn": pg_dsn(BENCH_DB),
        "source_schema": SRC_SCHEMA,
        "mariadb_database": BENCH_DB,
        "target_sqlite_path": str(work / "target.db"),
    }
    out: dict[str, Any] = {"rows": size, "source": source, "target": target}
    timed = Timer(out, base, args.runs, f"{source:<10} -> {target:<8} {size:>8}")

    def reset() -> None:
        reset_other_target(target, work)

    timed("floor", {"kind": FLOORS[target]}, before=reset)
    run = {"kind": "engine", "config": cfg, "full_sync": True, "dry_run": False}
    timed("engine_1_full_empty", run, before=reset)
    timed("engine_2_full_unchanged", run)
    e1 = out["engine_1_full_empty"]["wall_s"]
    out["ratios"] = {
        "case1_vs_floor_rows_per_s": out["floor"]["wall_s"] / e1,
        "case2_over_case1_time": out["engine_2_full_unchanged"]["wall_s"] / e1,
    }
    shared = _stages(out, "engine_2_full_unchanged", "extract", "transform")
    if shared is not None:
        out["ratios"]["case2_extract_transform_over_case1"] = shared / e1
    return out


def measure_workers(size: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Case 1 (full sync into an empty target, PostgreSQL source) with each ``parallel.workers`` count.

    The runs of the different counts alternate (1, 2, 1, 2, ...) so that a change in the machine's
    load during the measurement weighs on every count alike.
    """
    with psycopg.connect(pg_dsn(BENCH_DB)) as conn:
        create_pg(conn, SRC_SCHEMA, size)
    base = {"source": "postgresql", "target_dsn": pg_dsn(BENCH_DB), "target_schema": DST_SCHEMA}
    counts = [int(w) for w in args.workers.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
    for _ in range(args.runs):
        for workers in counts:
            cfg = sync_config("postgresql", work / "unused.db", mode="incremental", batch_size=args.batch_size)
            if workers > 1:
                cfg["parallel"] = {"workers": workers}
            reset_target()
            run = child({**base, "kind": "engine", "config": cfg, "full_sync": True, "dry_run": False})
            if run["status"] != "completed" or run["counts"]["created"] != size:
                raise RuntimeError(f"workers={workers}: unexpected result {run}")
            runs[workers].append(run)
            print(f"  workers={workers} {size:>8} rows  {run['wall_s']:8.3f} s", flush=True)
    out: dict[str, Any] = {"rows": size, "source": "postgresql", "batch_size": args.batch_size}
    for workers in counts:
        out[f"engine_1_full_empty_workers_{workers}"] = median_of(runs[workers])
    first = out[f"engine_1_full_empty_workers_{counts[0]}"]["wall_s"]
    best = min(r["wall_s"] for r in runs[counts[0]])
    out["speedup"] = {
        f"workers_{w}_over_{counts[0]}": first / out[f"engine_1_full_empty_workers_{w}"]["wall_s"] for w in counts[1:]
    }
    # On a shared machine the fastest run of each count is the one least slowed by other work.
    out["speedup_best_runs"] = {
        f"workers_{w}_over_{counts[0]}": best / min(r["wall_s"] for r in runs[w]) for w in counts[1:]
    }
    return out


def _stages(result: dict[str, Any], label: str, *names: str) -> float | None:
    """The sum of the named stages' times of one engine figure, if it was timed."""
    stages = result.get(label, {}).get("stages")
    return sum(stages[n] for n in names) if stages else None


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """The goal ratios that this run's figures allow (a run of selected cases gives some of them)."""
    r: dict[str, float] = {}

    def wall(label: str) -> float | None:
        return result[label]["wall_s"] if label in result else None

    e1, e2, e3, e4 = (wall(f"engine_{c}") for c in ("1_full_empty", "2_full_unchanged", "3_incremental", "4_dry_run"))
    copy, dlt, d3 = wall("copy"), wall("dlt_merge_full"), wall("dagster_3_incremental")
    e0, d0 = wall("engine_0_incremental_unchanged"), wall("dagster_0_incremental_unchanged")
    if e1 and copy:
        r["case1_vs_copy_rows_per_s"] = copy / e1
    floor = wall("copy_bookkeeping")
    if copy and floor:
        r["copy_bookkeeping_over_copy"] = floor / copy
    if e1 and floor:
        r["case1_vs_copy_bookkeeping_rows_per_s"] = floor / e1
    if e0 is not None:
        r["case0_engine_s"] = e0
    if e0 is not None and d0 is not None:
        r["dagster_minus_engine_case0_s"] = d0 - e0
    if e0 is not None and e1 and e3:
        r["case3_minus_case0_over_case1"] = (e3 - e0) / e1
    if e1 and dlt:
        r["case1_vs_dlt_speed"] = dlt / e1
    if e1 and e2:
        r["case2_over_case1_time"] = e2 / e1
    shared = _stages(result, "engine_2_full_unchanged", "extract", "transform")
    if e1 and shared is not None:
        # Case 2 reads and maps the whole source as case 1 does: the share of case 1 those stages already take.
        r["case2_extract_transform_over_case1"] = shared / e1
    source_read = wall("read_source")
    if copy and floor and source_read:
        # Case 1 writes at least the format's floor after reading the source: over the goal's budget (2 x COPY).
        r["floor_plus_read_source_over_2_copy"] = (floor + source_read) / (2 * copy)
    if e1 and e3:
        r["case3_over_case1_time"] = e3 / e1
    if e3 and e4:
        r["case4_over_case3_time"] = e4 / e3
    e5 = wall("engine_5_full_delete")
    if e1 and e5:
        r["case5_over_case1_time"] = e5 / e1
    if e3 and d3:
        r["dagster_minus_engine_case3_s"] = d3 - e3
    e6, scan = wall("engine_6_incremental_delete"), wall("key_scan")
    if e3 and e6 and scan:
        r["case6_over_case3_plus_key_scan"] = e6 / (e3 + scan)
    if e1 and scan:
        r["key_scan_over_case1"] = scan / e1
    e7 = wall("engine_7_incremental_first")
    if e1 and e7:
        r["case7_over_case1_time"] = e7 / e1
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20k rows from the PostgreSQL source only, one run per figure: a check under 2 minutes",
    )
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--sources", default=None, help="postgresql and/or sqlite (default: both; --quick: postgresql)")
    parser.add_argument(
        "--runs", type=int, default=None, help="timed runs per figure, median reported (default 3; --quick: 1)"
    )
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--no-dlt", dest="dlt", action="store_false", help="skip the dlt baseline")
    parser.add_argument(
        "--workers",
        default=None,
        help="only case 1 (PostgreSQL source), once per comma-separated `parallel.workers` count, e.g. 1,2",
    )
    parser.add_argument(
        "--targets",
        default="postgresql",
        help="postgresql, mariadb and/or sqlite: MariaDB and SQLite targets time cases 1 and 2 beside their own "
        "bulk floor (LOAD DATA LOCAL INFILE; executemany in one transaction)",
    )
    parser.add_argument(
        "--cases",
        default="0,1,2,3,4,5,6,7",
        help="comma-separated cases to time (default: all eight); an empty string times the floors only",
    )
    parser.add_argument(
        "--floors",
        default="copy,copy_upsert,copy_bookkeeping",
        help="comma-separated anchors to time before the cases: copy, copy_upsert and copy_bookkeeping (the v3 write "
        "floor, with read_source and hash from the same runs); an empty string times none",
    )
    parser.add_argument(
        "--runners", default="engine,dagster", help="engine and/or dagster (e.g. --runners engine for a memory check)"
    )
    args = parser.parse_args()
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.runs is None:
        # A quick check times each figure once: every timed run is a fresh process, and the Dagster ones
        # spend seconds importing, so three of each would not fit in two minutes on this machine.
        args.runs = 1 if args.quick else 3
    if args.sources is None:
        args.sources = "postgresql" if args.quick else "postgresql,sqlite"
    if args.dlt:
        try:
            import dlt  # noqa: F401
        except ImportError as exc:
            args.dlt = False
            print(f"dlt baseline skipped: {exc} (install it with `make bench-setup` / pip install -e '.[bench]')")
    ensure_database()
    if args.workers:
        main_workers(sizes, args)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        work = Path(tmp)
        os.environ["SYNC_PIPELINES_STAGING_DIR"] = str(work / "staging")
        targets = args.targets.split(",")
        if "mariadb" in targets:
            ensure_mariadb()
        for source in args.sources.split(","):
            for size in sizes:
                for target in targets:
                    if target == "postgresql":
                        result = measure(size, source, work, args)
                        result["ratios"] = ratios(result)
                    else:
                        result = measure_target(size, source, target, work, args)
                    results.append(result)
    print_table(results)
    print(f"\nJSON: {write_report('bench', results, args)}")


def main_workers(sizes: list[int], args: argparse.Namespace) -> None:
    """``--workers``: case 1 per worker count, the speed-up over the first count, and the JSON report."""
    results = []
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        work = Path(tmp)
        os.environ["SYNC_PIPELINES_STAGING_DIR"] = str(work / "staging")
        for size in sizes:
            results.append(measure_workers(size, work, args))
    # Peak RSS is the main process's: worker processes are forked by a fork server, not counted here.
    print(f"\n{'rows':>8} {'case':<34} {'median s':>9} {'rows/s':>10} {'peak MB':>8}  runs")
    for res in results:
        for label, fig in res.items():
            if isinstance(fig, dict) and "wall_s" in fig:
                print(
                    f"{res['rows']:>8} {label:<34} {fig['wall_s']:9.3f} {res['rows'] / fig['wall_s']:10.0f} "
                    f"{fig['peak_rss_mb']:8.0f}  {fig['runs']}"
                )
        for name, value in res["speedup"].items():
            print(f"{res['rows']:>8} speed-up {name:<25} {value:9.2f} x  (medians)")
        for name, value in res["speedup_best_runs"].items():
            print(f"{res['rows']:>8} speed-up {name:<25} {value:9.2f} x  (fastest runs)")
    print(f"\nJSON: {write_report('bench-workers', results, args)}")


def write_report(prefix: str, results: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    """Write the figures, the machine and the arguments to ``bench/results/<prefix>-<when>.json``."""
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report = {
        "when": when,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "args": vars(args),
        "results": results,
    }
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{prefix}-{when.replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    return path


GOALS = {"copy_bookkeeping_over_copy": 2.0, "case0_engine_s": 1.0}
"""Upper bounds that the printed table checks (at 1M rows they are the goals; smaller sizes are indications)."""


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'source':<10} {'target':<10} {'rows':>8} {'case':<32} {'median s':>9} {'rows/s':>10} {'peak MB':>8}"
        "  extract / transform / load s"
    )
    for res in results:
        for label, fig in res.items():
            if isinstance(fig, dict) and "wall_s" in fig:
                stages = "  " + " / ".join(f"{v:.3f}" for v in fig["stages"].values()) if "stages" in fig else ""
                print(
                    f"{res['source']:<10} {res.get('target', 'postgresql'):<10} {res['rows']:>8} {label:<32} "
                    f"{fig['wall_s']:9.3f} "
                    f"{res['rows'] / fig['wall_s']:10.0f} {fig['peak_rss_mb']:8.0f}{stages}"
                )
        for name, value in res["ratios"].items():
            goal = GOALS.get(name)
            verdict = f"  goal <= {goal}: {'met' if value <= goal else 'NOT met'}" if goal is not None else ""
            print(f"{'':<10} {'':<10} {'':>8} ratio {name:<32} {value:8.3f}{verdict}")
    by_source: dict[str, dict[int, float]] = {}
    for res in results:
        if "engine_1_full_empty" in res and res.get("target", "postgresql") == "postgresql":
            by_source.setdefault(res["source"], {})[res["rows"]] = res["engine_1_full_empty"]["peak_rss_mb"]
    for source, peaks in by_source.items():
        if len(peaks) > 1:
            small, large = min(peaks), max(peaks)
            print(f"{source}: peak RSS at {large} rows / at {small} rows = {peaks[large] / peaks[small]:.2f}")


if __name__ == "__main__":
    main()
