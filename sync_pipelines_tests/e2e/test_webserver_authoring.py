"""Through the real webserver: a file written by ``new`` shows as a job after a reload, and
``check_connections`` launched with sync names records the ``endpoints_reachable`` checks."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from sync_pipelines.cli import main
from sync_pipelines_tests.factories import NAMED, make_source, named_people, sql_sync, write_config
from sync_pipelines_tests.support.webserver import RUN_STATUS, RUN_TIMEOUT_S, Webserver

REPOSITORY_QUERY = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        locationOrLoadError {
          ... on RepositoryLocation {
            repositories {
              jobs { name }
              assetNodes {
                assetKey { path }
                assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
              }
            }
          }
        }
      }
    }
  }
}
"""

RELOAD = """
mutation { reloadRepositoryLocation(repositoryLocationName: "sync_pipelines") { __typename } }
"""

LAUNCH = """
mutation Launch($runConfigData: RunConfigData) {
  launchRun(executionParams: {
    selector: {
      repositoryLocationName: "sync_pipelines", repositoryName: "__repository__", jobName: "check_connections"
    },
    runConfigData: $runConfigData
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def repository(server: Webserver) -> tuple[set[str], dict[str, list[dict[str, object]]]]:
    data = server.graphql(REPOSITORY_QUERY)["workspaceOrError"]
    [entry] = data["locationEntries"]
    [repo] = entry["locationOrLoadError"]["repositories"]
    checks = {node["assetKey"]["path"][0]: node["assetChecksOrError"]["checks"] for node in repo["assetNodes"]}
    return {job["name"] for job in repo["jobs"]}, checks


def wait_for(server: Webserver, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = "QUEUED"
    while status not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run still {status}"
        time.sleep(1)
        status = server.graphql(RUN_STATUS, runId=run_id)["runOrError"]["status"]
    return status


def test_a_new_file_shows_after_a_reload_and_the_check_job_records_checks(
    tmp_path: Path,
    webserver: Webserver,
) -> None:
    folder = tmp_path / "syncs"
    make_source(tmp_path / "source.db", named_people(3), NAMED, replace=True)
    write_config(
        folder,
        sql_sync(
            "people", tmp_path / "source.db", tmp_path / "target.db", description="People into people.", batch_size=5
        ),
    )
    webserver.graphql(RELOAD)
    jobs, checks = repository(webserver)
    assert {"sync_people", "check_connections"} <= jobs
    # sync_statistics is not a sync: it carries no checks.
    both = sorted(
        [
            {"name": "endpoints_reachable", "blocking": False},
            {"name": "no_failed_records", "blocking": False},
            {"name": "no_open_conflicts", "blocking": False},
        ],
        key=lambda c: str(c["name"]),
    )
    assert {k: sorted(v, key=lambda c: str(c["name"])) for k, v in checks.items()} == {
        "people": both,
        "sync_statistics": [],
    }

    created = CliRunner().invoke(main, ["--config-dir", str(folder), "new", "people_copy"], catch_exceptions=False)
    assert created.exit_code == 0
    path = folder / "people_copy.yaml"
    text = path.read_text(encoding="utf-8")
    for placeholder, value in {
        "one sentence shown on the job and asset in the Dagster UI": "People again.",
        "source SQLAlchemy URL": f"sqlite:///{tmp_path / 'source.db'}",
        "source table": "people",
        "target SQLAlchemy URL": f"sqlite:///{tmp_path / 'target.db'}",
        "target table": "people_copy",
    }.items():
        text = text.replace(f'"<fill in: {placeholder}>"', value).replace(f"<fill in: {placeholder}>", value)
    path.write_text(text, encoding="utf-8")

    assert "sync_people_copy" not in repository(webserver)[0]
    reloaded = webserver.graphql(RELOAD)["reloadRepositoryLocation"]
    assert reloaded["__typename"] == "WorkspaceLocationEntry"
    jobs, checks = repository(webserver)
    assert "sync_people_copy" in jobs
    assert sorted(checks["people_copy"], key=lambda c: str(c["name"])) == both

    launched = webserver.graphql(
        LAUNCH, runConfigData={"ops": {"check_sync_connections": {"config": {"syncs": ["people_copy"]}}}}
    )
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["launchRun"]["run"]["runId"]
    assert wait_for(webserver, run_id) == "SUCCESS"
    with DagsterInstance.get() as instance:
        for name, runs in (("people_copy", [run_id]), ("people", [])):
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey(name), "endpoints_reachable"), limit=5
            )
            assert [h.run_id for h in history] == runs
            assert all(h.status.value == "SUCCEEDED" for h in history)
