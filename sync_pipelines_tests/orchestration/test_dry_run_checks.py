"""Dry runs never overwrite what real runs decided: the checks and the asset keep the last real run's verdict,
and every dry run is tagged as one from its launch (the dry-run job), on a real Dagster instance."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, ExecuteInProcessResult
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from sync_pipelines.config import load_configs
from sync_pipelines.demo.sources import BAD_QTY, build_demo_databases
from sync_pipelines.history import open_ledger
from sync_pipelines.history.records import RecordFilter, RecordStatus, RunRecords
from sync_pipelines.orchestration import Tag, execute_sync
from sync_pipelines.orchestration.names import FAILED_RECORDS_CHECK_NAME, dry_run_job_name, job_name
from sync_pipelines.types import RecordAction
from sync_pipelines_tests.factories import DATED_PEOPLE, Sync, make_source
from sync_pipelines_tests.support.live import REPO

ROWS = [
    {"id": 1, "name": "ada", "age": "36", "updated_at": "2024-01-01 08:00:00"},
    {"id": 2, "name": "bob", "age": "41", "updated_at": "2024-01-02 08:00:00"},
    {"id": 3, "name": "cy", "age": "29", "updated_at": "2024-01-03 08:00:00"},
    {"id": 4, "name": "dee", "age": "n/a", "updated_at": "2024-01-04 08:00:00"},
]
CHECK = AssetCheckKey(AssetKey("people"), FAILED_RECORDS_CHECK_NAME)


def latest_check(instance: DagsterInstance) -> Any:
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([CHECK])[CHECK]
    return record


def run_dry(sync: Sync, instance: DagsterInstance) -> ExecuteInProcessResult:
    job = sync.defs().resolve_job_def(dry_run_job_name(sync.name))
    return job.execute_in_process(run_config={}, instance=instance, raise_on_error=False)


@pytest.fixture
def partial(tmp_path: Path) -> tuple[Sync, str]:
    """A sync whose last real run was partial: its ``no_failed_records`` check failed (a yellow warning)."""
    make_source(tmp_path / "source.db", ROWS, DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, max_failure_ratio=0.5)
    result = sync.run()
    assert result.success
    record = latest_check(DagsterInstance.get())
    assert (record.run_id, record.status) == (result.run_id, AssetCheckExecutionRecordStatus.FAILED)
    return sync, result.run_id


@pytest.mark.slow
def test_a_dry_run_keeps_the_partial_runs_warning(partial: tuple[Sync, str]) -> None:
    sync, partial_run = partial
    instance = DagsterInstance.get()

    dry = run_dry(sync, instance)

    assert dry.success
    run = instance.get_run_by_id(dry.run_id)
    assert run is not None and run.job_name == "dry_run_people"
    assert run.tags[Tag.DRY_RUN.value] == "true"
    # No check was planned, so none was skipped: the check's latest verdict is still the partial run's.
    assert not [
        r
        for r in instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=20)
        if r.run_id == dry.run_id
    ]
    record = latest_check(instance)
    assert (record.run_id, record.status) == (partial_run, AssetCheckExecutionRecordStatus.FAILED)
    # Nothing materialized; an observation carries the plan, described as a dry run.
    assert dry.asset_materializations_for_node("people") == []
    [observation] = [e.asset_observation_data.asset_observation for e in dry.all_events if e.is_asset_observation]
    assert observation.description and observation.description.startswith("Dry run (plan only, nothing was written)")
    assert "1 failed" in observation.description and "3 unchanged" not in observation.description
    assert observation.metadata["dry_run"].value is True and observation.metadata["failed"].value == 1


@pytest.mark.slow
def test_a_dry_run_of_the_sync_job_states_the_real_verdict_again(partial: tuple[Sync, str]) -> None:
    """The launchpad of ``sync_people`` (or the Materialize dialog) with ``dry_run: true`` plans the checks:
    the load step states the last real verdict again, so the check does not end Skipped."""
    sync, _ = partial
    instance = DagsterInstance.get()

    dry = sync.run(dry_run=True)

    assert dry.success and dry.asset_materializations_for_node("people") == []
    assert instance.get_run_by_id(dry.run_id).tags[Tag.DRY_RUN.value] == "true"  # type: ignore[union-attr]
    record = latest_check(instance)
    assert record.status is AssetCheckExecutionRecordStatus.FAILED
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.description.startswith(f"Kept after dry run {dry.run_id[:8]}")
    assert "1 of 4 record(s) failed in the last run" in evaluation.description


@pytest.mark.slow
def test_the_cli_runs_dry_runs_through_the_dry_run_job(tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", ROWS[:3], DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path)
    instance = DagsterInstance.get()

    report = execute_sync("people", instance=instance, config_directory=sync.folder, dry_run=True)

    assert report.dry_run and report.counts["created"] == 3
    run = instance.get_run_by_id(report.run_id)
    assert run is not None and run.job_name == dry_run_job_name("people")
    assert run.tags[Tag.DRY_RUN.value] == "true" and Tag.PLAIN_RUN.value not in run.tags
    real = execute_sync("people", instance=instance, config_directory=sync.folder)
    assert real.counts["created"] == 3  # the dry run wrote nothing
    assert instance.get_run_by_id(real.run_id).job_name == job_name("people")  # type: ignore[union-attr]


def test_the_dry_run_job_carries_the_tag_and_no_check(tmp_path: Path) -> None:
    """Dagster gives a job's tags to every run it creates for it (a launch through GraphQL merges them at creation,
    queued runs included; the live test checks that): the tag is the job's."""
    make_source(tmp_path / "source.db", ROWS[:3], DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path)
    job = sync.defs().resolve_job_def(dry_run_job_name("people"))
    assert job.run_tags == {Tag.DRY_RUN.value: "true", Tag.SYNC_NAME.value: "people"}
    assert "Dry run of sync `people`" in (job.description or "")
    assert list(job.graph.node_dict) == ["people"]  # the asset's graph only: no check to plan
    real = sync.defs().resolve_job_def(job_name("people"))
    assert set(real.graph.node_dict) == {"people", "people_no_failed_records", "people_no_open_conflicts"}


@pytest.mark.slow
def test_a_partitioned_syncs_dry_run_job_plans_a_partition_without_writing(tmp_path: Path) -> None:
    """A partitioned job takes no config mapping: its ops take the dry run from the job's tag."""
    make_source(tmp_path / "source.db", ROWS[:3], DATED_PEOPLE, replace=True)
    sync = Sync(
        tmp_path, mode="incremental", cursor="updated_at", partitions={"granularity": "daily", "start": "2024-01-01"}
    )
    instance = DagsterInstance.get()
    job = sync.defs().resolve_job_def(dry_run_job_name("people"))

    dry = job.execute_in_process(instance=instance, partition_key="2024-01-02", raise_on_error=False)

    assert dry.success and dry.asset_materializations_for_node("people") == []
    [observation] = [e.asset_observation_data.asset_observation for e in dry.all_events if e.is_asset_observation]
    assert observation.metadata["dry_run"].value is True and observation.metadata["created"].value == 1
    assert not sync.rows()


@pytest.mark.slow
def test_the_demo_erp_orders_dry_run_lists_its_failed_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reproduction of the demo: ``erp_orders``' dry run counts 4 failed records; its ledger row, its entity
    row and the ``failed`` filter agree (the run goes through Dagster, which writes the ledger row)."""
    monkeypatch.chdir(tmp_path)
    build_demo_databases(tmp_path / "demo")
    folder = tmp_path / "syncs"
    folder.mkdir()
    shutil.copy(REPO / "syncs" / "erp_orders.yaml", folder / "erp_orders.yaml")
    instance = DagsterInstance.get()

    report = execute_sync("erp_orders", instance=instance, config_directory=folder, dry_run=True)

    assert report.dry_run and report.counts["failed"] == len(BAD_QTY)
    [cfg] = load_configs(folder)
    with open_ledger(cfg) as ledger:
        entry = ledger.get(report.run_id)
        assert entry is not None and entry.dry_run and entry.counts == report.counts
        records = RunRecords(ledger, entry)
        (status,) = records.entity_statuses(cfg.history_entity)
        assert status.by_action[RecordAction.FAILED] == len(BAD_QTY)
        assert status.total == entry.counts["processed"]
        failed = records.page(RecordFilter(status=RecordStatus.FAILED), page_size=50)
    assert sorted(row.key for row in failed.rows) == [f"order_id={i}" for i in sorted(BAD_QTY)]
    assert all("qty" in (row.error or "") for row in failed.rows)
