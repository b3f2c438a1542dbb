"""A retry after a data fix reads the source again: re-executing, from its failure, a run that failed because its
records failed loads the fixed data (a real Dagster re-execution on a persistent instance)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, ReexecutionOptions, build_reconstructable_job, execute_job

from sync_pipelines.config import load_configs
from sync_pipelines.history import Trigger, open_ledger
from sync_pipelines.orchestration import Stage, Tag, execute_sync, step_key
from sync_pipelines.orchestration import runs as runs_module
from sync_pipelines.orchestration.retries import RECORDS_FAILED_ERROR_TYPE, failed_for_records
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import DATED_PEOPLE, Sync, make_source


def people(bad: bool) -> list[dict[str, str | int]]:
    """20 people; with ``bad``, the even ones have an age that is not a number."""
    return [
        {
            "id": i,
            "name": f"p{i}",
            "age": "n/a" if bad and i % 2 == 0 else str(20 + i),
            "updated_at": f"2024-01-{i:02d}",
        }
        for i in range(1, 21)
    ]


@pytest.mark.slow
def test_reexecuting_a_run_whose_records_failed_reads_the_fixed_source(tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", people(bad=True), DATED_PEOPLE, replace=True)
    sync = Sync(tmp_path, batch_size=7, max_failure_ratio=0.2)
    instance = DagsterInstance.get()
    load_step = step_key("people", Stage.LOAD)

    first = execute_sync("people", instance=instance, config_directory=sync.folder)

    assert first.status is RunStatus.FAILED and first.counts["failed"] == 10
    assert sync.rows() == 10  # the good records were loaded
    assert failed_for_records(instance, first.run_id, load_step)
    [failure] = [
        e.dagster_event.step_failure_data.user_failure_data
        for e in instance.all_logs(first.run_id)
        if e.dagster_event and e.dagster_event.is_step_failure
    ]
    assert failure is not None and failure.metadata["error_type"].value == RECORDS_FAILED_ERROR_TYPE
    assert "re-execute the run (from failure, or all steps): the retry reads the source again" in (
        failure.description or ""
    )

    make_source(tmp_path / "source.db", people(bad=False), DATED_PEOPLE, replace=True)  # the data is fixed
    recon = build_reconstructable_job(
        runs_module.__name__,
        runs_module.sync_job.__name__,
        reconstructable_args=(str(sync.folder), "people"),  # type: ignore[arg-type]  # Dagster types it tuple[object]
    )
    options = ReexecutionOptions.from_failure(first.run_id, instance)
    with execute_job(recon, instance=instance, reexecution_options=options) as retried:
        assert retried.success
        started = [e.step_key for e in retried.all_events if e.event_type_value == "STEP_START"]
        [materialization] = retried.asset_materializations_for_node("people")
        logs = [e.message for e in instance.all_logs(retried.run_id) if e.message]

    # Dagster re-executed the load step (and the checks) only; the load step read the source again.
    assert started == [load_step, "people_no_failed_records", "people_no_open_conflicts"]
    assert any("this retry reads the source again" in m for m in logs)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["status"], meta["processed"], meta["failed"]) == ("completed", 20, 0)
    assert (meta["created"], meta["unchanged"]) == (10, 10)
    assert sync.rows() == 20
    assert instance.get_run_by_id(retried.run_id).tags[Tag.STATUS.value] == "completed"  # type: ignore[union-attr]
    [cfg] = load_configs(sync.folder)
    with open_ledger(cfg) as ledger:
        child = ledger.get(retried.run_id)
    assert child is not None
    # A fresh read: its records are its own, not the failed run's.
    assert (child.trigger, child.parent_run_id, child.records_run_id) == (Trigger.RETRY, first.run_id, retried.run_id)
    assert (child.status, child.counts["failed"], child.counts["created"]) == (RunStatus.COMPLETED, 0, 10)
