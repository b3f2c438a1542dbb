"""Loading sync configuration files: valid files, and one clear message per problem."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from sync_pipelines.config import SyncConfig, load_configs, parse_config
from sync_pipelines.config.loader import CONFIG_DIR_ENV, config_dir
from sync_pipelines.config.models import decimal_parts
from sync_pipelines.errors import ConfigError
from sync_pipelines.types import DeleteScan, SyncMode

REPO = Path(__file__).resolve().parents[2]

VALID = """\
name: orders
description: Orders into the warehouse.
source: {kind: sql, url: "sqlite:///erp.db", table: orders}
target: {kind: sql, url: "sqlite:///dw.db", table: orders, key: [order_id]}
mapping:
  order_id: {source: id, type: integer}
  sku: sku
  unit_price: {type: "Decimal(12, 2)"}
  amount: {type: decimal}
  source_system: {constant: erp}
  note: {default: ""}
filter:
  - {column: status, op: ne, value: draft}
  - {column: region, op: in, value: [north, south]}
  - {column: deleted_at, op: is_null}
mode: incremental
cursor: updated_at
batch_size: 500
max_failure_ratio: 0.01
schedule: {cron: "0 0 2 * * ?"}
timezone: Asia/Shanghai
"""

# A minimal valid file; the invalid cases below change one thing in it.
MINIMAL = """\
name: {name}
source: {{kind: sql, url: "sqlite:///src.db", table: t}}
target: {{kind: sql, url: "sqlite:///dst.db", table: t, key: [id]}}
"""


def write(folder: Path, file_name: str, text: str) -> Path:
    path = folder / file_name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_configs(folder)
    return caught.value.problems


@pytest.fixture(autouse=True)
def _relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages name files relative to the working folder.
    monkeypatch.chdir(tmp_path)


def test_valid_file_is_typed(tmp_path: Path) -> None:
    write(tmp_path, "orders.yaml", VALID)

    [config] = load_configs(tmp_path)

    assert isinstance(config, SyncConfig)
    assert config.mode is SyncMode.INCREMENTAL
    assert config.cursor == "updated_at"
    assert config.target.key == ["order_id"]
    assert config.source_key == ["id"]
    assert config.source_column("sku") == "sku"
    assert config.source_column("source_system") is None
    assert config.field("unit_price").type == "decimal(12,2)"
    assert config.field("amount").type == "decimal(38,9)"
    assert decimal_parts(config.field("unit_price").type or "") == (12, 2)
    assert config.field("note").default == ""
    assert [f.op for f in config.filter] == ["ne", "in", "is_null"]
    assert config.schedule is not None
    assert config.schedule.dagster_cron == "0 2 * * *"
    assert config.batch_size == 500
    assert Decimal(str(config.max_failure_ratio)) == Decimal("0.01")


def test_defaults(tmp_path: Path) -> None:
    write(tmp_path, "t.yml", MINIMAL.format(name="plain"))

    [config] = load_configs(tmp_path)

    assert config.mode is SyncMode.FULL
    assert config.mapping == {}
    assert config.source_column("anything") == "anything"
    assert config.schedule is None
    assert config.timezone == "UTC"
    assert config.target.create is True
    assert config.delete_missing is False


def test_incremental_deletes_scan_every_run_unless_told(tmp_path: Path) -> None:
    body = MINIMAL.format(name="scanned") + "mode: incremental\ncursor: updated_at\ndelete_missing: true\n"
    write(tmp_path, "a.yml", body)
    write(tmp_path, "b.yml", body.replace("scanned", "daily") + "delete_scan: daily\n")

    every, daily = load_configs(tmp_path)

    assert every.delete_missing and every.delete_scan is DeleteScan.EVERY_RUN
    assert daily.delete_scan is DeleteScan.DAILY


def test_files_load_sorted_and_other_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", MINIMAL.format(name="second"))
    write(tmp_path, "a.yml", MINIMAL.format(name="first"))
    write(tmp_path, "notes.txt", "not a config")
    (tmp_path / "archive").mkdir()  # a folder named *.yaml is an error (see test_bad_inputs)

    assert [c.name for c in load_configs(tmp_path)] == ["first", "second"]


def test_the_demo_configurations_load() -> None:
    configs = {c.name: c for c in load_configs(REPO / "syncs")}

    assert {"erp_orders", "directory_departments", "directory_users", "host_metrics", "host_metrics_group"} <= set(
        configs
    )
    orders = configs["erp_orders"]
    assert orders.mode is SyncMode.INCREMENTAL
    assert orders.schedule is not None and orders.schedule.dagster_cron == "0 2 * * *"
    assert orders.source_key == ["id"]
    for name in ("directory_departments", "directory_users"):
        assert configs[name].delete_missing
        assert configs[name].max_delete_ratio == 0.2
    assert all(c.description for c in configs.values())


def test_config_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    assert config_dir() == Path("syncs")
    monkeypatch.setenv(CONFIG_DIR_ENV, "/etc/syncs")
    assert config_dir() == Path("/etc/syncs")


# (file body, expected problem after "<file>: ")
INVALID = {
    "missing_key": (
        MINIMAL.format(name="x").replace(", key: [id]", ""),
        "target.key: field required",
    ),
    "unknown_field": (
        MINIMAL.format(name="x") + "batchsize: 10\n",
        "batchsize: extra inputs are not permitted",
    ),
    "unknown_nested_field": (
        MINIMAL.format(name="x").replace("table: t}", "table: t, colour: red}", 1),
        "source.colour: extra inputs are not permitted",
    ),
    "wrong_type": (
        MINIMAL.format(name="x") + "batch_size: lots\n",
        "batch_size: input should be a valid integer",
    ),
    "out_of_range": (
        MINIMAL.format(name="x") + "max_delete_ratio: 1.5\n",
        "max_delete_ratio: input should be less than or equal to 1",
    ),
    "bad_name": (
        MINIMAL.format(name="Orders-2"),
        "name: string should match pattern",
    ),
    "bad_decimal": (
        MINIMAL.format(name="x") + "mapping:\n  id: id\n  price: {type: 'decimal(40,2)'}\n",
        "mapping.price.type: decimal(40,2): precision must be 1-38 and scale <= precision",
    ),
    "unknown_type": (
        MINIMAL.format(name="x") + "mapping:\n  id: id\n  price: {type: money}\n",
        "mapping.price.type: unknown type 'money'",
    ),
    "source_and_constant": (
        MINIMAL.format(name="x") + "mapping:\n  id: id\n  region: {source: area, constant: north}\n",
        "mapping.region: set either `source` or `constant`, not both",
    ),
    "bad_cron": (
        MINIMAL.format(name="x") + "schedule: {cron: '0 0 2 L * ?'}\n",
        "schedule.cron: cron '0 0 2 L * ?': day-of-month: 'L' (last) is not supported",
    ),
    "bad_timezone": (
        MINIMAL.format(name="x") + "timezone: Asia/Atlantis\n",
        "timezone: unknown timezone 'Asia/Atlantis'",
    ),
    "incremental_without_cursor": (
        MINIMAL.format(name="x") + "mode: incremental\n",
        "cursor: mode `incremental` needs a `cursor` column",
    ),
    "cursor_in_full_mode": (
        MINIMAL.format(name="x") + "cursor: updated_at\n",
        "cursor: only used with mode `incremental`",
    ),
    "delete_scan_without_delete_missing": (
        MINIMAL.format(name="x") + "mode: incremental\ncursor: updated_at\ndelete_scan: hourly\n",
        "delete_scan: only used by mode `incremental` with `delete_missing: true`",
    ),
    "delete_scan_in_full_mode": (
        MINIMAL.format(name="x") + "delete_missing: true\ndelete_scan: daily\n",
        "delete_scan: only used by mode `incremental` with `delete_missing: true`",
    ),
    "delete_missing_incremental_rest": (
        "name: x\nsource: {kind: rest, url: 'http://api.example/users', incremental: {param: since}}\n"
        "target: {kind: sql, url: 'sqlite:///dst.db', table: t, key: [id]}\n"
        "mode: incremental\ncursor: updated_at\ndelete_missing: true\n",
        "delete_missing: with mode `incremental` needs a SQL source",
    ),
    "bad_delete_scan": (
        MINIMAL.format(name="x") + "mode: incremental\ncursor: u\ndelete_missing: true\ndelete_scan: weekly\n",
        "delete_scan: input should be 'every_run', 'hourly' or 'daily'",
    ),
    "bad_mode": (
        MINIMAL.format(name="x") + "mode: sometimes\n",
        "mode: input should be 'full' or 'incremental'",
    ),
    "key_not_in_mapping": (
        MINIMAL.format(name="x") + "mapping:\n  name: name\n",
        "target.key: column(s) id are not in `mapping`",
    ),
    "constant_key": (
        MINIMAL.format(name="x") + "mapping:\n  id: {constant: 1}\n",
        "target.key: column(s) id cannot be constants",
    ),
    "table_and_query": (
        MINIMAL.format(name="x").replace("table: t}", "table: t, query: 'select 1'}", 1),
        "source: set exactly one of `table` or `query`",
    ),
    "unknown_source_kind": (
        MINIMAL.format(name="x").replace("kind: sql", "kind: kafka", 1),
        "source: input tag 'kafka'",
    ),
    "filter_in_needs_list": (
        MINIMAL.format(name="x") + "filter:\n  - {column: a, op: in, value: 3}\n",
        "filter.0: `in` needs a list `value`",
    ),
    "filter_is_null_takes_no_value": (
        MINIMAL.format(name="x") + "filter:\n  - {column: a, op: is_null, value: 3}\n",
        "filter.0: `is_null` takes no `value`",
    ),
    "malformed_yaml": (
        'name: x\nsource: {kind: sql, url: "sqlite:///src.db", table: t\ntarget: nope\n',
        "line 3: invalid YAML: expected ',' or '}', but got ':'",
    ),
    "duplicate_yaml_key": (
        MINIMAL.format(name="x") + "batch_size: 10\nbatch_size: 20\n",
        "line 5: invalid YAML: duplicate key 'batch_size'",
    ),
    "duplicate_nested_yaml_key": (
        MINIMAL.format(name="x") + "mapping:\n  id: id\n  id: other\n",
        "line 6: invalid YAML: duplicate key 'id'",
    ),
    "not_a_mapping": (
        "- name: x\n",
        "expected a mapping of sync settings, got list",
    ),
    "empty_file": (
        "",
        "file is empty; expected a mapping of sync settings",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_file_names_file_and_field(tmp_path: Path, case: str) -> None:
    body, expected = INVALID[case]
    folder = tmp_path / "syncs"
    folder.mkdir()
    write(folder, f"{case}.yaml", body)

    problems = problems_of(folder)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"syncs/{case}.yaml: {expected}"), problems[0]


def test_parse_config_returns_problems_without_raising(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", MINIMAL.format(name="x") + "mode: incremental\n")

    config, problems = parse_config(path)

    assert config is None
    assert problems == ["x.yaml: cursor: mode `incremental` needs a `cursor` column"]


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00name")

    assert problems_of(tmp_path)[0].startswith("binary.yaml: cannot read file:")


def test_duplicate_sync_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL.format(name="orders"))
    write(tmp_path, "b.yaml", MINIMAL.format(name="orders"))

    assert problems_of(tmp_path) == ["b.yaml: name: sync 'orders' is already defined in a.yaml"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_configs(tmp_path / "nowhere")

    assert caught.value.problems == [
        f"nowhere: configuration folder does not exist (set {CONFIG_DIR_ENV})",
    ]


def test_every_problem_of_every_file_is_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a_ok.yaml", MINIMAL.format(name="fine"))
    write(tmp_path, "b_two.yaml", MINIMAL.format(name="two") + "batch_size: 0\ntimezone: Nowhere/Land\nextra: 1\n")
    write(tmp_path, "c_yaml.yaml", "name: [unclosed\n")
    write(tmp_path, "d_dup.yaml", MINIMAL.format(name="fine"))

    with pytest.raises(ConfigError) as caught:
        load_configs(tmp_path)

    problems = caught.value.problems
    assert [p.split(": ", 2)[:2] for p in problems] == [
        ["b_two.yaml", "batch_size"],
        ["b_two.yaml", "timezone"],
        ["b_two.yaml", "extra"],
        ["c_yaml.yaml", "line 2"],
        ["d_dup.yaml", "name"],
    ]
    # The exception's text is the whole report, one problem per line.
    assert str(caught.value).splitlines() == problems
