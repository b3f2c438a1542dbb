"""Parallel full reads (``parallel:``): key-range chunks in worker processes, with the serial path's guarantees."""

from __future__ import annotations

import collections
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, ReexecutionOptions, build_reconstructable_job, execute_job
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.sql_source import SqlSourceReader, key_ranges
from sync_pipelines.engine import RunOptions, extract, load, pool, run_sync, transform
from sync_pipelines.engine.chunks import is_chunked
from sync_pipelines.errors import PermanentConnectorError, RunCancelled, StagingError
from sync_pipelines.orchestration import Stage, build_definitions, execute_sync, job_name, step_key
from sync_pipelines.orchestration import runs as runs_module
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import (
    DATED_PEOPLE,
    Sync,
    bookkeeping,
    make_source,
    order,
    orders_config,
    recorded,
    target_rows,
)
from sync_pipelines_tests.support.databases import Databases, make_databases

PARALLEL = {"workers": 2, "chunks": 3}


def full_config(dbs: Databases, **overrides: Any) -> SyncConfig:
    values: dict[str, Any] = {"mode": "full", "cursor": None, "delete_missing": True, "max_delete_ratio": 0.5}
    values.update(overrides)
    return orders_config(dbs, **values)


def rows_of(dbs: Databases, table: str) -> dict[int, tuple[Any, ...]]:
    engine = dbs.target()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT order_id, customer, qty, price, status, origin FROM {table}")).all()
    engine.dispose()
    return {int(r[0]): tuple(r[1:]) for r in rows}


def duplicated_outcomes(dbs: Databases, run_id: str) -> list[Any]:
    seen = Counter((r["record_key"], r["action"]) for r in recorded(dbs, run_id=run_id))
    return [(key, action, n) for (key, action), n in seen.items() if n > 1]


@pytest.mark.slow
def test_parallel_full_sync_matches_the_serial_one(dbs: Databases) -> None:
    table = make_source(dbs, [order(i) for i in range(1, 61)] + [order(61, qty="n/a")])
    serial = full_config(dbs, name="serial_orders", target={**_target(dbs), "table": "wh_serial"})
    parallel = full_config(dbs, parallel=PARALLEL)

    first = run_sync(parallel, RunOptions(run_id="p1"))
    baseline = run_sync(serial, RunOptions(run_id="s1"))
    assert first.status is RunStatus.PARTIAL and first.error is None
    assert first.counts.as_dict() == baseline.counts.as_dict()
    assert (first.counts.created, first.counts.failed) == (60, 1)
    assert rows_of(dbs, "wh_orders") == rows_of(dbs, "wh_serial")
    assert sorted(target_rows(dbs)) == list(range(1, 61))
    assert duplicated_outcomes(dbs, "p1") == []
    # Three chunks of 21, 20 and 20 rows in 7-row batches, each committed once and listed once.
    assert bookkeeping(dbs, "SELECT count(*), count(DISTINCT chunk) FROM _sync_batches WHERE run_id = 'p1'") == [(9, 3)]

    # Updates in every chunk and deletes spread over the key range: the same counts as the serial run.
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id.in_([2, 25, 59])).values(status="closed"))
        conn.execute(table.delete().where(table.c.id.in_([1, 30, 60])))
    engine.dispose()
    second = run_sync(parallel, RunOptions(run_id="p2"))
    again = run_sync(serial, RunOptions(run_id="s2"))
    assert second.counts.as_dict() == again.counts.as_dict()
    assert (second.counts.updated, second.counts.deleted, second.counts.unchanged) == (3, 3, 54)
    assert rows_of(dbs, "wh_orders") == rows_of(dbs, "wh_serial")
    assert sorted(target_rows(dbs)) == sorted(set(range(1, 61)) - {1, 30, 60})
    state = bookkeeping(dbs, "SELECT last_run_id, last_batch FROM _sync_state WHERE sync = 'orders_sync'")
    assert state == [("p2", 9)]


def _target(dbs: Databases) -> dict[str, Any]:
    return {"kind": "sql", "url": dbs.target_url, "table": "wh_orders", "key": ["order_id"]}


@pytest.mark.slow
def test_a_failed_chunk_then_reexecution_gives_exactly_the_source(dbs: Databases, tmp_path: Path) -> None:
    make_source(dbs, [order(i) for i in range(1, 51)])
    cfg = full_config(dbs, parallel={"workers": 2})
    options = RunOptions(run_id="crashing")
    manifest = transform(cfg, extract(cfg, options), options)
    assert is_chunked(manifest)
    second_chunk = [b for b in manifest.batches if b.chunk == 1]
    assert [b.rows for b in second_chunk] == [7, 7, 7, 4]
    # The third batch of the second chunk is gone: that worker fails there, after committing two batches.
    broken = Path(second_chunk[2].path)
    kept = tmp_path / "kept.arrow"
    shutil.move(broken, kept)
    with pytest.raises(StagingError, match="cannot read staged batch"):
        load(cfg, manifest, options)

    committed = {int(b) for (b,) in bookkeeping(dbs, "SELECT batch FROM _sync_batches WHERE run_id = 'crashing'")}
    assert {second_chunk[0].index, second_chunk[1].index} <= committed
    assert not committed & {second_chunk[2].index, second_chunk[3].index}
    by_index = {b.index: b for b in manifest.batches}
    # Every committed batch is whole, nothing else is there.
    assert len(target_rows(dbs)) == sum(by_index[i].rows for i in committed)
    assert len(recorded(dbs, run_id="crashing")) == sum(by_index[i].rows for i in committed)

    shutil.move(kept, broken)
    result = load(cfg, manifest, options)  # re-execution: same run id, same staged batches
    assert result.status is RunStatus.COMPLETED
    assert (result.counts.processed, result.counts.created, result.counts.failed) == (50, 50, 0)
    assert sorted(target_rows(dbs)) == list(range(1, 51))
    keys = [r["record_key"] for r in recorded(dbs)]
    assert (len(keys), len(set(keys))) == (50, 50)
    assert duplicated_outcomes(dbs, "crashing") == []

    # The next run starts from the finished state: nothing changes, nothing is deleted.
    later = run_sync(cfg, RunOptions(run_id="later"))
    assert (later.counts.unchanged, later.counts.deleted) == (50, 0)


def test_a_parallel_run_that_read_before_another_committed_is_refused(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 20)])
    cfg = full_config(sqlite_dbs, parallel=PARALLEL)
    slow = RunOptions(run_id="slow")
    staged = transform(cfg, extract(cfg, slow), slow)
    run_sync(cfg, RunOptions(run_id="fast"))
    with pytest.raises(Exception, match="run fast wrote the target after this run read its source"):
        load(cfg, staged, slow)


def _people(dbs: Databases, ids: list[int | None]) -> None:
    metadata = sa.MetaData()
    table = sa.Table("people", metadata, sa.Column("id", sa.Integer), sa.Column("name", sa.String(20)))
    engine = dbs.source()
    metadata.create_all(engine)
    if ids:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "name": f"n{n}"} for n, i in enumerate(ids)])
    engine.dispose()


def _people_config(dbs: Databases, name: str, table: str, **extra: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "source": {"kind": "sql", "url": dbs.source_url, "table": "people"},
            "target": {"kind": "sql", "url": dbs.target_url, "table": table, "key": ["id"]},
            "batch_size": 4,
            "max_failure_ratio": 0.5,
            **extra,
        }
    )


@pytest.mark.slow
def test_duplicate_and_null_keys_are_found_as_in_a_serial_run(dbs: Databases) -> None:
    ids: list[int | None] = [*range(1, 31), 5, 5, 17, 29, None, 30]
    _people(dbs, ids)
    serial = run_sync(_people_config(dbs, "people_serial", "people_serial"), RunOptions(run_id="s"))
    parallel = run_sync(
        _people_config(dbs, "people_chunks", "people_chunks", parallel=PARALLEL), RunOptions(run_id="p")
    )
    assert parallel.counts.as_dict() == serial.counts.as_dict()
    assert (parallel.counts.created, parallel.counts.failed) == (30, 6)
    errors = [r["error"] for r in recorded(dbs, run_id="p", action="failed")]
    assert sorted(errors) == ["duplicate key within the run"] * 5 + ["key id is null"]


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.one_of(st.none(), st.integers(-50, 50)), max_size=60),
    chunks=st.integers(1, 7),
)
def test_key_ranges_cover_every_row_exactly_once(tmp_path: Path, keys: list[int | None], chunks: int) -> None:
    path = tmp_path / f"cover-{abs(hash((tuple(keys), chunks)))}.db"
    path.unlink(missing_ok=True)
    dbs = Databases("sqlite", f"sqlite:///{path}", f"sqlite:///{tmp_path / 'unused.db'}")
    _people(dbs, keys)
    reader = SqlSourceReader(_people_config(dbs, "cover", "unused", parallel={"workers": 1, "chunks": chunks}))
    boundaries = reader.key_boundaries(chunks)
    assert boundaries == sorted(set(boundaries)) and len(boundaries) <= chunks - 1
    seen: collections.Counter[int | None] = collections.Counter()
    owner: dict[int | None, int] = {}
    for n, key_range in enumerate(key_ranges(boundaries)):
        for batch in reader.read(None, incremental=False, key_range=key_range):
            for key in batch.table.column("id").to_pylist():
                seen[key] += 1
                assert owner.setdefault(key, n) == n  # equal keys never straddle two ranges
    assert seen == collections.Counter(keys)
    reader.engine.dispose()


@pytest.mark.slow
def test_dry_runs_and_incremental_reads_stay_serial(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 15)])
    cfg = orders_config(sqlite_dbs, parallel=PARALLEL)  # incremental on updated_at
    options = RunOptions(run_id="inc")
    assert not is_chunked(extract(cfg, options))
    dry = RunOptions(run_id="dry", full_sync=True, dry_run=True)
    assert not is_chunked(extract(cfg, dry))
    forced = RunOptions(run_id="forced", full_sync=True)
    manifest = extract(cfg, forced)
    assert is_chunked(manifest) and manifest.final_position is not None
    result = load(cfg, transform(cfg, manifest, forced), forced)
    assert result.counts.created == 14
    # A forced full read of an incremental sync still leaves the watermark at the greatest (cursor, key).
    assert result.watermark_after is not None and result.watermark_after["key"] == [14]


@pytest.mark.slow
def test_the_dagster_job_runs_the_chunks(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 30)])
    cfg = full_config(sqlite_dbs, parallel=PARALLEL)
    job = build_definitions([cfg]).resolve_job_def(job_name(cfg.name))
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    assert sorted(target_rows(sqlite_dbs)) == list(range(1, 30))
    assert bookkeeping(sqlite_dbs, "SELECT count(DISTINCT chunk) FROM _sync_batches") == [(3,)]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"parallel": {"workers": 0}}, "parallel.workers", "greater than or equal to 1"),
        ({"parallel": {"workers": 4, "chunks": 2}}, "parallel", "chunks: 2 is fewer than workers"),
        ({"parallel": {"workers": 2, "threads": 2}}, "parallel.threads", "Extra inputs"),
        (
            {"parallel": {"workers": 2}, "target": {"key": ["order_id", "customer"]}},
            "",
            "parallel: needs a single-column target.key",
        ),
    ],
)
def test_config_errors_name_the_field(sqlite_dbs: Databases, change: dict[str, Any], field: str, message: str) -> None:
    data = full_config(sqlite_dbs).model_dump(by_alias=True, exclude_none=True)
    for name, value in change.items():
        data[name] = {**data[name], **value} if name == "target" else value
    with pytest.raises(ValidationError) as info:
        SyncConfig.model_validate(data)
    error = info.value.errors()[0]
    assert ".".join(str(p) for p in error["loc"]) == field
    assert message in error["msg"]


class _Daemonic:
    daemon = True


@pytest.mark.slow
def test_a_daemonic_process_runs_the_chunks_one_by_one(sqlite_dbs: Databases, monkeypatch: pytest.MonkeyPatch) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 30)])
    cfg = full_config(sqlite_dbs, parallel=PARALLEL)
    monkeypatch.setattr(pool.multiprocessing, "current_process", _Daemonic)
    stopped = RunOptions(run_id="stopped")
    manifest = transform(cfg, extract(cfg, stopped), stopped)
    stopped.stop_requested.set()
    with pytest.raises(RunCancelled, match="stopped before batch 0"):
        load(cfg, manifest, stopped)
    assert target_rows(sqlite_dbs) == {}
    stopped.stop_requested.clear()
    result = load(cfg, manifest, stopped)
    assert (result.counts.created, result.counts.processed) == (29, 29)
    assert sorted(target_rows(sqlite_dbs)) == list(range(1, 30))
    assert bookkeeping(sqlite_dbs, "SELECT count(DISTINCT chunk) FROM _sync_batches") == [(3,)]


@pytest.mark.slow
def test_a_stop_request_stops_every_worker_at_a_batch_boundary(sqlite_dbs: Databases) -> None:
    make_source(sqlite_dbs, [order(i) for i in range(1, 40)])
    cfg = full_config(sqlite_dbs, parallel=PARALLEL)
    options = RunOptions(run_id="stop")
    manifest = transform(cfg, extract(cfg, options), options)
    options.stop_requested.set()
    with pytest.raises(RunCancelled, match="stopped before batch"):
        load(cfg, manifest, options)
    assert target_rows(sqlite_dbs) == {}
    options.stop_requested.clear()
    assert load(cfg, manifest, options).counts.created == 39


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_batch_the_database_refuses_rolls_back_whole_and_resumes(backend: str, tmp_path: Path) -> None:
    for dbs in make_databases(backend, tmp_path):
        make_source(
            dbs,
            [order(i) for i in range(1, 38)] + [order(38, customer="far too long")] + [order(i) for i in range(39, 51)],
        )
        engine = dbs.target()
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE wh_orders (order_id BIGINT PRIMARY KEY, customer VARCHAR(3), qty BIGINT, "
                    "price NUMERIC(12, 2), status VARCHAR(255), updated_at TIMESTAMP NULL, origin VARCHAR(255))"
                )
            )
        cfg = full_config(dbs, parallel={"workers": 2})
        options = RunOptions(run_id="refused")
        manifest = transform(cfg, extract(cfg, options), options)
        refused = next(b for b in manifest.batches if b.chunk == 1 and b.rows == 7 and b.index == 5)
        with pytest.raises(PermanentConnectorError, match=f"loading batch {refused.index}"):
            load(cfg, manifest, options)
        committed = {int(b) for (b,) in bookkeeping(dbs, "SELECT batch FROM _sync_batches WHERE run_id = 'refused'")}
        assert refused.index - 1 in committed and refused.index not in committed
        assert 38 not in target_rows(dbs)
        # Nothing of the refused batch stayed behind: rows, outcomes and seen keys went with the transaction.
        assert not {33, 34, 35, 36, 37, 38, 39} & set(target_rows(dbs))
        assert recorded(dbs, batch=refused.index) == []

        alter = "ALTER COLUMN customer TYPE VARCHAR(50)" if backend == "postgresql" else "MODIFY customer VARCHAR(50)"
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE wh_orders {alter}"))
        engine.dispose()
        result = load(cfg, manifest, options)
        assert (result.status, result.counts.created) == (RunStatus.COMPLETED, 50)
        assert sorted(target_rows(dbs)) == list(range(1, 51))
        assert target_rows(dbs)[38]["customer"] == "far too long"
        assert duplicated_outcomes(dbs, "refused") == []
        assert len(recorded(dbs, run_id="refused")) == 50


@pytest.mark.slow
def test_dagster_reexecution_from_the_failed_load_resumes_the_chunks(tmp_path: Path) -> None:
    rows = [
        {"id": i, "name": f"p{i}", "age": str(20 + i), "updated_at": f"2024-01-{i % 28 + 1:02d}"} for i in range(1, 41)
    ]
    rows[29]["age"] = "999"  # id 30: the second batch of the second chunk breaks the target's CHECK
    make_source(tmp_path / "source.db", rows, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, batch_size=7, parallel={"workers": 2})
    target = sa.create_engine(f"sqlite:///{sync.target}")
    create = "CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT, age BIGINT {check}, updated_at DATETIME)"
    with target.begin() as conn:
        conn.execute(sa.text(create.format(check="CHECK (age < 100)")))
    instance = DagsterInstance.get()
    first = execute_sync("people", instance=instance, config_directory=sync.folder)
    assert first.status is RunStatus.FAILED and "CHECK constraint failed" in (first.error or "")
    committed = {int(b) for (b,) in _sqlite_rows(sync.target, "SELECT batch FROM _sync_batches")}
    assert 3 in committed and 4 not in committed  # chunk 1: batch 3 (ids 21-27) in, batch 4 (28-34) refused
    # The database accepts the row now; the source is emptied, so a re-read would find nothing.
    with target.begin() as conn:
        conn.execute(sa.text("ALTER TABLE people RENAME TO people_old"))
        conn.execute(sa.text(create.format(check="")))
        conn.execute(sa.text("INSERT INTO people SELECT * FROM people_old"))
        conn.execute(sa.text("DROP TABLE people_old"))
    target.dispose()
    make_source(tmp_path / "source.db", [], DATED_PEOPLE, replace=True)

    recon = build_reconstructable_job(
        runs_module.__name__,
        runs_module.sync_job.__name__,
        reconstructable_args=(str(sync.folder), "people"),  # type: ignore[arg-type]  # Dagster types it tuple[object]
    )
    with execute_job(
        recon, instance=instance, reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance)
    ) as retried:
        assert retried.success
        started = [e.step_key for e in retried.all_events if e.event_type_value == "STEP_START"]
        meta = {k: v.value for k, v in retried.asset_materializations_for_node("people")[0].metadata.items()}
    assert started[0] == step_key("people", Stage.LOAD)
    assert (meta["status"], meta["processed"], meta["created"]) == ("completed", 40, 40)
    assert sync.rows() == 40
    keys = [r["record_key"] for r in recorded(f"sqlite:///{sync.target}")]
    assert (len(keys), len(set(keys))) == (40, 40)


def _sqlite_rows(path: Path, sql: str) -> list[Any]:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text(sql)).all())
    engine.dispose()
    return rows
