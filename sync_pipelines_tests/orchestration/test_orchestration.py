"""Sync jobs executed by Dagster on SQLite (and PostgreSQL for a secret in an error): metadata, tags, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    ReexecutionOptions,
    build_reconstructable_job,
    execute_job,
)

from sync_pipelines.config import load_configs
from sync_pipelines.engine.load import BatchLoader
from sync_pipelines.history import Trigger, open_ledger
from sync_pipelines.kinds import check_sync
from sync_pipelines.orchestration import Stage, Tag, execute_sync, step_key
from sync_pipelines.orchestration import runs as runs_module
from sync_pipelines.orchestration.metadata import NON_BREAKING_HYPHEN, unbroken
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import (
    DATED_PEOPLE,
    DATED_PEOPLE_MAPPING,
    Sync,
    make_source,
    sql_sync,
    write_config,
)
from sync_pipelines_tests.support.databases import PG_ADMIN_URL

ROWS = [
    {"id": 1, "name": "ada", "age": "36", "updated_at": "2024-01-01 08:00:00"},
    {"id": 2, "name": "bob", "age": "41", "updated_at": "2024-01-02 08:00:00"},
    {"id": 3, "name": "cy", "age": "29", "updated_at": "2024-01-03 08:00:00"},
]


def load_metadata(result: ExecuteInProcessResult, name: str) -> dict[str, Any]:
    """Values of the metadata the load step attached to the asset materialization."""
    [materialization] = result.asset_materializations_for_node(name)
    return {key: value.value for key, value in materialization.metadata.items()}


def failure_of(result: ExecuteInProcessResult, name: str, stage: Stage) -> Any:
    [event] = [e for e in result.all_events if e.is_step_failure and e.step_key == step_key(name, stage)]
    return event.step_failure_data


def run_tags(run_id: str) -> dict[str, str]:
    run = DagsterInstance.get().get_run_by_id(run_id)
    assert run is not None
    return dict(run.tags)


@pytest.mark.slow
def test_a_run_records_counts_watermark_samples_and_status(tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, mode="incremental", cursor="updated_at")

    result = sync.run()

    assert result.success
    meta = load_metadata(result, "people")
    assert meta["status"] == "completed"
    assert {k: meta[k] for k in ("processed", "succeeded", "created", "updated", "unchanged", "failed")} == {
        "processed": 3,
        "succeeded": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
    }
    assert meta["deleted"] == meta["skipped"] == meta["conflicted"] == 0
    assert meta["watermark_before"] is None
    assert meta["watermark_after"]["key"] == [3]
    assert meta["watermark_after"]["cursor"].startswith("2024-01-03")
    assert meta["dry_run"] is False and meta["full_sync"] is False
    assert meta["trigger"] == "manual"
    assert meta["path"] == f"people in sqlite:///{tmp_path / 'target.db'}"  # the table, not a pickle
    assert meta["duration_s"] >= 0
    samples = meta["samples"]
    assert [c.name for c in samples.schema.columns] == ["key", "action", "changes", "error"]
    assert sorted(r.data["key"] for r in samples.records) == ["id=1", "id=2", "id=3"]
    assert {r.data["action"] for r in samples.records} == {"created"}

    assert run_tags(result.run_id)[Tag.STATUS.value] == "completed"
    assert run_tags(result.run_id)[Tag.SYNC_NAME.value] == "people"
    assert sync.rows() == 3
    [extract_output] = [
        e for e in result.all_events if e.is_successful_output and e.step_key == step_key("people", Stage.EXTRACT)
    ]
    assert extract_output.step_output_data.metadata["rows"].value == 3
    assert [e.step_key for e in result.get_step_success_events()] == [
        step_key("people", Stage.EXTRACT),
        step_key("people", Stage.TRANSFORM),
        step_key("people", Stage.LOAD),
        "people_no_failed_records",
        "people_no_open_conflicts",
    ]


@pytest.mark.slow
def test_a_partial_run_warns_through_the_failed_records_check(tmp_path: Path) -> None:
    """Dagster shows a partial run as a success; the WARN check on the asset says records failed."""
    make_source(
        tmp_path / "source.db",
        [*ROWS, {"id": 4, "name": "dee", "age": "n/a", "updated_at": "2024-01-04"}],
        DATED_PEOPLE,
        replace=True,
    )
    sync = Sync(tmp_path, max_failure_ratio=0.5)

    partial = sync.run()

    assert partial.success and load_metadata(partial, "people")["status"] == "partial"
    [warning] = [e for e in partial.get_asset_check_evaluations() if e.check_name == "no_failed_records"]
    assert not warning.passed and warning.severity is AssetCheckSeverity.WARN
    assert (warning.metadata["failed"].value, warning.metadata["processed"].value) == (1, 4)
    assert warning.description and warning.description.startswith("1 of 4 record(s) failed in the last run")

    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    clean = sync.run()
    [passed] = [e for e in clean.get_asset_check_evaluations() if e.check_name == "no_failed_records"]
    assert passed.passed and passed.metadata["failed"].value == 0
    dry = sync.run(dry_run=True)  # nothing materialized: the check has nothing new to judge
    assert dry.success and not [e for e in dry.get_asset_check_evaluations() if e.check_name == "no_failed_records"]


@pytest.mark.slow
def test_a_second_run_creates_nothing_and_then_reports_changed_fields(tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path)
    assert sync.run().success

    second = load_metadata(sync.run(), "people")
    assert (second["processed"], second["created"], second["updated"], second["unchanged"]) == (3, 0, 0, 3)
    assert second["samples"].records == []

    make_source(
        tmp_path / "source.db", [*ROWS[:2], {**ROWS[2], "name": "cyd", "age": "30"}], DATED_PEOPLE, replace=True
    )
    third = load_metadata(sync.run(), "people")
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 2)
    [updated] = third["samples"].records
    assert updated.data["key"] == "id=3" and updated.data["action"] == "updated"
    assert 'name: "cy" → "cyd"' in updated.data["changes"]
    assert "age: 29 → 30" in updated.data["changes"]


@pytest.mark.slow
def test_a_dry_run_writes_nothing_and_keeps_the_watermark(tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, mode="incremental", cursor="updated_at")

    dry = sync.run(dry_run=True)

    assert dry.success
    assert dry.asset_materializations_for_node("people") == []  # nothing was written, nothing materialized
    [observation] = [e.asset_observation_data.asset_observation for e in dry.all_events if e.is_asset_observation]
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert meta["dry_run"] is True and meta["created"] == 3 and meta["watermark_after"] is None
    assert run_tags(dry.run_id)[Tag.STATUS.value] == "completed"
    assert not sync.rows()

    real = load_metadata(sync.run(), "people")  # the watermark did not move: everything is still new
    assert real["created"] == 3 and real["dry_run"] is False
    assert sync.rows() == 3


@pytest.mark.slow
def test_a_few_bad_rows_within_the_ratio_make_a_partial_run(tmp_path: Path) -> None:
    make_source(
        tmp_path / "source.db",
        [*ROWS, {"id": 4, "name": "dee", "age": "old", "updated_at": "2024-01-04"}],
        DATED_PEOPLE,
        replace=True,
    )
    sync = Sync(tmp_path, max_failure_ratio=0.5)

    result = sync.run()

    assert result.success
    meta = load_metadata(result, "people")
    assert (meta["status"], meta["processed"], meta["created"], meta["failed"]) == ("partial", 4, 3, 1)
    [bad] = [r.data for r in meta["samples"].records if r.data["action"] == "failed"]
    assert bad["key"] == "id=4" and bad["error"]
    assert run_tags(result.run_id)[Tag.STATUS.value] == "partial"
    assert sync.rows() == 3


@pytest.mark.slow
def test_too_many_bad_rows_fail_the_step_with_the_metadata(tmp_path: Path) -> None:
    make_source(
        tmp_path / "source.db",
        [*ROWS, {"id": 4, "name": "dee", "age": "old", "updated_at": "2024-01-04"}],
        DATED_PEOPLE,
        replace=True,
    )
    sync = Sync(tmp_path, max_failure_ratio=0)

    result = sync.run()

    assert not result.success
    failure = failure_of(result, "people", Stage.LOAD)
    assert "max_failure_ratio" in failure.user_failure_data.description
    meta = {k: v.value for k, v in failure.user_failure_data.metadata.items()}
    assert (meta["status"], meta["failed"], meta["processed"]) == ("failed", 1, 4)
    assert run_tags(result.run_id)[Tag.STATUS.value] == "failed"
    assert result.asset_materializations_for_node("people") == []


@pytest.mark.slow
def test_a_missing_source_table_fails_the_run_naming_it(tmp_path: Path) -> None:
    sync = Sync(tmp_path)  # no source database at all

    result = sync.run()

    assert not result.success
    failure = failure_of(result, "people", Stage.EXTRACT)
    assert "sync 'people', extract" in failure.user_failure_data.description
    assert "people" in failure.user_failure_data.description
    assert failure.error.cause is None  # the engine's exception is not chained into the UI
    assert run_tags(result.run_id)[Tag.STATUS.value] == "failed"
    assert [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"] == [
        step_key("people", Stage.EXTRACT)
    ]


@pytest.mark.slow
def test_a_missing_sqlite_source_fails_without_leaving_an_empty_file(tmp_path: Path) -> None:
    sync = Sync(tmp_path)  # source.db is never created

    result = sync.run()

    assert not result.success
    description = failure_of(result, "people", Stage.EXTRACT).user_failure_data.description
    assert f"source database file {tmp_path / 'source.db'} does not exist (sync people, source.url)" in description
    assert not (tmp_path / "source.db").exists()
    checked = check_sync(load_configs(sync.folder)[0])
    [source] = [r for r in checked if r.role.value == "source"]
    assert not source.ok and "does not exist" in (source.error or "")
    assert not (tmp_path / "source.db").exists()


@pytest.mark.slow
def test_a_secret_in_a_failure_is_redacted_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sp_secret_db_7f3a9c"
    monkeypatch.setenv("PEOPLE_DB", secret)
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    sync = Sync(tmp_path)
    write_config(
        sync.folder,
        sql_sync("people", server + "/${PEOPLE_DB}", sync.target, mapping=DATED_PEOPLE_MAPPING, mode="full"),
    )

    result = sync.run()

    assert not result.success
    description = failure_of(result, "people", Stage.EXTRACT).user_failure_data.description
    assert "***" in description and secret not in description
    stored = DagsterInstance.get().all_logs(result.run_id)
    assert stored and not [entry for entry in stored if secret in str(entry)]


@pytest.mark.slow
def test_reexecution_from_the_failed_step_resumes_without_reading_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"id": i, "name": f"p{i}", "age": str(20 + i), "updated_at": f"2024-01-{i:02d}"} for i in range(1, 22)]
    make_source(tmp_path / "source.db", rows, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, batch_size=7)
    original = BatchLoader.write_plan
    calls = {"n": 0}

    def lose_the_connection_in_batch_two(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("connection lost")
        original(self, conn, plan, batch)

    monkeypatch.setattr(BatchLoader, "write_plan", lose_the_connection_in_batch_two)
    instance = DagsterInstance.get()
    first = execute_sync("people", instance=instance, config_directory=sync.folder)
    assert first.status.value == "failed" and "connection lost" in (first.error or "")
    assert sync.rows() == 7  # the first batch is committed
    monkeypatch.setattr(BatchLoader, "write_plan", original)
    make_source(tmp_path / "source.db", [], DATED_PEOPLE, replace=True)  # a re-read would now see no rows at all

    recon = build_reconstructable_job(
        runs_module.__name__,
        runs_module.sync_job.__name__,
        reconstructable_args=(str(sync.folder), "people"),  # type: ignore[arg-type]  # Dagster types it tuple[object]
    )
    options = ReexecutionOptions.from_failure(first.run_id, instance)
    with execute_job(recon, instance=instance, reexecution_options=options) as retried:
        assert retried.success
        started = [e.step_key for e in retried.all_events if e.event_type_value == "STEP_START"]
        materialization = retried.asset_materializations_for_node("people")[0]
    assert started == [step_key("people", Stage.LOAD), "people_no_failed_records", "people_no_open_conflicts"]
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["status"], meta["processed"], meta["created"]) == ("completed", 21, 21)
    assert sync.rows() == 21
    assert meta["trigger"] == "retry"
    assert run_tags(retried.run_id)[Tag.STATUS.value] == "completed"
    assert DagsterEventType.STEP_FAILURE not in {e.event_type for e in retried.all_events}
    [cfg] = load_configs(sync.folder)
    with open_ledger(cfg) as ledger:
        parent, child = ledger.get(first.run_id), ledger.get(retried.run_id)
    assert parent is not None and child is not None
    assert parent.status is RunStatus.FAILED and "connection lost" in (parent.error or "")
    assert parent.counts["created"] == 7  # the batch it committed
    assert (child.trigger, child.parent_run_id, child.records_run_id) == (Trigger.RETRY, first.run_id, first.run_id)
    assert (child.status, child.counts["processed"]) == (RunStatus.COMPLETED, 21)


@pytest.mark.slow
def test_materializing_from_the_asset_graph_tags_the_run_with_its_sync(tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path)
    job = sync.defs().resolve_implicit_global_asset_job_def()

    result = job.execute_in_process(
        asset_selection=[AssetKey("people")], instance=DagsterInstance.get(), raise_on_error=False
    )

    assert result.success
    tags = run_tags(result.run_id)
    assert (tags[Tag.SYNC_NAME.value], tags[Tag.STATUS.value]) == ("people", "completed")
    assert load_metadata(result, "people")["created"] == 3


@pytest.mark.slow
def test_each_step_opens_the_target_database_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger row, the writes, the metadata and the closing row of a step share one engine (one pool)."""
    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, mode="incremental", cursor="updated_at")
    created: list[str] = []
    real = sa.create_engine

    def counting(url: Any, **kwargs: Any) -> sa.Engine:
        engine = real(url, **kwargs)
        created.append(str(engine.url.database))
        return engine

    monkeypatch.setattr(sa, "create_engine", counting)
    result = sync.run()

    assert result.success
    assert load_metadata(result, "people")["created"] == 3
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert len(steps) >= 3
    # At most one engine per step for the target (extract reads the watermark, load writes and records).
    assert 1 <= created.count(str(sync.target)) <= len(steps), (steps, created)


def test_dates_in_metadata_tables_keep_their_hyphens_unbroken() -> None:
    """Chromium breaks a table cell's line after a hyphen: dates use non-breaking hyphens there, other text not."""
    shown = unbroken('updated_at: "2024-03-13T23:07:00" → "2024-06-01 10:00:00"; name: "p3-renamed"')
    nb = NON_BREAKING_HYPHEN
    assert shown == f'updated_at: "2024{nb}03{nb}13T23:07:00" → "2024{nb}06{nb}01 10:00:00"; name: "p3-renamed"'
    assert nb == "\u2011"
