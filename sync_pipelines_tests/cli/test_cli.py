"""The ``sync-pipelines`` command: validate, list, run (with --json and exit codes) and demo."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, RunsFilter

from sync_pipelines.orchestration import ensure_dagster_home
from sync_pipelines.types import COUNT_KEYS as ALL_COUNT_KEYS
from sync_pipelines_tests.factories import (
    PEOPLE_MAPPING,
    invoke,
    sql_sync,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
JSON_KEYS = {"run_id", "sync", "status", "counts", "watermark"}
COUNT_KEYS = set(ALL_COUNT_KEYS)


def run_json(name: str, *flags: str) -> tuple[int, dict[str, Any]]:
    result = invoke("run", name, "--json", *flags)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # exactly one JSON object on stdout
    return result.exit_code, json.loads(lines[0])


def test_validate_counts_the_valid_configurations(syncs: Path) -> None:
    result = invoke("validate")

    assert result.exit_code == 0
    assert result.stdout.strip() == "3 sync configuration(s) valid"


def test_validate_prints_every_problem_and_exits_1(syncs: Path) -> None:
    (syncs / "broken.yaml").write_text("name: broken\nbatch_size: 0\n", encoding="utf-8")
    (syncs / "garbled.yaml").write_text("name: [unclosed\n", encoding="utf-8")

    result = invoke("validate")

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("syncs/broken.yaml:") and "batch_size" in line for line in lines)
    assert any(line.startswith("syncs/broken.yaml:") and "source" in line for line in lines)
    assert any(line.startswith("syncs/garbled.yaml:") and "YAML" in line for line in lines)
    assert result.stdout.strip() == "3 sync configuration(s) valid, 2 file(s) invalid"


@pytest.mark.slow
def test_a_valid_sync_runs_while_another_file_is_broken(syncs: Path) -> None:
    (syncs / "broken.yaml").write_text("name: broken\nbatch_size: 0\n", encoding="utf-8")
    (syncs / "port.yaml").write_text(
        (syncs / "clean.yaml").read_text().replace("name: clean", "name: port").replace("sqlite:///", "sqlite://h:5x/"),
        encoding="utf-8",
    )

    code, report = run_json("clean")
    listing = invoke("list")

    assert code == 0 and report["status"] == "completed"
    assert "clean" in listing.stdout and "port" not in listing.stdout
    warnings = listing.stderr.splitlines()
    assert any(w.startswith("warning: syncs/broken.yaml: batch_size") for w in warnings), warnings
    assert any(w.startswith("warning: syncs/port.yaml: source.url: port '5x'") for w in warnings), warnings
    assert invoke("validate").exit_code == 1


@pytest.mark.slow
def test_run_json_reports_a_completed_run_recorded_on_the_instance(syncs: Path) -> None:
    code, report = run_json("clean")

    assert code == 0
    assert set(report) == JSON_KEYS
    assert set(report["counts"]) == COUNT_KEYS
    assert report["sync"] == "clean" and report["status"] == "completed"
    assert (report["counts"]["processed"], report["counts"]["created"]) == (9, 9)

    [record] = DagsterInstance.get().get_run_records(RunsFilter(run_ids=[report["run_id"]]))
    run = record.dagster_run
    assert run.job_name == "sync_clean" and run.is_success
    assert run.tags["sync/name"] == "clean" and run.tags["sync/status"] == "completed"
    assert run.tags["sync/trigger"] == "cli"
    assert run.remote_job_origin is not None  # so the UI can re-execute it in its code location
    assert run.remote_job_origin.location_name == "sync_pipelines"

    _, again = run_json("clean")
    assert (again["counts"]["created"], again["counts"]["unchanged"]) == (0, 9)


@pytest.mark.slow
def test_run_json_exit_codes_follow_the_status(syncs: Path) -> None:
    partial_code, partial = run_json("tolerant")
    failed_code, failed = run_json("strict")

    assert (partial_code, partial["status"]) == (3, "partial")
    assert (partial["counts"]["processed"], partial["counts"]["failed"], partial["counts"]["created"]) == (10, 1, 9)
    assert (failed_code, failed["status"]) == (1, "failed")
    assert failed["counts"]["failed"] == 1
    runs = DagsterInstance.get().get_run_records()
    assert {r.dagster_run.run_id for r in runs} == {partial["run_id"], failed["run_id"]}


@pytest.mark.slow
def test_dry_run_and_full_sync_flags_reach_the_run(syncs: Path) -> None:
    code, dry = run_json("clean", "--dry-run")
    assert code == 0 and dry["counts"]["created"] == 9
    _, real = run_json("clean", "--full-sync")
    assert real["counts"]["created"] == 9  # the dry run wrote nothing

    config = DagsterInstance.get().get_run_by_id(dry["run_id"])
    assert config is not None and config.run_config == {"full_sync": False, "dry_run": True}


@pytest.mark.slow
def test_run_prints_a_readable_summary(syncs: Path) -> None:
    result = invoke("run", "tolerant")

    assert result.exit_code == 3
    first, counts, *_ = result.stdout.splitlines()
    assert first.startswith("tolerant: partial in ")
    assert "processed=10" in counts and "created=9" in counts and "failed=1" in counts


@pytest.mark.slow
def test_run_of_an_unknown_sync_lists_the_known_ones(syncs: Path) -> None:
    result = invoke("run", "nope")

    assert result.exit_code == 2
    assert "unknown sync 'nope'; known syncs: clean, strict, tolerant" in result.stderr
    assert DagsterInstance.get().get_run_records() == []


@pytest.mark.slow
def test_list_shows_mode_schedule_and_last_status(syncs: Path) -> None:
    run_json("tolerant")
    assert invoke("run", "clean", "--dry-run").exit_code == 0  # a dry run is no last status

    result = invoke("list")

    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "MODE", "SCHEDULE", "LAST", "STATUS", "LAST", "RUN"]
    by_name = {row.split()[0]: row for row in rows}
    assert sorted(by_name) == ["clean", "strict", "tolerant"]
    assert "0 0 2 * * ? (enabled, UTC)" in by_name["clean"] and "never run" in by_name["clean"]
    assert "manual" in by_name["tolerant"] and "partial" in by_name["tolerant"]


@pytest.mark.slow
def test_demo_runs_every_sync_and_fails_when_one_fails(syncs: Path, tmp_path: Path) -> None:
    result = invoke("demo", "--directory", str(tmp_path / "demo"))

    assert result.exit_code == 1
    progress, summary = result.stdout.split("\n== demo summary\n")
    lines = {line.split()[0]: line for line in progress.splitlines()[1:]}
    summed = {line.split()[0]: line for line in summary.splitlines()}
    assert sorted(summed) == ["clean", "strict", "tolerant"]
    assert all(summed[name].startswith(lines[name]) and " run " in summed[name] for name in summed)
    assert sorted(lines) == ["clean", "strict", "tolerant"]
    assert "completed" in lines["clean"] and "processed=9 created=9" in lines["clean"]
    assert "partial" in lines["tolerant"] and "failed=1" in lines["tolerant"]
    assert "failed" in lines["strict"].split()[1]
    assert "failed: strict" in result.stderr
    assert any((tmp_path / "demo").iterdir())

    (syncs / "strict.yaml").unlink()
    assert invoke("demo", "--directory", str(tmp_path / "demo")).exit_code == 0


@pytest.mark.slow
def test_without_dagster_home_the_cli_uses_the_project_home(
    syncs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME")
    (tmp_path / "dagster.local.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")

    code, report = run_json("clean")

    home = tmp_path / ".dagster_home"
    assert code == 0
    assert os.environ["DAGSTER_HOME"] == str(home)
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == "telemetry:\n  enabled: false\n"
    with DagsterInstance.get() as instance:
        assert Path(instance.root_directory) == home
        assert [r.dagster_run.run_id for r in instance.get_run_records()] == [report["run_id"]]


def test_the_project_home_keeps_its_own_settings_and_is_configured_without_a_project_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert ensure_dagster_home(bare) == bare / ".dagster_home"
    # No settings in the working folder: the source checkout's, never Dagster's defaults.
    written = (bare / ".dagster_home" / "dagster.yaml").read_text(encoding="utf-8")
    assert written == (REPO / "dagster.local.yaml").read_text(encoding="utf-8")

    monkeypatch.delenv("DAGSTER_HOME")
    (bare / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    (bare / ".dagster_home" / "dagster.yaml").write_text("# edited\n", encoding="utf-8")
    ensure_dagster_home(bare)
    assert (bare / ".dagster_home" / "dagster.yaml").read_text(encoding="utf-8") == "# edited\n"


@pytest.mark.slow
def test_a_dagster_home_without_settings_gets_the_project_file_once(
    syncs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "empty_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (tmp_path / "dagster.local.yaml").write_text((REPO / "dagster.local.yaml").read_text(), encoding="utf-8")

    first = invoke("run", "clean")
    second = invoke("run", "clean")

    assert first.exit_code == 0 and second.exit_code == 0
    note = f"{home} had no dagster.yaml; wrote the project's instance settings there"
    assert note in first.stderr and note not in second.stderr
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.local.yaml").read_text()
    for result in (first, second):
        assert "Telemetry:" not in result.output and "No dagster instance configuration file" not in result.output
    with DagsterInstance.get() as instance:
        assert not instance.telemetry_enabled and instance.run_monitoring_enabled
        assert instance.run_retries_enabled


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "overrides", "cause"),
    [
        ("unset_var", {"source": {"kind": "sql", "url": "sqlite:///${SP_UNSET_DB}", "table": "people"}}, "SP_UNSET_DB"),
        ("missing_table", {"source": {"kind": "sql", "url": "sqlite:///{db}", "table": "nope"}}, "'nope'"),
        ("unknown_column", {"mapping": {"id": {"type": "integer"}, "shoe_size": {"type": "integer"}}}, "shoe_size"),
    ],
)
def test_a_handled_failure_prints_one_line_and_v_prints_the_trace(
    syncs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, overrides: dict[str, Any], cause: str
) -> None:
    monkeypatch.delenv("SP_UNSET_DB", raising=False)
    if "source" in overrides:
        overrides["source"]["url"] = overrides["source"]["url"].replace("{db}", str(tmp_path / "clean.db"))
    write_config(syncs, sql_sync(case, tmp_path / "clean.db", tmp_path / "target.db", mapping=PEOPLE_MAPPING))
    data = yaml.safe_load((syncs / f"{case}.yaml").read_text())
    (syncs / f"{case}.yaml").write_text(yaml.safe_dump({**data, **overrides}), encoding="utf-8")

    quiet = invoke("run", case)
    verbose = invoke("run", case, "-v")

    assert quiet.exit_code == 1 and verbose.exit_code == 1
    assert "Stack Trace:" not in quiet.output and "Traceback" not in quiet.output
    lines = [line for line in quiet.output.splitlines() if cause in line]
    assert len(lines) == 1, quiet.output
    assert re.search(rf"error: sync '{case}', (extract|transform|load): .*{re.escape(cause)}", lines[0]), lines
    assert "Stack Trace:" in verbose.output
    run_id = quiet.stdout.split("  run ")[1].split()[0]
    failures = DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    error = failures[0].dagster_event.step_failure_data.error  # type: ignore[union-attr]
    assert error is not None and error.stack  # the full trace stays in the run's event log
