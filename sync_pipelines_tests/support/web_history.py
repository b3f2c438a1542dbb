"""A sync history on real SQLite databases for the history view's tests: runs, records, a conflict, a backfill.

``orders_sync`` copies 30 orders (order 3 has a quantity that is no number and fails). Its second
run, a full sync, updates order 5 and finds order 6 in conflict (changed in the source, and edited
by hand on the target). A later dry run and a backfill of two partitions complete the ledger.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sync_pipelines.config import SyncConfig, load_configs
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import ORDERS as ORDERS_TABLE
from sync_pipelines_tests.factories import make_source, write_config

T0 = dt.datetime(2026, 11, 20, 8, 0, 0)
SYNC = "orders_sync"
ORDERS = 30


@dataclass
class History:
    """Where the history is, and the ids of its runs."""

    config_dir: Path
    source_url: str
    target_url: str
    first: str
    second: str
    dry: str
    backfill_id: str

    def config(self) -> SyncConfig:
        """The configuration of ``orders_sync``."""
        [cfg] = load_configs(self.config_dir)
        return cfg


def _config(root: Path) -> dict[str, Any]:
    return {
        "name": SYNC,
        "description": "Orders from the ERP into the warehouse.",
        "source": {"kind": "sql", "url": f"sqlite:///{root / 'erp.db'}", "table": "orders"},
        "target": {
            "kind": "sql",
            "url": f"sqlite:///{root / 'warehouse.db'}",
            "table": "wh_orders",
            "key": ["order_id"],
        },
        "mapping": {
            "order_id": {"source": "id", "type": "integer"},
            "customer": {"type": "string"},
            "qty": {"type": "integer"},
            "price": {"type": "decimal(12,2)"},
            "status": {"type": "string"},
            "updated_at": {"type": "datetime"},
        },
        "mode": "incremental",
        "cursor": "updated_at",
        "batch_size": 10,
        "max_failure_ratio": 0.2,
        "history": {"entity": "orders"},
        "schedule": {"cron": "0 0 2 * * ?"},
        "timezone": "Asia/Shanghai",
    }


def _orders() -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "customer": f"customer {i % 7}",
            "qty": "n/a" if i == 3 else str(i % 5 + 1),
            "price": Decimal(i) / 4,
            "status": "open",
            "updated_at": T0 + dt.timedelta(minutes=i),
        }
        for i in range(1, ORDERS + 1)
    ]


def _execute(sql: str, url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


def _entry(run_id: str, trigger: Trigger, mode: str, started: dt.datetime, **values: Any) -> RunEntry:
    counts = values.pop("counts", {})
    entry = RunEntry(run_id, SYNC, trigger, mode, started_at=started, records_run_id=run_id, **values)
    entry.finished_at = started + dt.timedelta(seconds=3)
    entry.duration_s = 3.0
    entry.counts.update(counts)
    return entry


def build_history(root: Path) -> History:
    """Build the databases, the configuration folder and the runs of ``orders_sync`` under ``root``."""
    folder = root / "syncs"
    folder.mkdir(parents=True)
    data = write_config(folder, _config(root))
    history = History(
        folder, data["source"]["url"], data["target"]["url"], *(str(uuid.uuid4()) for _ in range(3)), "bf-0001"
    )
    make_source(history.source_url, _orders(), ORDERS_TABLE)
    cfg = history.config()
    run_sync(cfg, RunOptions(run_id=history.first))
    _execute(
        "UPDATE orders SET status = 'paid', updated_at = '2026-11-21 09:00:00' WHERE id IN (5, 6)", history.source_url
    )
    _execute("UPDATE wh_orders SET status = 'on hold' WHERE order_id = 6", history.target_url)
    second = run_sync(cfg, RunOptions(run_id=history.second, full_sync=True))
    first_counts = {"processed": 30, "succeeded": 29, "created": 29, "failed": 1}
    with open_ledger(cfg) as ledger:
        ledger.finish_run(
            _entry(history.first, Trigger.SCHEDULE, "incremental", T0, status=RunStatus.PARTIAL, counts=first_counts)
        )
        ledger.finish_run(
            _entry(
                history.second,
                Trigger.MANUAL,
                "full",
                T0 + dt.timedelta(days=1),
                status=second.status,
                user="alice",
                counts=second.counts.as_dict(),
            )
        )
        ledger.finish_run(
            _entry(
                history.dry, Trigger.MANUAL, "full", T0 + dt.timedelta(days=2), dry_run=True, status=RunStatus.FAILED
            )
        )
        for day, status in ((1, RunStatus.COMPLETED), (2, RunStatus.FAILED)):
            ledger.finish_run(
                _entry(
                    f"bf-run-{day}",
                    Trigger.BACKFILL,
                    f"partition 2026-11-0{day}",
                    T0 - dt.timedelta(days=10 - day),
                    status=status,
                    backfill_id=history.backfill_id,
                    counts={"processed": 12 * day, "created": 12 if day == 1 else 0},
                )
            )
    return history
