"""Shared pieces of the fault campaign: a source table, a config, row checksums and consistency checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from sync_pipelines.connectors.values import decode
from sync_pipelines_tests.factories import recorded
from sync_pipelines_tests.support.databases import Databases

T0 = dt.datetime(2024, 5, 1, 9, 0, 0)
REPO = Path(__file__).resolve().parents[2]
PHASES = ("extract", "transform", "load-txn", "between")


def source_table(metadata: sa.MetaData) -> sa.Table:
    """The source table ``items`` of the campaign."""
    return sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(60)),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("updated_at", sa.DateTime),
    )


def seed_source(dbs: Databases, count: int) -> None:
    """Create the source with ``count`` rows."""
    metadata = sa.MetaData()
    table = source_table(metadata)
    engine = dbs.source()
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [item(i, 0) for i in range(1, count + 1)])
    engine.dispose()


def item(i: int, round_no: int) -> dict[str, Any]:
    """Row ``i`` as written in round ``round_no``."""
    return {
        "id": i,
        "name": f"item-{i}-r{round_no}",
        "amount": Decimal(i * 7 + round_no) / 4,
        "updated_at": T0 + dt.timedelta(hours=round_no, seconds=i % 13),
    }


def change_source(dbs: Databases, rng: random.Random, round_no: int, updates: int, inserts: int) -> int:
    """Update ``updates`` random rows and add ``inserts`` new ones; returns how many rows changed."""
    metadata = sa.MetaData()
    table = source_table(metadata)
    engine = dbs.source()
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(table.c.id))]
        for i in rng.sample(ids, min(updates, len(ids))):
            row = item(i, round_no)
            conn.execute(table.update().where(table.c.id == i).values(**{k: v for k, v in row.items() if k != "id"}))
        top = max(ids) if ids else 0
        if inserts:
            conn.execute(table.insert(), [item(top + n, round_no) for n in range(1, inserts + 1)])
    engine.dispose()
    return min(updates, len(ids)) + inserts


def sync_config(dbs: Databases, batch_size: int = 3, name: str = "items_sync") -> dict[str, Any]:
    """An incremental sync of ``items`` into ``wh_items``."""
    return {
        "name": name,
        "source": {"kind": "sql", "url": dbs.source_url, "table": "items"},
        "target": {"kind": "sql", "url": dbs.target_url, "table": "wh_items", "key": ["id"]},
        "mapping": {
            "id": "id",
            "name": {"source": "name", "type": "string"},
            "amount": {"type": "decimal(12,2)"},
            "updated_at": {"type": "datetime"},
        },
        "mode": "incremental",
        "cursor": "updated_at",
        "batch_size": batch_size,
    }


def rest_sync_config(dbs: Databases, api_url: str, batch_size: int = 3, name: str = "items_sync") -> dict[str, Any]:
    """:func:`sync_config` reading ``items`` through the local API of :func:`api_items` (``rest`` source)."""
    return {
        **sync_config(dbs, batch_size, name),
        "source": {
            "kind": "rest",
            "url": f"{api_url}/page",
            "records": "data.items",
            "paginator": {"type": "page_number", "size": 7},
            "incremental": {"param": "updated_since"},
            "retries": {"attempts": 2, "backoff_s": 0},
        },
    }


def api_items(dbs: Databases) -> Callable[[], list[dict[str, Any]]]:
    """The source rows of ``items`` as the records of a JSON API (read afresh on each call)."""

    def read() -> list[dict[str, Any]]:
        engine = dbs.source()
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(source_table(sa.MetaData()))).mappings().all()
        finally:
            engine.dispose()
        return [
            {
                "id": row["id"],
                "name": row["name"],
                "amount": None if row["amount"] is None else str(row["amount"]),
                "updated_at": row["updated_at"].isoformat() + "Z",
            }
            for row in rows
        ]

    return read


def _norm(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, (Decimal, float)):
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    return str(value)


def _rows(url: str, table: str) -> dict[int, tuple[str, ...]]:
    engine = sa.create_engine(url)
    try:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(reflected.c.id, reflected.c.name, reflected.c.amount, reflected.c.updated_at)
            ).all()
    finally:
        engine.dispose()
    return {int(r[0]): tuple(_norm(v) for v in r) for r in rows}


def source_rows(dbs: Databases) -> dict[int, tuple[str, ...]]:
    """Every source row, normalised for comparison."""
    return _rows(dbs.source_url, "items")


def target_rows(dbs: Databases) -> dict[int, tuple[str, ...]]:
    """Every target row, normalised for comparison."""
    return _rows(dbs.target_url, "wh_items")


def checksum(rows: dict[int, tuple[str, ...]]) -> str:
    """A SHA-256 over every row, in key order."""
    digest = hashlib.sha256()
    for key in sorted(rows):
        digest.update(json.dumps(rows[key]).encode())
    return digest.hexdigest()


def target_query(dbs: Databases, sql: str) -> list[Any]:
    """Rows of one query on the target."""
    engine = dbs.target()
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def assert_no_duplicates(dbs: Databases) -> None:
    """No key appears twice in the target."""
    dupes = target_query(dbs, "SELECT id, COUNT(*) FROM wh_items GROUP BY id HAVING COUNT(*) > 1")
    assert dupes == [], f"duplicate keys in the target: {dupes}"


def assert_watermark_committed(dbs: Databases, name: str = "items_sync") -> None:
    """Every source row at or before the committed watermark is in the target with its current values."""
    state = target_query(dbs, f"SELECT watermark FROM _sync_state WHERE sync = '{name}'")
    if not state or state[0][0] is None:
        return
    mark = json.loads(state[0][0])
    cursor = decode(mark["cursor"])
    if isinstance(cursor, str):
        cursor = dt.datetime.fromisoformat(cursor)
    position = (cursor, *[decode(k) for k in mark["key"]])
    target = target_rows(dbs)
    engine = dbs.source()
    try:
        metadata = sa.MetaData()
        table = source_table(metadata)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.name, table.c.amount, table.c.updated_at)).all()
    finally:
        engine.dispose()
    behind = [r for r in rows if (r[3], r[0]) <= position]
    assert behind, "the watermark points before every source row"
    for row in behind:
        expected = tuple(_norm(v) for v in row)
        assert target.get(int(row[0])) == expected, f"watermark {mark} is past row {row[0]}, not committed as read"


def assert_bookkeeping_agrees(dbs: Databases, name: str = "items_sync") -> None:
    """The run history (``_sync_records`` and its record sets) names exactly the keys of the target, and the
    state names a run that recorded."""
    target_keys = set(target_rows(dbs))
    outcomes = [r for r in recorded(dbs, sync=name) if r["action"] in ("created", "updated")]
    keys = {json.loads(r["record_key"])["id"] for r in outcomes}
    assert keys == target_keys, f"records vs target differ: {sorted(keys ^ target_keys)[:10]}"
    state = target_query(dbs, f"SELECT last_run_id, version FROM _sync_state WHERE sync = '{name}'")
    if state and state[0][0] is not None:
        assert recorded(dbs, run_id=state[0][0]) or state[0][1] > 0


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child sync process: this repository first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def start_child(config: dict[str, Any], run_id: str, folder: Path, **env: str) -> subprocess.Popen[str]:
    """Start ``fault_runner`` on ``config`` as run ``run_id``."""
    path = folder / f"{run_id}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "sync_pipelines_tests.support.fault_runner", str(path), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**env),
        cwd=REPO,
    )


def wait_for_line(proc: subprocess.Popen[str], wanted: str, limit_s: float = 120.0) -> list[str]:
    """Read the child's stdout until a line equals ``wanted``; fails if the child ends first."""
    assert proc.stdout is not None
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.rstrip("\n") == wanted:
                found.set()
                return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    reader.join(limit_s)
    if not found.is_set():
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child never printed {wanted!r}; stdout={lines[-5:]} stderr={err[-2000:]}")
    return lines


def kill_cli_run_after_first_batch(folder: Path, sync: str = "items_sync") -> str:
    """Start ``sync-pipelines run SYNC`` (in ``folder``), SIGKILL it once its first batch is committed; its run id."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync_pipelines_tests.support.cli_fault_runner",
            "--config-dir",
            str(folder),
            "run",
            sync,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=child_env(SYNC_FAULT_PAUSE_AT="between:0"),
        cwd=REPO,
    )
    wait_for_line(child, "PAUSED")
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    [run] = DagsterInstance.get().get_runs(RunsFilter(tags={"sync/name": sync}))
    assert run.status is DagsterRunStatus.STARTED and run.tags["sync/pid"] == str(child.pid)
    return run.run_id
