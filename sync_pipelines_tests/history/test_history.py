"""Run history through Dagster and the CLI: trigger attribution, the run ledger, record history, exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterExecutionInterruptedError,
    DagsterInstance,
    DagsterRun,
    RunRequest,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    materialize,
    sensor,
)
from openpyxl import load_workbook

from sync_pipelines import engine
from sync_pipelines.config import SyncConfig, load_configs
from sync_pipelines.errors import SyncError
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.queries import list_runs
from sync_pipelines.orchestration import Tag, build_definitions, execute_sync, report_for_run, schedule_name
from sync_pipelines.orchestration.ledger_sensors import CANCEL_SENSOR_NAME, FAILURE_SENSOR_NAME, sweep
from sync_pipelines.orchestration.statistics import SENSOR_NAME as STATISTICS_SENSOR
from sync_pipelines.orchestration.statistics import build_statistics_asset
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import (
    PEOPLE,
    PEOPLE_MAPPING,
    PEOPLE_ROWS,
    invoke,
    make_source,
    sql_sync,
    write_config,
)

STATISTICS_SCHEDULE = "sync_statistics_schedule"


def configs(folder: Path) -> dict[str, SyncConfig]:
    return {cfg.name: cfg for cfg in load_configs(folder)}


def ledger_row(folder: Path, run_id: str) -> RunEntry:
    with open_ledger(configs(folder)["clean"]) as ledger:
        entry = ledger.get(run_id)
    assert entry is not None, f"run {run_id} is not in the ledger"
    return entry


def launch(folder: Path, sync: str, tags: dict[str, str], **flags: bool) -> str:
    with DagsterInstance.get() as instance:
        return execute_sync(sync, instance=instance, config_directory=folder, tags=tags, **flags).run_id


def run_tags(run_id: str) -> dict[str, str]:
    run = DagsterInstance.get().get_run_by_id(run_id)
    assert run is not None
    return dict(run.tags)


def update_source(path: Path, row_id: int, **values: Any) -> None:
    engine_ = sa.create_engine(f"sqlite:///{path}")
    with engine_.begin() as conn:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        conn.execute(sa.text(f"UPDATE people SET {sets} WHERE id = :id"), {**values, "id": row_id})
    engine_.dispose()


# -- trigger attribution


@pytest.mark.slow
def test_a_cli_run_is_manual_with_the_given_user(syncs: Path) -> None:
    result = invoke("run", "clean", "--json", "--user", "alice")
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]

    entry = ledger_row(syncs, run_id)
    assert (entry.trigger, entry.user, entry.status, entry.mode) == (
        Trigger.MANUAL,
        "alice",
        RunStatus.COMPLETED,
        "full",
    )
    tags = run_tags(run_id)
    assert (tags[Tag.TRIGGERED_BY.value], tags[Tag.USER.value]) == ("manual", "alice")
    with DagsterInstance.get() as instance:
        [materialization] = [
            e.asset_materialization
            for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization
        ]
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["trigger"], meta["user"], meta["ledger_run_id"]) == ("manual", "alice", run_id)
    assert f"sync-pipelines show {run_id}" in meta["ledger"] and "_sync_runs" in meta["ledger"]
    assert meta["history_view"] == f"http://127.0.0.1:3001/runs/{run_id}"


@pytest.mark.slow
def test_a_cli_run_without_user_records_the_os_user(syncs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "svc_sync")
    result = invoke("run", "clean", "--json")
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]

    assert ledger_row(syncs, run_id).user == "svc_sync"


@pytest.mark.slow
def test_a_launchpad_user_is_recorded_when_no_identity_is_known(syncs: Path) -> None:
    """The launchpad's flat form takes `user`; without a `sync/user` tag it becomes the run's user."""
    with DagsterInstance.get() as instance:
        run_id = execute_sync("clean", instance=instance, config_directory=syncs, run_config={"user": " carol "}).run_id
        tagged = execute_sync(
            "clean",
            instance=instance,
            config_directory=syncs,
            run_config={"user": "carol"},
            tags={Tag.USER.value: "dan"},
        ).run_id

    assert (ledger_row(syncs, run_id).user, run_tags(run_id)[Tag.USER.value]) == ("carol", "carol")
    assert ledger_row(syncs, tagged).user == "dan"  # a known identity wins over the form


@pytest.mark.slow
def test_a_schedule_tick_is_attributed_to_the_schedule(syncs: Path) -> None:
    defs = build_definitions(load_configs(syncs))
    schedule = defs.resolve_schedule_def(schedule_name("clean"))
    with DagsterInstance.get() as instance:
        [request] = schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests or []
    # The scheduler daemon adds the schedule's tag to the run it launches from the request.
    run_id = launch(syncs, "clean", {**request.tags, **DagsterRun.tags_for_schedule(schedule)})

    entry = ledger_row(syncs, run_id)
    assert (entry.trigger, entry.user) == (Trigger.SCHEDULE, None)
    assert run_tags(run_id)[Tag.TRIGGERED_BY.value] == "schedule"


@pytest.mark.slow
def test_a_sensor_tick_is_attributed_to_the_sensor(syncs: Path) -> None:
    @sensor(job_name="sync_clean", name="file_drop_sensor")
    def file_drop(_context: Any) -> RunRequest:
        return RunRequest(run_key="orders-2024-05-01.csv", tags={"drop/file": "orders-2024-05-01.csv"})

    with DagsterInstance.get() as instance:
        [request] = file_drop.evaluate_tick(build_sensor_context(instance=instance)).run_requests or []
    run_id = launch(syncs, "clean", {**request.tags, **DagsterRun.tags_for_sensor(file_drop)})

    assert ledger_row(syncs, run_id).trigger is Trigger.SENSOR


@pytest.mark.slow
def test_backfill_and_api_launches(syncs: Path) -> None:
    backfill = launch(syncs, "clean", {"dagster/backfill": "bkf001"})
    api = launch(syncs, "clean", {Tag.TRIGGER.value: "api", Tag.USER.value: "etl-bot"})

    assert ledger_row(syncs, backfill).trigger is Trigger.BACKFILL
    api_entry = ledger_row(syncs, api)
    assert (api_entry.trigger, api_entry.user) == (Trigger.API, "etl-bot")
    assert run_tags(api)[Tag.TRIGGERED_BY.value] == "api"


# -- the ledger


@pytest.mark.slow
def test_the_ledger_records_completed_partial_and_failed_runs(syncs: Path) -> None:
    clean = launch(syncs, "clean", {}, dry_run=True)
    tolerant = launch(syncs, "tolerant", {})
    strict = launch(syncs, "strict", {})

    dry = ledger_row(syncs, clean)
    assert (dry.status, dry.dry_run, dry.counts["created"]) == (RunStatus.COMPLETED, True, 9)
    assert run_tags(clean)[Tag.DRY_RUN.value] == "true"
    assert Tag.DRY_RUN.value not in run_tags(tolerant)
    partial = ledger_row(syncs, tolerant)
    assert (partial.status, partial.counts["processed"], partial.counts["failed"]) == (RunStatus.PARTIAL, 10, 1)
    assert partial.finished_at is not None and partial.duration_s is not None and partial.duration_s > 0
    assert partial.started_at <= partial.finished_at and partial.error is None
    failed = ledger_row(syncs, strict)
    assert failed.status is RunStatus.FAILED and failed.counts["failed"] == 1
    assert failed.error and "max_failure_ratio" in failed.error


@pytest.mark.slow
def test_a_step_error_closes_the_row_as_failed_with_its_error(syncs: Path, tmp_path: Path) -> None:
    (tmp_path / "clean.db").unlink()
    make_source(tmp_path / "other.db", PEOPLE_ROWS, PEOPLE)
    engine_ = sa.create_engine(f"sqlite:///{tmp_path / 'clean.db'}")
    with engine_.connect():
        pass  # an empty database file: the source table is missing
    engine_.dispose()

    run_id = launch(syncs, "clean", {})

    entry = ledger_row(syncs, run_id)
    assert entry.status is RunStatus.FAILED
    assert entry.error and "extract" in entry.error and "people" in entry.error
    assert entry.error_details  # the error type or traceback


@pytest.mark.slow
def test_an_interrupted_load_is_cancelled_with_its_committed_counts(
    syncs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = engine.load

    def load_then_interrupt(cfg: Any, manifest: Any, options: Any) -> Any:
        original(cfg, manifest, options)
        raise DagsterExecutionInterruptedError()

    monkeypatch.setattr(engine, "load", load_then_interrupt)
    run_id = launch(syncs, "tolerant", {})

    entry = ledger_row(syncs, run_id)
    assert entry.status is RunStatus.CANCELLED and "cancelled" in (entry.error or "")
    assert (entry.counts["created"], entry.counts["failed"]) == (9, 1)  # from the committed records
    assert run_tags(run_id)[Tag.STATUS.value] == "cancelled"


def _open_running_row(folder: Path, run: DagsterRun) -> None:
    with open_ledger(configs(folder)["clean"]) as ledger:
        ledger.open_run(RunEntry(run_id=run.run_id, sync="clean", trigger=Trigger.MANUAL, mode="full"))


def _created_run(folder: Path, instance: DagsterInstance) -> DagsterRun:
    job = build_definitions(load_configs(folder)).resolve_job_def("sync_clean")
    return instance.create_run_for_job(job_def=job, run_config={}, tags=dict(job.run_tags))


@pytest.mark.slow
def test_the_run_status_sensors_close_rows_of_runs_that_ended_outside_the_ops(syncs: Path) -> None:
    defs = build_definitions(load_configs(syncs))
    with DagsterInstance.get() as instance:
        failing, cancelling = _created_run(syncs, instance), _created_run(syncs, instance)
        for run in (failing, cancelling):
            _open_running_row(syncs, run)
        instance.report_run_failed(failing, message="the run worker was lost")
        instance.report_run_canceled(cancelling)
        events = {}
        for run, kind in ((failing, DagsterEventType.RUN_FAILURE), (cancelling, DagsterEventType.RUN_CANCELED)):
            [record] = instance.all_logs(run.run_id, of_type=kind)
            assert isinstance(record.dagster_event, DagsterEvent)
            events[run.run_id] = (instance.get_run_by_id(run.run_id), record.dagster_event)

        failure_sensor = defs.resolve_sensor_def(FAILURE_SENSOR_NAME)
        run, event = events[failing.run_id]
        assert run is not None
        failure_sensor(
            build_run_status_sensor_context(FAILURE_SENSOR_NAME, event, instance, run).for_run_failure()  # type: ignore[arg-type]
        )
        cancel_sensor = defs.resolve_sensor_def(CANCEL_SENSOR_NAME)
        run, event = events[cancelling.run_id]
        assert run is not None
        cancel_sensor(build_run_status_sensor_context(CANCEL_SENSOR_NAME, event, instance, run))  # type: ignore[arg-type]

    failed, cancelled = ledger_row(syncs, failing.run_id), ledger_row(syncs, cancelling.run_id)
    assert failed.status is RunStatus.FAILED and "the run worker was lost" in (failed.error or "")
    assert cancelled.status is RunStatus.CANCELLED and cancelled.finished_at is not None
    # The failed run gets the ledger's closing and counts too, as an engine event of its own log.
    with DagsterInstance.get() as instance:
        report = report_for_run(instance, failing.run_id, failing.tags["sync/name"])
    assert report.status is RunStatus.FAILED and "the run worker was lost" in (report.error or "")
    assert set(report.counts) == set(failed.counts)


@pytest.mark.slow
def test_the_sweep_closes_rows_whose_run_has_ended(syncs: Path) -> None:
    with DagsterInstance.get() as instance:
        ended, alive = _created_run(syncs, instance), _created_run(syncs, instance)
        for run in (ended, alive):
            _open_running_row(syncs, run)
        instance.report_run_failed(ended)

        closed = sweep(instance, list(configs(syncs).values()))

    assert closed == [ended.run_id]
    assert ledger_row(syncs, ended.run_id).status is RunStatus.FAILED
    assert ledger_row(syncs, alive.run_id).status is RunStatus.RUNNING  # its run has not ended


# -- record history and exports


@pytest.mark.slow
def test_show_lists_field_changes_and_filters_actions(syncs: Path, tmp_path: Path) -> None:
    launch(syncs, "tolerant", {})
    update_source(tmp_path / "dirty.db", 3, name="p3-renamed", age="99")
    second = launch(syncs, "tolerant", {})

    shown = invoke("show", second)
    assert shown.exit_code == 0
    assert f"run {second}  sync tolerant" in shown.stdout
    lines = shown.stdout.splitlines()
    [changed] = [line for line in lines if line.startswith("id=3 ")]
    assert 'age: 23 -> 99; name: "p3" -> "p3-renamed"' in changed and "tolerant" in changed and "updated" in changed
    assert "unchanged=8" in shown.stdout  # counted, not stored
    assert not [line for line in lines if " unchanged " in line]

    failed = invoke("show", second[:8], "--failed-only")
    assert [line.split()[0] for line in failed.stdout.splitlines() if line.startswith("id=")] == ["id=10"]
    assert "cannot convert" in failed.stdout
    updated = invoke("show", second, "--action", "updated")
    assert [line.split()[0] for line in updated.stdout.splitlines() if line.startswith("id=")] == ["id=3"]
    assert invoke("show", "no-such-run").exit_code == 2


@pytest.mark.slow
def test_store_unchanged_keeps_a_row_per_unchanged_record(syncs: Path, tmp_path: Path) -> None:
    write_config(
        syncs,
        sql_sync("clean", tmp_path / "clean.db", tmp_path / "target.db", mapping=PEOPLE_MAPPING),
        history={"store_unchanged": True, "entity": "people"},
    )
    launch(syncs, "clean", {})
    second = launch(syncs, "clean", {})

    shown = invoke("show", second, "--action", "unchanged")
    rows = [line for line in shown.stdout.splitlines() if line.startswith("id=")]
    assert len(rows) == 9 and all(" people " in row for row in rows)


@pytest.mark.slow
def test_export_xlsx_has_a_summary_and_one_row_per_record(syncs: Path, tmp_path: Path) -> None:
    launch(syncs, "tolerant", {Tag.USER.value: "alice"})
    update_source(tmp_path / "dirty.db", 3, name="p3-renamed")
    run_id = launch(syncs, "tolerant", {Tag.USER.value: "alice"})
    out = tmp_path / "run.xlsx"

    result = invoke("export", run_id, "--format", "xlsx", "-o", str(out))

    assert result.exit_code == 0 and "2 record(s)" in result.stdout
    book = load_workbook(out)
    assert book.sheetnames == ["Summary", "Records"]
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert (summary["sync"], summary["run id"], summary["trigger"], summary["user"]) == (
        "tolerant",
        run_id,
        "manual",
        "alice",
    )
    assert (summary["status"], summary["processed"], summary["updated"], summary["unchanged"]) == ("partial", 10, 1, 8)
    records = book["Records"]
    header, *rows = list(records.iter_rows(values_only=True))
    assert header == ("key", "entity", "action", "changed_fields", "changes", "error", "batch", "time")
    by_action = {row[2]: row for row in rows}
    assert set(by_action) == {"updated", "failed"}
    assert by_action["updated"][0] == "id=3" and by_action["updated"][3] == "name"
    assert by_action["updated"][4] == 'name: "p3" -> "p3-renamed"'
    assert "cannot convert" in by_action["failed"][5]
    assert records.freeze_panes == "A2"
    assert records.auto_filter.ref == "A1:H3"
    assert records["A1"].font.bold and records["A1"].fill.fgColor.rgb.endswith("305496")


@pytest.mark.slow
def test_export_csv(syncs: Path, tmp_path: Path) -> None:
    run_id = launch(syncs, "tolerant", {})
    out = tmp_path / "run.csv"

    assert invoke("export", run_id, "--format", "csv", "-o", str(out)).exit_code == 0

    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and {row["run_id"] for row in rows} == {run_id}
    assert sorted(row["action"] for row in rows).count("created") == 9
    [failed] = [row for row in rows if row["action"] == "failed"]
    assert failed["key"] == "id=10" and "unknown" in failed["error"]


# -- listing, paging, statistics


@pytest.mark.slow
def test_history_pages_and_filters(syncs: Path) -> None:
    ids = [launch(syncs, name, {}) for name in ("clean", "tolerant", "strict", "tolerant", "clean")]

    first = invoke("history", "--page-size", "2")
    assert first.exit_code == 0
    listed = [line.split()[0] for line in first.stdout.splitlines()[1:-1]]
    assert listed == [ids[4], ids[3]]
    assert first.stdout.splitlines()[-1] == "page 1 of 3 (5 run(s))"
    third = invoke("history", "--page", "3", "--page-size", "2")
    assert [line.split()[0] for line in third.stdout.splitlines()[1:-1]] == [ids[0]]

    partial = invoke("history", "tolerant", "--status", "partial")
    assert [line.split()[0] for line in partial.stdout.splitlines()[1:-1]] == [ids[3], ids[1]]
    assert invoke("history", "--status", "failed").stdout.splitlines()[1].split()[:3] == [ids[2], "strict", "failed"]
    assert "no runs" in invoke("history", "clean", "--status", "cancelled").stdout
    assert invoke("history", "nope").exit_code == 2


@pytest.mark.slow
def test_stats_report_success_rate_volumes_and_durations(syncs: Path) -> None:
    for name in ("tolerant", "tolerant", "strict", "clean"):
        launch(syncs, name, {})

    result = invoke("stats", "--json")

    data = json.loads(result.stdout)["syncs"]
    assert (data["tolerant"]["runs"], data["tolerant"]["success_rate"]) == (2, 1.0)
    assert data["tolerant"]["records"]["created"] == 9 and data["tolerant"]["records"]["unchanged"] == 9
    assert (data["strict"]["runs"], data["strict"]["success_rate"]) == (1, 0.0)
    assert data["clean"]["p50_s"] > 0 and data["tolerant"]["p95_s"] >= data["tolerant"]["p50_s"]
    table = invoke("stats", "tolerant")
    assert table.stdout.splitlines()[2].split()[:3] == ["tolerant", "2", "100%"]


@pytest.mark.slow
def test_sync_statistics_asset_shows_per_sync_tables_and_numbers(syncs: Path) -> None:
    for name in ("tolerant", "strict", "strict"):
        launch(syncs, name, {})
    launch(syncs, "clean", {}, dry_run=True)  # left out of the statistics
    asset = build_statistics_asset(load_configs(syncs))

    with DagsterInstance.get() as instance:
        result = materialize([asset], instance=instance)
    [materialization] = result.asset_materializations_for_node("sync_statistics")
    meta = materialization.metadata

    rows = {r.data["sync"]: r.data for r in meta["syncs"].value.records}  # type: ignore[attr-defined]
    assert set(rows) == {"clean", "tolerant", "strict"}
    assert (rows["strict"]["runs"], rows["strict"]["success"], rows["strict"]["failed"]) == (2, 0.0, 2)
    assert (rows["tolerant"]["runs"], rows["tolerant"]["success"], rows["tolerant"]["failed"]) == (1, 1.0, 1)
    assert rows["clean"]["runs"] == 0 and rows["clean"]["success"] is None
    assert [c.name for c in meta["syncs"].value.schema.columns] == ["sync", "runs", "success", "failed", "p95_s"]  # type: ignore[attr-defined]
    assert meta["tolerant_summary"].value.startswith(
        "1 run(s), 100% successful (1 partial) · 10 records read: 9 created, 0 updated, 0 deleted, 0 unchanged, "
        "1 failed · duration p50 "
    )
    assert meta["clean_summary"].value == "no run in the window"
    assert meta["runs"].value == 3
    assert meta["success_rate"].value == pytest.approx(1 / 3, abs=1e-3)
    assert meta["tolerant_success_rate"].value == 1.0 and meta["tolerant_records"].value == 10


@pytest.mark.slow
def test_the_statistics_sensor_refreshes_after_sync_runs_end_but_not_after_dry_runs(syncs: Path) -> None:
    defs = build_definitions(load_configs(syncs))
    sensor_def = defs.resolve_sensor_def(STATISTICS_SENSOR)
    assert STATISTICS_SCHEDULE not in {s.name for s in defs.schedules or []}  # no hourly refresh any more

    def tick(cursor: str | None) -> tuple[list[RunRequest], str | None]:
        with DagsterInstance.get() as instance:
            context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            result = sensor_def.evaluate_tick(context)
        return list(result.run_requests or []), result.cursor

    requests, cursor = tick(None)
    assert requests == [] and cursor is not None
    launch(syncs, "clean", {}, dry_run=True)
    requests, cursor = tick(cursor)
    assert requests == []  # a dry run changes no statistics

    first, second = launch(syncs, "tolerant", {}), launch(syncs, "strict", {})
    requests, cursor = tick(cursor)

    [request] = requests
    assert request.job_name in (None, "refresh_sync_statistics")
    assert request.tags["sync/statistics_after"] == f"{first[:8]}, {second[:8]}"
    assert tick(cursor)[0] == []  # each ended run refreshes once


@pytest.mark.slow
def test_history_before_any_run_reads_nothing_and_creates_nothing(syncs: Path, tmp_path: Path) -> None:
    result = invoke("history")

    assert result.exit_code == 0 and "no runs" in result.stdout
    assert invoke("stats", "clean").stdout.splitlines()[2].split()[:3] == ["clean", "0", "-"]
    assert invoke("show", "0123456789").exit_code == 2
    assert not (tmp_path / "target.db").exists()


def test_history_names_an_unreachable_ledger_database(syncs: Path, tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/ledger"
    write_config(syncs, sql_sync("clean", tmp_path / "clean.db", tmp_path / "target.db", mapping=PEOPLE_MAPPING))
    config_file = syncs / "clean.yaml"
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["target"]["url"] = unreachable
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")

    result = invoke("history", "clean")

    assert result.exit_code == 1
    assert "127.0.0.1:1/ledger" in result.stderr and "_sync_runs" in result.stderr


@pytest.mark.slow
def test_history_of_every_sync_lists_what_it_can_and_names_an_unreachable_ledger(
    syncs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens on port 1: the ledger of ``remote`` is unreachable, the others are still listed."""
    monkeypatch.setenv("SP_HISTORY_PW", "Hist-Canary-51@pw")
    remote = "postgresql://reporter:${SP_HISTORY_PW}@127.0.0.1:1/warehouse"
    clean = json.loads(invoke("run", "clean", "--json").stdout.strip().splitlines()[-1])["run_id"]
    tolerant = json.loads(invoke("run", "tolerant", "--json").stdout.strip().splitlines()[-1])["run_id"]
    write_config(
        syncs,
        sql_sync("remote", tmp_path / "clean.db", tmp_path / "target.db", mapping=PEOPLE_MAPPING),
        target={"kind": "sql", "url": remote, "table": "people", "key": ["id"]},
    )

    result = invoke("history")
    assert result.exit_code == 1, result.output
    assert clean in result.stdout and tolerant in result.stdout
    assert "page 1 of 1 (2 run(s))" in result.stdout
    shown = "postgresql://reporter:***@127.0.0.1:1/warehouse"
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: ledger of remote unreachable at {shown}: reading _sync_runs failed: "), line
    assert "Hist-Canary" not in result.output

    only = invoke("history", "remote")
    assert only.exit_code == 1
    assert "no runs (page 1, 0 run(s) match)" in only.stdout
    assert f"error: ledger of remote unreachable at {shown}" in only.stderr
    with pytest.raises(SyncError, match=r"127\.0\.0\.1:1"):
        list_runs(load_configs(syncs))
