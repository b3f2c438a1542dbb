"""Loading the code location: one asset, job and schedule per configuration file, or a clear load failure."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    Definitions,
    GraphDefinition,
    OpDefinition,
    define_asset_job,
)

from sync_pipelines.orchestration import Stage, job_name, op_name, pool_name, schedule_name

REPO = Path(__file__).resolve().parents[2]
MODULE = "sync_pipelines.definitions"


def sync_yaml(name: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "description": f"{name} from the ERP.",
        "source": {"kind": "sql", "url": "sqlite:///erp.db", "table": name},
        "target": {"kind": "sql", "url": "postgresql+psycopg://app:${APP_PASSWORD}@db/app", "table": f"wh_{name}"},
    }
    data["target"]["key"] = ["id"]
    data.update(overrides)
    return data


def write(folder: Path, data: dict[str, Any], filename: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (filename or f"{data['name']}.yaml")).write_text(yaml.safe_dump(data), encoding="utf-8")


def load_location(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Definitions:
    """Import ``sync_pipelines.definitions`` afresh with ``folder`` as the configuration folder."""
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(folder))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    defs = importlib.import_module(MODULE).defs
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    Definitions.validate_loadable(defs)
    return defs


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "syncs"
    write(folder, sync_yaml("orders", mode="incremental", cursor="updated_at", schedule={"cron": "0 0 2 * * ?"}))
    write(
        folder,
        sync_yaml("users", schedule={"cron": "*/15 * * * *", "enabled": False}, timezone="Asia/Shanghai"),
        filename="users.yml",
    )
    write(folder, sync_yaml("departments", description=""))
    return folder


def test_every_file_becomes_an_asset_and_a_job(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    defs = load_location(monkeypatch, folder)

    assert sorted(key.to_user_string() for key in defs.resolve_all_asset_keys()) == [
        "departments",
        "orders",
        "sync_statistics",
        "users",
    ]
    for name in ("orders", "users", "departments"):
        asset = defs.resolve_assets_def(AssetKey(name))
        spec = asset.specs_by_key[AssetKey(name)]
        assert spec.group_name == "syncs"
        assert spec.description
        assert spec.metadata["target_table"].value == f"wh_{name}"
        assert spec.metadata["target_url"].value == "postgresql+psycopg://app:***@db/app"
        assert spec.kinds == {"sqlite", "postgres"}
        assert spec.tags["sync/name"] == name
        graph = asset.node_def
        assert isinstance(graph, GraphDefinition)
        ops = {node.name: node for node in graph.node_defs}
        assert list(ops) == [op_name(name, stage) for stage in Stage]
        for op in ops.values():
            assert isinstance(op, OpDefinition)
            assert op.pool == pool_name(name) == f"sync/{name}"
            assert op.description

        job = defs.resolve_job_def(job_name(name))
        assert job.name == f"sync_{name}"
        assert job.executor_def.name == "in_process"
        assert job.run_tags["sync/name"] == name
        assert job.description and name in job.description
        assert job.asset_layer.executable_asset_keys == {AssetKey(name)}
        fields = job.run_config_schema.config_type.fields  # type: ignore[attr-defined]  # the flat launchpad form
        assert set(fields) == {"full_sync", "dry_run", "user"}
        assert all(field.description for field in fields.values())
        defaults = {key: field.default_value for key, field in fields.items()}
        assert defaults == {"full_sync": False, "dry_run": False, "user": ""}

    descriptions = {key.to_user_string(): spec.description for key, spec in _specs(defs).items()}
    link = "\n\n[Run history and records of {0}](http://127.0.0.1:3001/syncs/{0})"
    assert descriptions["orders"] == "orders from the ERP." + link.format("orders")
    assert descriptions["departments"] == "Sync of departments into wh_departments (full)." + link.format("departments")


def _specs(defs: Definitions) -> dict[AssetKey, Any]:
    return {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def test_materializing_from_the_asset_graph_runs_in_process_with_the_same_form(
    monkeypatch: pytest.MonkeyPatch, folder: Path
) -> None:
    job = load_location(monkeypatch, folder).resolve_implicit_global_asset_job_def()

    assert job.executor_def.name == "in_process"
    ops = job.run_config_schema.config_type.fields["ops"].config_type.fields  # type: ignore[attr-defined]
    graph_form = ops["orders"].config_type.fields["config"].config_type.fields
    assert set(graph_form) == {"full_sync", "dry_run", "user"}  # one form per sync, not one per op


def test_schedules_follow_the_configured_cron(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    defs = load_location(monkeypatch, folder)

    orders = defs.resolve_schedule_def(schedule_name("orders"))
    assert orders.name == "orders_schedule"
    assert orders.cron_schedule == "0 2 * * *"  # converted from Quartz `0 0 2 * * ?`
    assert orders.execution_timezone == "UTC"
    assert orders.default_status == DefaultScheduleStatus.RUNNING
    assert orders.job_name == "sync_orders"
    assert orders.description

    users = defs.resolve_schedule_def("users_schedule")
    assert (users.cron_schedule, users.execution_timezone) == ("*/15 * * * *", "Asia/Shanghai")
    assert users.default_status == DefaultScheduleStatus.STOPPED

    assert sorted(s.name for s in defs.schedules or []) == [
        "check_connections_schedule",
        "orders_schedule",
        "users_schedule",
    ]


def test_an_invalid_file_is_shown_while_every_valid_sync_loads(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    write(folder, sync_yaml("broken", batch_size=0))
    (folder / "gone.yaml").symlink_to(folder / "nowhere.yaml")

    defs = load_location(monkeypatch, folder)

    for sync in ("orders", "users", "departments"):
        assert defs.resolve_job_def(job_name(sync)) is not None
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    broken = specs[AssetKey(["invalid_sync_config", "broken_yaml"])]
    assert broken.group_name == "invalid_sync_configs"
    assert re.search(r"broken\.yaml: batch_size: .*greater than or equal to 1", broken.description or "")
    gone = specs[AssetKey(["invalid_sync_config", "gone_yaml"])]
    assert "gone.yaml: broken symbolic link" in (gone.description or "")
    check = AssetCheckKey(broken.key, "config_valid")
    job = define_asset_job("check_invalid", selection=AssetSelection.checks(check))
    result = (
        Definitions.merge(defs, Definitions(jobs=[job]))
        .resolve_job_def("check_invalid")
        .execute_in_process(instance=DagsterInstance.ephemeral())
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and "batch_size" in (evaluation.description or "")


@pytest.mark.slow
def test_dagster_loads_the_location_and_logs_each_invalid_file(tmp_path: Path, folder: Path) -> None:
    write(folder, sync_yaml("broken", mode="incremental"))
    env = {**os.environ, "SYNC_PIPELINES_CONFIG_DIR": str(folder), "DAGSTER_HOME": str(tmp_path / "dagster_home")}

    validation = subprocess.run(
        [Path(sys.executable).parent / "dagster", "definitions", "validate", "-m", MODULE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    output = validation.stdout + validation.stderr
    assert validation.returncode == 0, output
    assert re.search(r"invalid sync configuration, not loaded: \S*broken\.yaml: .*`cursor`", output)


def test_the_project_configurations_load(monkeypatch: pytest.MonkeyPatch) -> None:
    project = REPO / "syncs"
    files = sorted(p for p in project.glob("*.y*ml"))
    assert files, "the project ships its demo sync configurations in syncs/"

    defs = load_location(monkeypatch, project)

    names = [yaml.safe_load(p.read_text(encoding="utf-8"))["name"] for p in files]
    assert sorted(key.to_user_string() for key in defs.resolve_all_asset_keys()) == sorted([*names, "sync_statistics"])
    for name in names:
        assert defs.resolve_job_def(job_name(name)).name == f"sync_{name}"
