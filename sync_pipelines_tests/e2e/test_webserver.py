"""The real Dagster webserver: it loads the code location, and re-executes a failed CLI run from its failed step."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

from sync_pipelines.config import load_configs
from sync_pipelines.engine.load import BatchLoader
from sync_pipelines.history import Trigger, open_ledger
from sync_pipelines.orchestration import execute_sync
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import NAMED, make_source, named_people, sql_sync, write_config
from sync_pipelines_tests.support.webserver import RUN_STATUS, RUN_TIMEOUT_S, Webserver

REPO = Path(__file__).resolve().parents[2]

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              name
              assetNodes { assetKey { path } groupName description }
              jobs { name description }
              schedules { name cronSchedule executionTimezone }
            }
          }
        }
      }
    }
  }
}
"""

REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def documented_launch() -> dict[str, Any]:
    """The JSON body of the ``curl`` launch through the GraphQL API in docs/operations.md."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    body = text.split("<<'JSON'\n", 1)[1].split("\nJSON\n", 1)[0]
    return dict(json.loads(body))


def count(path: Path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        n = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return n


@pytest.fixture
def syncs(tmp_path: Path) -> Path:
    folder = tmp_path / "syncs"
    write_config(
        folder,
        sql_sync(
            "people", tmp_path / "source.db", tmp_path / "target.db", description="People into people.", batch_size=5
        ),
        schedule={"cron": "0 0 2 * * ?"},
        timezone="Asia/Shanghai",
    )
    write_config(
        folder,
        sql_sync(
            "people_copy",
            tmp_path / "source.db",
            tmp_path / "target.db",
            description="People into people_copy.",
            batch_size=5,
        ),
    )
    return folder


def test_the_webserver_loads_the_sync_assets(syncs: Path, webserver: Webserver) -> None:
    data = webserver.graphql(WORKSPACE_QUERY)["workspaceOrError"]

    assert data["__typename"] == "Workspace"
    [entry] = data["locationEntries"]
    assert entry["name"] == "sync_pipelines"
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    [repository] = location["repositories"]
    assets = {tuple(node["assetKey"]["path"]): node for node in repository["assetNodes"]}
    assert set(assets) == {("people",), ("people_copy",), ("sync_statistics",)}
    assert assets[("people",)]["groupName"] == "syncs"
    assert assets[("people",)]["description"] == (
        "People into people.\n\n[Run history and records of people](http://127.0.0.1:3001/syncs/people)"
    )
    jobs = {job["name"]: job for job in repository["jobs"]}
    assert {"sync_people", "sync_people_copy"} <= set(jobs)
    assert all(jobs[name]["description"] for name in ("sync_people", "sync_people_copy"))
    assert sorted(repository["schedules"], key=lambda s: s["name"]) == [
        {"name": "check_connections_schedule", "cronSchedule": "0 * * * *", "executionTimezone": "UTC"},
        {"name": "people_schedule", "cronSchedule": "0 2 * * *", "executionTimezone": "Asia/Shanghai"},
    ]


def test_the_ui_reexecutes_a_failed_cli_run_from_its_failed_step(
    tmp_path: Path, syncs: Path, webserver: Webserver, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_source(tmp_path / "source.db", named_people(12), NAMED, replace=True)
    original = BatchLoader.write_plan
    calls = {"n": 0}

    def fail_in_second_batch(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("connection lost")
        original(self, conn, plan, batch)

    monkeypatch.setattr(BatchLoader, "write_plan", fail_in_second_batch)
    with DagsterInstance.get() as instance:
        failed = execute_sync("people", instance=instance, config_directory=syncs)
    assert failed.status.value == "failed"
    assert count(tmp_path / "target.db", "people") == 5
    make_source(
        tmp_path / "source.db", named_people(0), NAMED, replace=True
    )  # re-reading the source would now find nothing

    launched = webserver.graphql(REEXECUTE, parentRunId=failed.run_id)["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = "QUEUED"
    while status not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"re-executed run still {status}"
        time.sleep(1)
        status = webserver.graphql(RUN_STATUS, runId=run_id)["runOrError"]["status"]

    assert status == "SUCCESS"
    assert count(tmp_path / "target.db", "people") == 12
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.parent_run_id == failed.run_id
        assert run.tags["sync/status"] == "completed"
        assert run.tags["sync/triggered_by"] == "retry"
        steps = {e.step_key for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_step_start}
    assert steps == {"people.people_load", "people_no_failed_records", "people_no_open_conflicts"}


CONFLICT_CHECK = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status evaluation { severity } } }
      }
    }
  }
}
"""

LAUNCH_RESOLVE = """
mutation Launch($config: RunConfigData!) {
  launchRun(executionParams: {
    selector: {
      repositoryLocationName: "sync_pipelines", repositoryName: "__repository__", jobName: "resolve_conflicts"
    },
    runConfigData: $config
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def conflict_check_status(webserver: Webserver, asset: str) -> tuple[str | None, str | None]:
    for node in webserver.graphql(CONFLICT_CHECK)["assetNodes"]:
        if node["assetKey"]["path"] == [asset]:
            [check] = [c for c in node["assetChecksOrError"]["checks"] if c["name"] == "no_open_conflicts"]
            execution = check["executionForLatestMaterialization"]
            if execution is None:
                return None, None
            return execution["status"], (execution["evaluation"] or {}).get("severity")
    raise AssertionError(f"no asset {asset}")


def wait_for(webserver: Webserver, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = "QUEUED"
    while status not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run still {status}"
        time.sleep(1)
        status = webserver.graphql(RUN_STATUS, runId=run_id)["runOrError"]["status"]
    return status


def test_a_graphql_launch_with_user_and_full_sync_is_an_api_run(
    tmp_path: Path, syncs: Path, webserver: Webserver
) -> None:
    make_source(tmp_path / "source.db", named_people(7), NAMED, replace=True)

    launch = documented_launch()
    assert launch["variables"]["user"] == "alice"
    launched = webserver.graphql(launch["query"], **{**launch["variables"], "job": "sync_people"})["launchRun"]

    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert wait_for(webserver, run_id) == "SUCCESS"
    [cfg] = [c for c in load_configs(syncs) if c.name == "people"]
    with open_ledger(cfg) as ledger:
        entry = ledger.get(run_id)
    assert entry is not None
    assert (entry.trigger, entry.user, entry.mode, entry.status) == (Trigger.API, "alice", "full", RunStatus.COMPLETED)
    assert entry.counts["created"] == 7
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags["sync/triggered_by"] == "api" and run.tags["sync/user"] == "alice"
        assert run.run_config == {"full_sync": True}


def test_the_ui_shows_a_red_conflict_check_that_the_launchpad_resolution_turns_green(
    tmp_path: Path, syncs: Path, webserver: Webserver
) -> None:
    make_source(tmp_path / "source.db", named_people(6), NAMED, replace=True)
    with DagsterInstance.get() as instance:
        assert execute_sync("people", instance=instance, config_directory=syncs).status.value == "completed"
    assert conflict_check_status(webserver, "people") == ("SUCCEEDED", "ERROR")
    for path, name in ((tmp_path / "target.db", "edited in the app"), (tmp_path / "source.db", "renamed")):
        engine = sa.create_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE people SET name = :name WHERE id = 4"), {"name": name})
        engine.dispose()
    with DagsterInstance.get() as instance:
        report = execute_sync("people", instance=instance, config_directory=syncs)
    assert (report.status.value, report.counts["conflicted"]) == ("completed", 1)
    assert conflict_check_status(webserver, "people") == ("FAILED", "ERROR")

    config = {
        "ops": {
            "resolve_selected_conflicts": {
                "config": {"sync": "people", "all": True, "choice": "keep_target", "resolved_by": "alice"}
            }
        }
    }
    launched = webserver.graphql(LAUNCH_RESOLVE, config=config)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched

    assert wait_for(webserver, launched["run"]["runId"]) == "SUCCESS"
    assert conflict_check_status(webserver, "people") == ("SUCCEEDED", "ERROR")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'target.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM people WHERE id = 4")).scalar_one() == "edited in the app"
        resolved = conn.execute(sa.text("SELECT status, resolved_by, resolution FROM _sync_conflicts")).one()
    engine.dispose()
    assert tuple(resolved) == ("resolved", "alice", "keep_target")
