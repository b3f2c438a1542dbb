"""A partitioned backfill on Celery workers: real RabbitMQ broker, real PostgreSQL instance storage.

Two ``sync-pipelines worker`` processes consume one queue of the RabbitMQ at 127.0.0.1:5672
(``scripts/ensure-services`` starts it). The Dagster instance keeps runs, events and schedules in a
throwaway PostgreSQL database. The ``erp_orders`` sync of ``syncs/`` (pointed at PostgreSQL source
and target databases) is backfilled one run per day partition, as the instance's one-run-per-sync
rule would launch them, with ``SYNC_PIPELINES_EXECUTOR=celery``: every step goes to the broker.

Which worker executed a step is read twice, independently: from the engine event the worker writes
into the event log (``Celery worker: <name>@<host>``), and from the process id on the step's own
events, whose parent must be that worker's process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from celery import Celery
from click.testing import CliRunner
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._serdes import serialize_value
from dagster_postgres import PostgresRunStorage

from sync_pipelines.cli import main
from sync_pipelines.cli.worker import worker_command, worker_environment
from sync_pipelines.config import load_configs
from sync_pipelines.errors import ExecutorSettingError
from sync_pipelines.orchestration import Stage, Tag, build_definitions, execute_sync, job_name, step_key
from sync_pipelines.orchestration.executors import (
    BACKEND_ENV,
    BROKER_ENV,
    EXECUTOR_ENV,
    QUEUE_ENV,
    celery_broker,
)
from sync_pipelines.orchestration.names import CONFLICT_CHECK_NAME
from sync_pipelines.orchestration.record_checks import FAILED_RECORDS_CHECK_NAME
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import SourceTable, make_source, write_config
from sync_pipelines_tests.support.databases import PG_ADMIN_URL, Databases, make_databases, server_database

REPO = Path(__file__).resolve().parents[2]
SYNC = "erp_orders"
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
WORKERS = ("alpha", "beta")
# The steps of one run: extract, transform, load, then the conflict check on the asset.
STEPS = {step_key(SYNC, stage): stage.value for stage in Stage} | {
    f"{SYNC}_{CONFLICT_CHECK_NAME}": "check",
    f"{SYNC}_{FAILED_RECORDS_CHECK_NAME}": "failed-records check",
}
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
CLI = [sys.executable, "-c", "from sync_pipelines.cli import main; main()"]


# ----------------------------------------------------------------------------- data


def _source_rows() -> list[dict[str, Any]]:
    """Five orders per day (wall-clock days of Asia/Shanghai, the sync's timezone), one of them a draft."""
    rows = []
    for d, day in enumerate(DAYS):
        midnight = dt.datetime.fromisoformat(day)
        for i in range(5):
            order_id = 100 * (d + 1) + i
            rows.append(
                {
                    "id": order_id,
                    "customer_id": 7 + i,
                    "sku": f"SKU-{order_id}",
                    "qty": i + 1,
                    "unit_price": Decimal(f"{i + 1}9.95"),
                    "status": "draft" if i == 4 else ("paid" if i % 2 else "open"),
                    "note": None if i == 0 else f"order {order_id}",
                    "created_at": midnight + dt.timedelta(hours=i),
                    # The first order of each day sits on midnight: it belongs to that day only.
                    "updated_at": midnight + dt.timedelta(hours=5 * i, minutes=i),
                }
            )
    return rows


ERP_ORDERS = SourceTable(
    "orders",
    {
        "customer_id": sa.Integer,
        "sku": sa.String(40),
        "qty": sa.Integer,
        "unit_price": sa.Numeric(12, 2),
        "status": sa.String(20),
        "note": sa.String(100),
        "created_at": sa.DateTime,
        "updated_at": sa.DateTime,
    },
)


def _shipped_config(dbs: Databases) -> dict[str, Any]:
    """``syncs/erp_orders.yaml`` as shipped, reading and writing the test's PostgreSQL databases."""
    data = yaml.safe_load((REPO / "syncs" / f"{SYNC}.yaml").read_text(encoding="utf-8"))
    assert data["partitions"] == {"granularity": "daily", "start": "2024-03-01", "backfill": "multi_run"}
    data["source"]["url"] = dbs.source_url
    data["target"]["url"] = dbs.target_url
    data["schedule"]["enabled"] = False
    return dict(data)


def _target_rows(url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT order_id, customer_id, sku, qty, unit_price, status, note, created_at, updated_at, "
                "source_system FROM orders ORDER BY order_id"
            )
        )
        result = [tuple(row) for row in rows]
    engine.dispose()
    return result


def _expected_rows() -> list[tuple[Any, ...]]:
    return [
        (
            row["id"],
            row["customer_id"],
            row["sku"],
            row["qty"],
            row["unit_price"],
            row["status"],
            row["note"] if row["note"] is not None else "",
            row["created_at"],
            row["updated_at"],
            "erp",
        )
        for row in _source_rows()
        if row["status"] != "draft"
    ]


# ----------------------------------------------------------------------------- choosing the executor


def _location(executor: str | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The job ``sync_erp_orders`` and the asset-graph job of the project's ``syncs/``, with ``executor`` chosen."""
    if executor is None:
        monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    else:
        monkeypatch.setenv(EXECUTOR_ENV, executor)
    defs = build_definitions(load_configs(REPO / "syncs"))
    return defs.resolve_job_def(job_name(SYNC)), defs.resolve_implicit_global_asset_job_def()


def _executor_config(job: Any) -> dict[str, Any]:
    """The job's executor config as Dagster resolves it when a run starts (environment variables read)."""
    resolved = job.executor_def.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    return dict(resolved.value["config"])


def test_the_executor_is_in_process_unless_celery_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [job.executor_def.name for job in _location(None, monkeypatch)] == ["in_process", "in_process"]

    monkeypatch.delenv(BROKER_ENV, raising=False)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setenv(QUEUE_ENV, "sync_staging")
    job, graph_job = _location("Celery", monkeypatch)
    assert job.executor_def.name == graph_job.executor_def.name == "celery"
    config = _executor_config(job)
    assert config["broker"] == "pyamqp://guest@127.0.0.1:5672//" and config["backend"] == "rpc://"
    assert config["config_source"] == {"task_default_queue": "sync_staging"}

    expected = "SYNC_PIPELINES_EXECUTOR='dask': expected one of in_process, celery"
    with pytest.raises(ExecutorSettingError, match=expected):
        _location("dask", monkeypatch)


def test_a_broker_password_stays_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's executor refers to the variables; runs and workers read the URLs from them when they start."""
    secret = "pyamqp://sync:s3cret-pw@rabbit.internal:5672/prod"
    monkeypatch.setenv(BROKER_ENV, secret)
    monkeypatch.setenv(BACKEND_ENV, "redis://:other-pw@cache:6379/1")
    job, _ = _location("celery", monkeypatch)
    snapshot = serialize_value(job.get_job_snapshot())
    assert "s3cret-pw" not in snapshot and "other-pw" not in snapshot
    assert _executor_config(job)["broker"] == secret

    command = worker_command("alpha", 2, "INFO", ())
    assert command[1:] == [
        *("-m", "celery", "-A", "dagster_celery.app", "worker", "-n", "alpha@%h", "-c", "2"),
        *("--prefetch-multiplier", "1", "-l", "INFO", "-Q", "dagster"),
    ]
    assert not any("s3cret-pw" in part for part in command)
    env = worker_environment(None)
    assert env["CELERY_BROKER_URL"] == secret and env["CELERY_RESULT_BACKEND"] == "redis://:other-pw@cache:6379/1"

    # Read when a run starts, not captured when the definitions loaded: a rotated password applies at once.
    monkeypatch.setenv(BROKER_ENV, secret.replace("s3cret-pw", "rotated-pw"))
    assert _executor_config(job)["broker"] == "pyamqp://sync:rotated-pw@rabbit.internal:5672/prod"


def test_the_worker_command_is_listed() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0, result.output
    assert "SYNC_PIPELINES_EXECUTOR=celery" in result.output and "--concurrency" in result.output


# ----------------------------------------------------------------------------- instance and workers


@pytest.fixture
def pg_instance(tmp_path: Path) -> Iterator[str]:
    """``$DAGSTER_HOME/dagster.yaml`` keeping runs, events and schedules in a throwaway PostgreSQL database."""
    database = server_database(PG_ADMIN_URL, "postgresql")
    name = sa.make_url(next(database)).database
    settings = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": "127.0.0.1",
                    "port": 5432,
                    "username": "postgres",
                    "db_name": name,
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "telemetry": {"enabled": False},
    }
    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    try:
        yield name
    finally:
        for _ in database:
            pass


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _stop(workers: list[Worker]) -> None:
    """SIGTERM (Celery's warm shutdown) to each worker, then SIGKILL to what is left of its process group."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(STOP_TIMEOUT_S)
        # Each worker leads its own process group: this reaches its pool children too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()


def _wait_consuming(workers: list[Worker], queue: str) -> None:
    """Until every worker answers on the broker and consumes ``queue`` (so the broker deals steps to all)."""
    app = Celery(broker=celery_broker())
    wanted = {worker.name for worker in workers}
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            for worker in workers:
                assert worker.process.poll() is None, f"worker {worker.name} exited:\n{worker.output()}"
            replies = app.control.inspect(timeout=1.0).active_queues() or {}
            consuming = {
                host.split("@")[0] for host, queues in replies.items() if any(q["name"] == queue for q in queues)
            }
            if wanted <= consuming:
                return
            assert time.monotonic() < deadline, (
                f"workers consuming {queue}: {sorted(consuming)}, wanted {sorted(wanted)}"
            )
            time.sleep(0.5)
    finally:
        app.close()


def _delete_queue(queue: str) -> None:
    """Remove the test's queue from the broker (the workers declared it durable)."""
    app = Celery(broker=celery_broker())
    try:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    finally:
        app.close()


@pytest.fixture
def celery_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Worker]]:
    """Two ``sync-pipelines worker`` processes on a queue of their own, stopped at teardown whatever happened."""
    queue = f"sync_test_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    monkeypatch.setenv(QUEUE_ENV, queue)
    monkeypatch.delenv(BROKER_ENV, raising=False)  # the default: RabbitMQ on 127.0.0.1:5672
    monkeypatch.delenv(BACKEND_ENV, raising=False)  # the default: rpc://, results over the broker
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    suffix = uuid.uuid4().hex[:6]
    workers: list[Worker] = []
    try:
        for name in WORKERS:
            log = tmp_path / f"worker-{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [*CLI, "worker", "--name", f"{name}-{suffix}", "--concurrency", "1", "--loglevel", "INFO"],
                    cwd=tmp_path,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            workers.append(Worker(f"{name}-{suffix}", process, log))
        _wait_consuming(workers, queue)
        yield workers
    finally:
        _stop(workers)
        _delete_queue(queue)


# ----------------------------------------------------------------------------- what the instance recorded


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _step_workers(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> ``<name>@<host>`` of the Celery worker that reported executing it."""
    found: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        metadata = event.engine_event_data.metadata
        if "Celery worker" in metadata:
            found[event.step_key] = str(metadata["Celery worker"].value)
    return found


def _step_pids(instance: DagsterInstance, run_id: str) -> dict[str, set[int]]:
    """Step key -> process ids on its STEP_START and STEP_SUCCESS events."""
    pids: dict[str, set[int]] = defaultdict(set)
    for entry in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}):
        event = entry.dagster_event
        if event is not None and event.step_key is not None and event.pid is not None:
            pids[event.step_key].add(event.pid)
    return pids


# ----------------------------------------------------------------------------- the test


@pytest.mark.timeout(240)
# dagster-celery registers its step task anew for each step it submits; Celery warns, and keeps the first.
@pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
def test_partitioned_backfill_runs_on_two_celery_workers(
    tmp_path: Path, pg_instance: str, celery_workers: list[Worker]
) -> None:
    dbs_gen = make_databases("postgresql", tmp_path)
    dbs = next(dbs_gen)
    try:
        make_source(dbs.source_url, _source_rows(), ERP_ORDERS)
        write_config(tmp_path / "syncs", _shipped_config(dbs))
        worker_pids = {worker.process.pid: worker.name for worker in celery_workers}
        started = time.monotonic()

        with DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            reports = {
                day: execute_sync(SYNC, instance=instance, config_directory=tmp_path / "syncs", partition=day)
                for day in DAYS
            }
        elapsed = time.monotonic() - started
        for day, report in reports.items():
            assert report.status is RunStatus.COMPLETED, (
                day,
                report.error,
                [w.output()[-3000:] for w in celery_workers],
            )
            assert report.counts["created"] == 4, (day, report.counts)

        # (b) the target holds exactly the source's non-draft orders, mapped.
        assert _target_rows(dbs.target_url) == _expected_rows()

        # (c) a fresh instance, reading the PostgreSQL database, shows one successful run per partition.
        with DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            runs = instance.get_runs(RunsFilter(tags={Tag.SYNC_NAME.value: SYNC}))
            assert sorted(run.tags[PARTITION_NAME_TAG] for run in runs) == DAYS
            assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
            assert {run.run_id for run in runs} == {report.run_id for report in reports.values()}

            # (a) which worker executed each step, from the worker's own engine event and from the step's pid.
            placement: dict[str, dict[str, str]] = {}
            for run in runs:
                by_name = _step_workers(instance, run.run_id)
                pids = _step_pids(instance, run.run_id)
                assert set(by_name) == set(pids) == set(STEPS), (by_name, pids)
                for step, host in by_name.items():
                    name = host.split("@")[0]
                    assert name in worker_pids.values(), host
                    parents = {worker_pids.get(_parent_pid(pid) or -1) for pid in pids[step]}
                    assert parents == {name}, (step, host, pids[step])
                    assert os.getpid() not in pids[step]
                placement[run.tags[PARTITION_NAME_TAG]] = {STEPS[step]: by_name[step].split("@")[0] for step in STEPS}

        pg = sa.create_engine(sa.make_url(PG_ADMIN_URL).set(database=pg_instance))
        with pg.connect() as conn:
            stored = dict(conn.execute(sa.text("SELECT run_id, status FROM runs")).all())
        pg.dispose()
        assert stored == {report.run_id: "SUCCESS" for report in reports.values()}

        used = {name for steps in placement.values() for name in steps.values()}
        print(f"\nbackfill of {len(DAYS)} partitions on celery workers in {elapsed:.1f} s")
        for day in DAYS:
            print(f"  {day}: {placement[day]}")
        assert used == {worker.name for worker in celery_workers}, placement
    finally:
        for _ in dbs_gen:
            pass
