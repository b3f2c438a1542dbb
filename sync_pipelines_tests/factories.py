"""Test data shared by the test modules: source tables, sync configurations, engine runs and the CLI runner.

A source table is a :class:`SourceTable` (its name and columns, the integer key ``id`` first);
:func:`make_source` creates it with rows on a SQLite file, a URL or a test's source database.
:func:`sql_sync` builds a SQL-to-SQL configuration and :func:`write_config` writes one into a
folder of syncs; :func:`invoke` runs the ``sync-pipelines`` command in-process.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result
from dagster import DagsterInstance, Definitions, ExecuteInProcessResult

from sync_pipelines.cli import main
from sync_pipelines.config import SyncConfig, load_configs
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.orchestration import build_definitions, job_name
from sync_pipelines_tests.support.databases import Databases

# --- source tables


@dataclass(frozen=True)
class SourceTable:
    """A source table: ``id`` (integer, the key) followed by ``columns`` (name -> SQLAlchemy type)."""

    name: str
    columns: Mapping[str, Any] = field(default_factory=dict)

    def table(self, metadata: sa.MetaData) -> sa.Table:
        return sa.Table(
            self.name,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            *(sa.Column(name, type_) for name, type_ in self.columns.items()),
        )


ORDERS = SourceTable(
    "orders",
    {
        "customer": sa.String(50),
        "qty": sa.String(20),  # text, so that a row can fail its cast to integer
        "price": sa.Numeric(12, 2),
        "status": sa.String(20),
        "updated_at": sa.DateTime,
    },
)
"""The ERP's orders, synced into ``wh_orders`` by :func:`orders_config`."""

PEOPLE = SourceTable("people", {"name": sa.String(50), "age": sa.String(10)})
"""People whose ``age`` is text, so that a row can fail its cast (see :data:`PEOPLE_MAPPING`)."""

DATED_PEOPLE = SourceTable("people", {"name": sa.String(50), "age": sa.String(10), "updated_at": sa.String(30)})
""":data:`PEOPLE` with an ``updated_at`` written as text (see :data:`DATED_PEOPLE_MAPPING`)."""

NAMED = SourceTable("people", {"name": sa.Text})
"""People with a name only, mapped as they are (no ``mapping``)."""


def named_people(count: int) -> list[dict[str, Any]]:
    """Rows 1..``count`` of :data:`NAMED`."""
    return [{"id": i, "name": f"p{i}"} for i in range(1, count + 1)]


PEOPLE_MAPPING = {"id": {"type": "integer"}, "name": {"type": "string"}, "age": {"type": "integer"}}
PEOPLE_ROWS = [{"id": i, "name": f"p{i}", "age": str(20 + i)} for i in range(1, 10)]
"""Nine rows of :data:`PEOPLE` that all convert."""
BAD_PERSON = {"id": 10, "name": "p10", "age": "unknown"}
"""A row of :data:`PEOPLE` whose age fails its cast."""
DATED_PEOPLE_MAPPING = {**PEOPLE_MAPPING, "updated_at": {"type": "datetime"}}


def _url(where: Databases | Path | str) -> str:
    if isinstance(where, Databases):
        return where.source_url
    if isinstance(where, Path):
        return f"sqlite:///{where}"
    return where


def make_source(
    where: Databases | Path | str,
    rows: Iterable[Mapping[str, Any]] = (),
    table: SourceTable = ORDERS,
    *,
    replace: bool = False,
) -> sa.Table:
    """Create ``table`` with ``rows`` in a test's source database, a SQLite file or at a URL.

    With ``replace``, rows already in an existing table are deleted first.
    """
    metadata = sa.MetaData()
    created = table.table(metadata)
    engine = sa.create_engine(_url(where))
    try:
        metadata.create_all(engine)
        rows = list(rows)
        with engine.begin() as conn:
            if replace:
                conn.execute(created.delete())
            if rows:
                conn.execute(created.insert(), rows)
    finally:
        engine.dispose()
    return created


# --- configurations


def sql_sync(
    name: str,
    source: Path | str,
    target: Path | str,
    *,
    table: str = "people",
    target_table: str | None = None,
    mapping: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A SQL-to-SQL sync of ``table`` into ``target_table`` (the sync's name by default), keyed on ``id``.

    ``source`` and ``target`` are URLs, or paths of SQLite files; ``fields`` are further top-level fields.
    """
    data: dict[str, Any] = {
        "name": name,
        "source": {"kind": "sql", "url": _url(source), "table": table},
        "target": {"kind": "sql", "url": _url(target), "table": target_table or name, "key": ["id"]},
    }
    if mapping is not None:
        data["mapping"] = dict(mapping)
    data.update(fields)
    return data


def write_config(folder: Path, config: Mapping[str, Any] | SyncConfig, **overrides: Any) -> dict[str, Any]:
    """Write ``config`` (with top-level ``overrides``) as ``<folder>/<name>.yaml``; returns what was written."""
    if isinstance(config, SyncConfig):
        data = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data["source"]["kind"], data["target"]["kind"] = config.source.kind, config.target.kind  # defaults are left out
    else:
        data = dict(config)
    data.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return data


ORDERS_T0 = dt.datetime(2024, 3, 1, 8, 0, 0)


def order(i: int, **overrides: Any) -> dict[str, Any]:
    """Row ``i`` of :data:`ORDERS`."""
    row = {
        "id": i,
        "customer": f"c{i % 7}",
        "qty": str(i % 5 + 1),
        "price": Decimal(i) / 4,
        "status": "open",
        "updated_at": ORDERS_T0 + dt.timedelta(minutes=i // 10),
    }
    row.update(overrides)
    return row


def orders_config(dbs: Databases, **overrides: Any) -> SyncConfig:
    """An incremental sync of :data:`ORDERS` into ``wh_orders`` (key ``order_id``), batches of 7."""
    data: dict[str, Any] = {
        "name": "orders_sync",
        "source": {"kind": "sql", "url": dbs.source_url, "table": "orders"},
        "target": {"kind": "sql", "url": dbs.target_url, "table": "wh_orders", "key": ["order_id"]},
        "mapping": {
            "order_id": "id",
            "customer": {"source": "customer", "type": "string"},
            "qty": {"type": "integer"},
            "price": {"type": "decimal(12,2)"},
            "status": {"source": "status", "default": "unknown"},
            "updated_at": {"type": "datetime"},
            "origin": {"constant": "erp"},
        },
        "mode": "incremental",
        "cursor": "updated_at",
        "batch_size": 7,
        "max_failure_ratio": 0.2,
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


def full_orders_config(dbs: Databases, **overrides: Any) -> SyncConfig:
    """:func:`orders_config` as a full sync."""
    return orders_config(dbs, mode="full", cursor=None, **overrides)


def host_config(url: str, target_url: str, index: str, **source: Any) -> SyncConfig:
    """Host metrics from the Elasticsearch ``url`` into the CMDB at ``target_url``."""
    return SyncConfig.model_validate(
        {
            "name": "host_metrics",
            "source": {"kind": "elasticsearch_hosts", "endpoint": url, "index": index, **source},
            "target": {"kind": "cmdb", "url": target_url},
            "max_failure_ratio": 0.5,
        }
    )


def host_sync_config(es_url: str, target_url: str, index: str, **extra: Any) -> dict[str, Any]:
    """The ``host_metrics`` sync as its file says it: a 30-day range, a Quartz schedule in Shanghai time."""
    return {
        "name": "host_metrics",
        "description": "Host resources from Elasticsearch into the CMDB.",
        "source": {"kind": "elasticsearch_hosts", "endpoint": es_url, "index": index, "query_time_range": "30d"},
        "target": {"kind": "cmdb", "url": target_url},
        "schedule": {"cron": "0 0 2 * * ?"},
        "timezone": "Asia/Shanghai",
        "max_failure_ratio": 0.5,
        **extra,
    }


def three_syncs(root: Path) -> Path:
    """``root/syncs`` with three syncs of :data:`PEOPLE` into ``root/target.db``: ``clean`` completes
    (and is scheduled), ``tolerant`` ends partial, ``strict`` fails."""
    make_source(root / "clean.db", PEOPLE_ROWS, PEOPLE)
    make_source(root / "dirty.db", [*PEOPLE_ROWS, BAD_PERSON], PEOPLE)
    folder = root / "syncs"
    target = root / "target.db"
    clean = sql_sync("clean", root / "clean.db", target, mapping=PEOPLE_MAPPING)
    write_config(folder, clean, schedule={"cron": "0 0 2 * * ?", "enabled": True})
    write_config(folder, sql_sync("tolerant", root / "dirty.db", target, mapping=PEOPLE_MAPPING), max_failure_ratio=0.2)
    write_config(folder, sql_sync("strict", root / "dirty.db", target, mapping=PEOPLE_MAPPING), max_failure_ratio=0)
    return folder


# --- runs and what they wrote


def run(cfg: SyncConfig, run_id: str, **kwargs: Any) -> Any:
    """Run ``cfg`` through the engine alone (no Dagster)."""
    return run_sync(cfg, RunOptions(run_id=run_id, **kwargs))


def target_rows(dbs: Databases) -> dict[int, dict[str, Any]]:
    """The rows of ``wh_orders`` by ``order_id``."""
    engine = dbs.target()
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM wh_orders")).mappings().all()
    engine.dispose()
    return {int(r["order_id"]): dict(r) for r in rows}


def bookkeeping(dbs: Databases, sql: str) -> list[Any]:
    """The rows ``sql`` reads from the target database (the sync's bookkeeping tables)."""
    engine = dbs.target()
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text(sql)).all())
    engine.dispose()
    return rows


def recorded(target: Databases | str, **where: Any) -> list[dict[str, Any]]:
    """Every record outcome in the target database, one dict per record as a ``_sync_records`` row reads
    (records kept in record sets expanded, their ``id`` None), in the order they were written; ``where``
    keeps those whose columns equal the given values (e.g. ``run_id="run-1", action="created"``)."""
    from sync_pipelines.connectors import record_sets

    url = target.target_url if isinstance(target, Databases) else target
    engine = sa.create_engine(url)
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if inspector.has_table(record_sets.RECORD_SETS_TABLE):
            sets = record_sets.record_sets_table(sa.MetaData())
            for row in conn.execute(sa.select(sets).order_by(sets.c.id)).mappings():
                out += list(record_sets.iter_set_records(row))
        if inspector.has_table("_sync_records"):
            rows = conn.execute(sa.text("SELECT * FROM _sync_records ORDER BY id")).mappings()
            out += [dict(r) for r in rows]
    engine.dispose()
    out.sort(key=lambda r: (r["run_id"], r["batch"] if r["batch"] >= 0 else 1 << 30, r["id"] is not None, r["id"] or 0))
    return [r for r in out if all(r.get(k) == v for k, v in where.items())]


def update_source(dbs: Databases, table: sa.Table, ids: list[int], **values: Any) -> None:
    """Set ``values`` on the source rows ``ids``."""
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id.in_(ids)).values(**values))
    engine.dispose()


def edit_target(dbs: Databases, order_id: int, **values: Any) -> None:
    """Edit a ``wh_orders`` row on the target, as a user of the target would."""
    engine = dbs.target()
    table = sa.Table("wh_orders", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.order_id == order_id).values(**values))
    engine.dispose()


def target_count(path: Path, table: str) -> int | None:
    """Rows of ``table`` in the SQLite file ``path``; None when the table does not exist."""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return None
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


class Sync:
    """One sync of :data:`DATED_PEOPLE` on SQLite files in ``tmp_path``, run through its Dagster job."""

    def __init__(self, tmp_path: Path, name: str = "people", **overrides: Any):
        self.name = name
        self.source = tmp_path / "source.db"
        self.target = tmp_path / "target.db"
        self.folder = tmp_path / "syncs"
        config = sql_sync(
            name,
            self.source,
            self.target,
            mapping=DATED_PEOPLE_MAPPING,
            description=f"People into {name}.",
            mode="full",
        )
        write_config(self.folder, config, **overrides)

    def defs(self) -> Definitions:
        return build_definitions(load_configs(self.folder))

    def run(self, **run_config: Any) -> ExecuteInProcessResult:
        job = self.defs().resolve_job_def(job_name(self.name))
        return job.execute_in_process(run_config=run_config, instance=DagsterInstance.get(), raise_on_error=False)

    def rows(self) -> int | None:
        return target_count(self.target, self.name)


# --- the command line


def invoke(*args: str | Path, config_dir: Path | None = None, catch_exceptions: bool = False) -> Result:
    """Run ``sync-pipelines ARGS`` in-process (on the syncs of ``config_dir`` when given)."""
    argv = [str(a) for a in args]
    if config_dir is not None:
        argv = ["--config-dir", str(config_dir), *argv]
    return CliRunner().invoke(main, argv, catch_exceptions=catch_exceptions)


def fill_template(path: Path, values: Mapping[str, str]) -> None:
    """Fill the ``<fill in: ...>`` placeholders of a ``new`` template: each key starts a placeholder's text.

    Every placeholder below ``name:`` must be filled (the modeline above it is not a placeholder).
    """
    text = path.read_text(encoding="utf-8")
    for description, value in values.items():
        text = re.sub(rf"<fill in: {re.escape(description)}[^>]*>", value, text)
    assert "<fill in" not in text.split("\nname:")[1]
    path.write_text(text, encoding="utf-8")


class Crash(Exception):
    """A failure injected into a load (a killed worker, a lost connection)."""


def fail_nth_upsert(monkeypatch: Any, n: int, message: str = "killed") -> Callable[[], None]:
    """Make the ``n``-th batch write of the SQL target raise :class:`Crash` (the batch rolls back whole).

    Returns what puts the real write back (the test's end does too)."""
    from sync_pipelines.engine.load import BatchLoader

    original = BatchLoader.write_plan
    calls = {"n": 0}

    def failing(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(message)
        original(self, conn, plan, batch)

    monkeypatch.setattr(BatchLoader, "write_plan", failing)
    return lambda: monkeypatch.setattr(BatchLoader, "write_plan", original)
