"""Authoring syncs: ``new`` writes a template that validates once filled in; ``schema`` validates every config."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines.config import SyncConfig, parse_config
from sync_pipelines.config.schema import SCHEMA_FILENAME, json_schema
from sync_pipelines_tests.factories import SourceTable, fill_template, invoke, make_source

PROJECT = Path(__file__).resolve().parents[2]
ERP_ORDERS = SourceTable("orders", {"total": sa.Numeric(12, 2)})


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(tmp_path / "syncs"))
    return tmp_path / "syncs"


def fill_in(text: str, values: dict[str, str]) -> str:
    for what, value in values.items():
        text = text.replace(f'"<fill in: {what}>"', value).replace(f"<fill in: {what}>", value)
    return text


@pytest.mark.slow
def test_new_then_validate_check_and_run(folder: Path, tmp_path: Path) -> None:
    created = invoke("new", "erp_orders", "--source", "sql", "--target", "sql")
    assert created.exit_code == 0, created.output
    path = folder / "erp_orders.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("<fill in: ") == 6  # five values and the comment explaining them

    # Unfilled placeholders are named by field.
    unfilled = invoke("validate")
    assert unfilled.exit_code == 1
    assert unfilled.stderr.splitlines() == [
        "syncs/erp_orders.yaml: description: placeholder <fill in: one sentence shown on the job and asset "
        "in the Dagster UI> is not filled in",
        "syncs/erp_orders.yaml: source.url: placeholder <fill in: source SQLAlchemy URL> is not filled in",
        "syncs/erp_orders.yaml: source.table: placeholder <fill in: source table> is not filled in",
        "syncs/erp_orders.yaml: target.url: placeholder <fill in: target SQLAlchemy URL> is not filled in",
        "syncs/erp_orders.yaml: target.table: placeholder <fill in: target table> is not filled in",
    ]

    make_source(
        tmp_path / "erp.db", [{"id": 1, "total": Decimal("9.5")}, {"id": 2, "total": Decimal("12.25")}], ERP_ORDERS
    )
    path.write_text(
        fill_in(
            text,
            {
                "one sentence shown on the job and asset in the Dagster UI": "ERP orders for the application.",
                "source SQLAlchemy URL": "sqlite:///erp.db",
                "source table": "orders",
                "target SQLAlchemy URL": "sqlite:///app.db",
                "target table": "orders",
            },
        ),
        encoding="utf-8",
    )
    assert invoke("validate").output == "1 sync configuration(s) valid\n"
    checked = invoke("check", "erp_orders")
    assert checked.exit_code == 0, checked.output
    assert checked.output.splitlines()[-1] == "2 of 2 endpoint(s) OK"
    ran = invoke("run", "erp_orders", "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["counts"]["created"] == 2

    # The commented mapping examples are valid once uncommented.
    examples = path.read_text(encoding="utf-8")
    for name in ("name", "amount", "updated_at", "origin"):
        examples = examples.replace(f"  # {name}: {{", f"  {name}: {{")
    data = yaml.safe_load(examples)
    assert set(data["mapping"]) == {"id", "name", "amount", "updated_at", "origin"}
    assert SyncConfig.model_validate(data).field("amount").type == "decimal(12,2)"

    # The filled template conforms to the JSON Schema too.
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), json_schema())

    again = invoke("new", "erp_orders")
    assert again.exit_code == 1
    assert "already exists (use --force to overwrite it)" in again.stderr


def test_new_elasticsearch_template_validates_once_filled(folder: Path) -> None:
    created = CliRunner().invoke(main, ["new", "app_logs", "--source", "elasticsearch"])
    assert created.exit_code == 0, created.output
    path = folder / "app_logs.yaml"
    unfilled = CliRunner().invoke(main, ["validate"])
    assert unfilled.exit_code == 1
    assert "source.endpoint" in unfilled.output and "source.index" in unfilled.output
    values = {
        "one sentence": "Application logs from Elasticsearch.",
        "Elasticsearch URL": "http://127.0.0.1:9200",
        "index pattern": "app-logs-*",
        "target SQLAlchemy URL": "sqlite:///logs.db",
        "target table": "app_logs",
    }
    fill_template(path, values)
    ok = CliRunner().invoke(main, ["validate"])
    assert ok.exit_code == 0, ok.output
    cfg = parse_config(path)[0]
    assert cfg is not None and cfg.source.kind == "elasticsearch"


def test_new_refuses_unknown_kinds_and_bad_names(folder: Path) -> None:
    result = CliRunner().invoke(main, ["new", "logs", "--source", "mongodb"])
    assert result.exit_code == 2
    assert "source kind 'mongodb' is not available in this version; available: " in result.stderr
    assert not (folder / "logs.yaml").exists()
    bad = CliRunner().invoke(main, ["new", "Bad-Name"])
    assert bad.exit_code == 2
    assert "invalid sync name 'Bad-Name'" in bad.stderr


def test_template_points_editors_at_the_schema_file(folder: Path, tmp_path: Path) -> None:
    (tmp_path / SCHEMA_FILENAME).write_text(json.dumps(json_schema()), encoding="utf-8")
    assert invoke("new", "with_schema").exit_code == 0
    first = (folder / "with_schema.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema=../{SCHEMA_FILENAME}"


def project_configs() -> list[Path]:
    return sorted((PROJECT / "syncs").glob("*.yaml"))


def test_the_schema_command_prints_the_generated_schema() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema == json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", project_configs(), ids=lambda p: p.name)
def test_the_schema_validates_every_project_config(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), json_schema())


def test_the_project_has_configs() -> None:
    assert len(project_configs()) >= 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, "Additional properties are not allowed ('colour' was unexpected)"),
        ({"source": {"kind": "ftp", "url": "x", "table": "t"}}, "is not valid under any of the given schemas"),
        ({"mode": "sometimes"}, "'sometimes' is not one of ['full', 'incremental']"),
        ({"name": "Bad Name"}, "'Bad Name' does not match"),
        ({"mapping": {"id": 5}}, "5 is not valid under any of the given schemas"),
    ],
)
def test_the_schema_rejects_invalid_configs(change: dict[str, Any], message: str) -> None:
    data = yaml.safe_load((PROJECT / "syncs" / "erp_orders.yaml").read_text(encoding="utf-8"))
    data.update(change)
    with pytest.raises(jsonschema.ValidationError) as caught:
        jsonschema.validate(data, json_schema())
    assert message in str(caught.value.message)
