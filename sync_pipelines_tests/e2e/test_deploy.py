"""The production instance of ``deploy/``: PostgreSQL storage, the queue, run monitoring and retries.

Every test gets a throwaway database on the real PostgreSQL server of this machine and passes its
connection to ``deploy/dagster.yaml`` through the ``DAGSTER_PG_*`` environment variables, as a
deployment does. Runs are then checked in PostgreSQL itself, not through Dagster's API only.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator

from sync_pipelines.orchestration import execute_sync, job_name
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support import faults as fs
from sync_pipelines_tests.support.databases import PG_ADMIN_URL, Databases, server_database
from sync_pipelines_tests.support.live import LiveDagster

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
EVENT_KINDS = "SELECT dagster_event_type FROM event_logs WHERE run_id = :r"
SHARED_SECTIONS = ("run_coordinator", "concurrency", "run_retries", "run_monitoring", "python_logs", "telemetry")


def _yaml(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


@pytest.fixture
def instance_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database for the instance, its connection set in ``DAGSTER_PG_*``."""
    gen = server_database(PG_ADMIN_URL, "postgresql")
    url = sa.make_url(next(gen))
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")  # trust auth here: empty
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        for _ in gen:
            pass


@pytest.fixture
def deploy_instance(instance_db: str, tmp_path: Path) -> Iterator[DagsterInstance]:
    """``deploy/dagster.yaml`` in ``$DAGSTER_HOME``, loaded the way the webserver and daemon load it."""
    home = tmp_path / "dagster_home"
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


def _query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _sync_folder(dbs: Databases, tmp_path: Path, batch_size: int = 4) -> Path:
    folder = tmp_path / "syncs"
    folder.mkdir(exist_ok=True)
    data = fs.sync_config(dbs, batch_size=batch_size)
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return folder


def test_the_project_folder_has_no_dagster_yaml_for_dagster_dev_to_warn_about() -> None:
    """`dagster dev` started here warns about a dagster.yaml (or .yml) in the current folder it does not read."""
    assert (REPO / "dagster.local.yaml").is_file()
    assert not (REPO / "dagster.yaml").exists() and not (REPO / "dagster.yml").exists()


def test_deploy_settings_match_the_local_instance() -> None:
    """The queue, concurrency, retry and monitoring rules cannot drift between the two files."""
    local, deploy = _yaml(REPO / "dagster.local.yaml"), _yaml(DEPLOY / "dagster.yaml")
    for section in SHARED_SECTIONS:
        assert section in local, section
        assert deploy.get(section) == local[section], section
    assert set(deploy) == {*SHARED_SECTIONS, "storage"}, sorted(deploy)  # anything else is reviewed here first


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_snake(k) if k != "applyLimitPerUniqueValue" else k: _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def test_helm_values_carry_the_same_rules() -> None:
    """deploy/k8s/values.yaml is never installed here; at least its rules cannot drift from the instance's."""
    local, values = _yaml(REPO / "dagster.local.yaml"), _yaml(DEPLOY / "k8s" / "values.yaml")
    assert values["concurrency"].pop("enabled") is True
    assert _snake_keys(values["concurrency"]) == local["concurrency"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert _snake_keys(daemon["runRetries"]) == local["run_retries"]
    monitoring = _snake_keys(daemon["runMonitoring"])
    assert monitoring == {k: v for k, v in local["run_monitoring"].items() if k in monitoring}
    assert {"enabled", "start_timeout_seconds", "poll_interval_seconds"} <= set(monitoring)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "sync_pipelines.definitions"]
    scheme = _yaml(DEPLOY / "dagster.yaml")["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme
    # Secrets come from Kubernetes Secrets only.
    assert "postgresqlPassword" not in values["postgresql"] and values["generatePostgresqlPasswordSecret"] is False
    assert [k for k in _keys(values) if "password" in k.lower()] == ["generatePostgresqlPasswordSecret"]


def test_deploy_storage_takes_every_connection_value_from_the_environment() -> None:
    storage = _yaml(DEPLOY / "dagster.yaml")["storage"]
    db = storage["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"
    assert db == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    documented = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for name in PG_ENV:
        assert f"`{name}`" in documented, name


def test_deploy_workspace_loads_the_code_location() -> None:
    [entry] = _yaml(DEPLOY / "workspace.yaml")["load_from"]
    assert entry["python_module"]["module_name"] == "sync_pipelines.definitions"
    assert entry["python_module"]["location_name"] == "sync_pipelines"


def test_a_sync_run_on_the_deploy_instance_is_stored_in_postgres(
    deploy_instance: DagsterInstance, instance_db: str, sqlite_dbs: Databases, tmp_path: Path
) -> None:
    instance = deploy_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert instance.run_monitoring_enabled

    fs.seed_source(sqlite_dbs, 14)
    folder = _sync_folder(sqlite_dbs, tmp_path)
    report = execute_sync("items_sync", instance=instance, config_directory=folder)
    assert report.status is RunStatus.COMPLETED and report.counts["created"] == 14
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))

    # The run and its events are rows of the PostgreSQL database.
    [(status, tags)] = _query(instance_db, "SELECT status, run_body FROM runs WHERE run_id = :r", r=report.run_id)
    assert status == "SUCCESS" and '"sync/name"' in tags
    kinds = {k for (k,) in _query(instance_db, EVENT_KINDS, r=report.run_id)}
    assert {"PIPELINE_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION", "PIPELINE_SUCCESS"} <= kinds, kinds
    [(asset_key,)] = _query(instance_db, "SELECT asset_key FROM asset_keys")
    assert "items_sync" in asset_key


def test_syncs_run_through_the_queue_of_a_live_deploy_instance(
    instance_db: str, sqlite_dbs: Databases, tmp_path: Path
) -> None:
    """Webserver and daemon on ``deploy/``: queued runs, one run per sync at a time, all kept in PostgreSQL."""
    fs.seed_source(sqlite_dbs, 1500)
    folder = _sync_folder(sqlite_dbs, tmp_path, batch_size=50)
    other = fs.sync_config(sqlite_dbs, batch_size=500, name="other_sync")
    other["target"]["url"] = f"sqlite:///{tmp_path / 'other.db'}"
    (folder / "other_sync.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    env = {"SYNC_PIPELINES_CONFIG_DIR": str(folder)}
    dagster = LiveDagster(
        tmp_path / "live",
        "sync_pipelines.definitions",
        env,
        instance_yaml=DEPLOY / "dagster.yaml",
        workspace=DEPLOY / "workspace.yaml",
        location="sync_pipelines",
    )
    try:
        dagster.start()
        first = dagster.launch(job_name("items_sync"), {})
        second = dagster.launch(job_name("items_sync"), {})
        third = dagster.launch(job_name("other_sync"), {})
        runs = {run_id: dagster.wait_finished(run_id) for run_id in (first, second, third)}
    finally:
        dagster.stop()
    assert {r.status for r in runs.values()} == {"SUCCESS"}, {k: dagster.events(k)[-3:] for k in runs}
    one, two = sorted((runs[first], runs[second]), key=lambda r: r.start_time or 0)
    assert one.end_time is not None and two.start_time is not None
    assert two.start_time >= one.end_time  # the queue kept the two runs of items_sync apart
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))

    # Runs, their queue events and the daemon's heartbeats are in the deploy instance's database.
    stored = {
        run: (status, job) for run, status, job in _query(instance_db, "SELECT run_id, status, pipeline_name FROM runs")
    }
    assert {run: stored[run][0] for run in (first, second, third)} == dict.fromkeys((first, second, third), "SUCCESS")
    # Any other run was started by the code location's own sensors (connection checks, statistics).
    assert {job for run, (_, job) in stored.items() if run not in (first, second, third)} <= {
        "check_connections",
        "refresh_sync_statistics",
    }
    for run_id in (first, second, third):
        kinds = {k for (k,) in _query(instance_db, EVENT_KINDS, r=run_id)}
        assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= kinds, kinds
    assert _query(instance_db, "SELECT count(*) FROM daemon_heartbeats")[0][0] > 0
    assert not (dagster.home / "history").exists() and not list(dagster.home.glob("**/*.db"))  # no SQLite storage
