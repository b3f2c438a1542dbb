"""The kinds of sync as plug-ins: connectors that fit the engine's protocols, the registry, each kind's
`new` template, run options and result metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from dagster import MetadataValue, TableSchema
from elasticsearch import Elasticsearch

from sync_pipelines.cli import main
from sync_pipelines.config import SyncConfig, parse_config
from sync_pipelines.connectors.base import (
    HostMetricsReader,
    HostWriter,
    RangeSourceReader,
    SourceReader,
    TargetWriter,
)
from sync_pipelines.engine import run_sync
from sync_pipelines.engine.manifest import RunOptions
from sync_pipelines.errors import ConfigError
from sync_pipelines.kinds import KINDS, Pipeline, ResultTable, kind_of, source_reader, target_writer
from sync_pipelines.kinds.host_metrics import HOST_COLUMNS, HostOptions
from sync_pipelines.orchestration.kinds import dagster_metadata, kind_options, launchpad_config_class, run_values
from sync_pipelines_tests.factories import fill_template
from sync_pipelines_tests.support.hosts import register_pool, seed_metrics

PROTOCOLS = {Pipeline.TABLE: (SourceReader, TargetWriter), Pipeline.HOSTS: (HostMetricsReader, HostWriter)}


def sqlite_file(path: Path) -> str:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO orders VALUES (1, 'a', '2025-01-01 00:00:00')"))
    engine.dispose()
    return f"sqlite:///{path}"


def configs(tmp_path: Path, es_url: str) -> dict[str, SyncConfig]:
    """One small real config per source kind: SQLite databases, the test session's Elasticsearch server."""
    source = sqlite_file(tmp_path / "source.db")
    target = f"sqlite:///{tmp_path / 'target.db'}"
    table_target = {"kind": "sql", "url": target, "table": "orders_copy", "key": ["id"]}
    data: list[dict[str, Any]] = [
        {"name": "orders", "source": {"kind": "sql", "url": source, "table": "orders"}, "target": table_target},
        {
            "name": "logs",
            "source": {"kind": "elasticsearch", "endpoint": es_url, "index": "logs-*"},
            "target": table_target,
            "mapping": {"id": "_id"},
        },
        {
            "name": "hosts",
            "source": {"kind": "elasticsearch_hosts", "endpoint": es_url, "index": "metrics-*"},
            "target": {"kind": "cmdb", "url": target},
        },
        {
            "name": "users",
            "source": {"kind": "rest", "url": "http://127.0.0.1:9/api/users", "records": "data"},
            "target": table_target,
        },
    ]
    return {cfg.source.kind: cfg for cfg in map(SyncConfig.model_validate, data)}


def es_url(es: Elasticsearch) -> str:
    return str(es.transport.node_pool.get().base_url)


def test_every_kind_builds_connectors_that_fit_its_pipeline(tmp_path: Path, es: Elasticsearch) -> None:
    built = configs(tmp_path, es_url(es))
    assert sorted(built) == sorted(KINDS)
    for source_kind, cfg in built.items():
        kind = kind_of(cfg)
        assert kind is KINDS[source_kind]
        assert (kind.source_kind, kind.target_kind) == (cfg.source.kind, cfg.target.kind)
        assert isinstance(cfg.source, kind.source_model) and isinstance(cfg.target, kind.target_model)
        reader_protocol, writer_protocol = PROTOCOLS[kind.pipeline]
        reader, writer = kind.reader(cfg), kind.writer(cfg)
        assert isinstance(reader, reader_protocol), f"{kind.name}: {type(reader).__name__}"
        assert isinstance(writer, writer_protocol), f"{kind.name}: {type(writer).__name__}"
        # Only a kind that reads key ranges may split a full read among workers.
        assert kind.supports_parallel_read == isinstance(reader, RangeSourceReader)
        writer.engine.dispose()
    # The typed accessors refuse a connector of the other pipeline.
    with pytest.raises(ConfigError, match="is not a SourceReader"):
        source_reader(built["elasticsearch_hosts"])
    with pytest.raises(ConfigError, match="is not a TargetWriter"):
        target_writer(built["elasticsearch_hosts"])


def test_the_sql_table_reader_counts_and_reads_a_real_source(tmp_path: Path, es: Elasticsearch) -> None:
    reader = source_reader(configs(tmp_path, es_url(es))["sql"])
    assert reader.count(None, incremental=False) == 1
    [batch] = list(reader.read(None, incremental=False))
    assert batch.table.column("name").to_pylist() == ["a"]


def test_kind_of_names_the_known_kinds() -> None:
    cfg = SyncConfig.model_validate(
        {
            "name": "orders",
            "source": {"kind": "sql", "url": "sqlite:///x.db", "table": "orders"},
            "target": {"kind": "sql", "url": "sqlite:///y.db", "table": "orders", "key": ["id"]},
        }
    )
    unknown = cfg.model_copy(update={"source": cfg.source.model_copy(update={"kind": "mongodb"})})
    with pytest.raises(ConfigError) as raised:
        kind_of(unknown)
    assert "unknown kind 'mongodb'; known: elasticsearch, elasticsearch_hosts, rest, sql" in str(raised.value)


def test_new_host_metrics_template_validates_once_filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(tmp_path / "syncs"))
    created = CliRunner().invoke(main, ["new", "host_metrics", "--source", "elasticsearch_hosts", "--target", "cmdb"])
    assert created.exit_code == 0, created.output
    unfilled = CliRunner().invoke(main, ["validate"])
    assert unfilled.exit_code == 1
    assert "source.endpoint" in unfilled.output and "target.url" in unfilled.output
    path = tmp_path / "syncs" / "host_metrics.yaml"
    values = {
        "one sentence": "Host resources from Elasticsearch into the CMDB.",
        "Elasticsearch URL": "http://127.0.0.1:9200",
        "index pattern": "host-metrics-*",
        "CMDB SQLAlchemy URL": "sqlite:///cmdb.db",
    }
    fill_template(path, values)
    ok = CliRunner().invoke(main, ["validate"])
    assert ok.exit_code == 0, ok.output
    cfg = parse_config(path)[0]
    assert cfg is not None and kind_of(cfg).pipeline is Pipeline.HOSTS

    mismatched = CliRunner().invoke(main, ["new", "other", "--source", "elasticsearch_hosts", "--target", "sql"])
    assert mismatched.exit_code == 2 and "use --target cmdb" in mismatched.stderr


def test_launchpad_forms_round_trip_to_run_options(tmp_path: Path, es: Elasticsearch) -> None:
    for cfg in configs(tmp_path, es_url(es)).values():
        kind = kind_of(cfg)
        form = launchpad_config_class(cfg)
        defaults = form()
        options = kind_options(cfg, defaults)
        if not kind.options.model_fields:
            assert options is None and sorted(run_values(defaults)) == ["dry_run", "full_sync", "user"]
            continue
        # The pre-filled form runs the configured selection over the configured range.
        assert run_values(defaults)["host_ip_list"] == [] and run_values(defaults)["query_time_range"] == "30d"
        assert isinstance(options, HostOptions) and options.host_ips is None and options.time_range == "30d"
        given = form(host_ip_list=["10.1.1.1"], query_time_range="7d", full_sync=True)
        typed = kind_options(cfg, given)
        assert typed == HostOptions(host_ip_list=["10.1.1.1"], query_time_range="7d")
        run = RunOptions(run_id="r", full_sync=given.full_sync, kind_options=typed)
        assert isinstance(run.kind_options, HostOptions) and run.kind_options.host_ips == ["10.1.1.1"]


def test_host_result_metadata_converts_to_dagster_with_its_table_schema(
    tmp_path: Path, es: Elasticsearch, index_prefix: str
) -> None:
    seed_metrics(es, index_prefix)
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    register_pool(target, ["10.1.1.1", "10.1.1.2"])
    cfg = SyncConfig.model_validate(
        {
            "name": "hosts",
            "source": {"kind": "elasticsearch_hosts", "endpoint": es_url(es), "index": f"{index_prefix}-*"},
            "target": {"kind": "cmdb", "url": target},
        }
    )
    result = run_sync(
        cfg, RunOptions(run_id="run-meta", kind_options=HostOptions(host_ip_list=["10.1.1.1", "10.1.1.9"]))
    )

    neutral = kind_of(cfg).result_metadata(result.details)
    assert neutral["host_source"] == "host_list" and neutral["hosts_total"] == 2
    assert neutral["not_in_pool_ip_list"] == ["10.1.1.9"]
    table = neutral["hosts"]
    assert isinstance(table, ResultTable) and {row["host_ip"] for row in table.rows} == {"10.1.1.1", "10.1.1.9"}

    metadata = dagster_metadata(neutral)
    assert metadata["host_source"] == MetadataValue.text("host_list")
    assert metadata["hosts_success"] == MetadataValue.int(1)
    assert metadata["not_in_pool_ip_list"] == MetadataValue.json(["10.1.1.9"])
    hosts = metadata["hosts"]
    schema = hosts.schema  # type: ignore[attr-defined]
    assert isinstance(schema, TableSchema)
    assert [(c.name, c.type) for c in schema.columns] == [(c.name, c.type) for c in HOST_COLUMNS]
    rows = {r.data["host_ip"]: r.data for r in hosts.records}  # type: ignore[attr-defined]
    assert rows["10.1.1.1"]["status"] == "success" and rows["10.1.1.9"]["status"] == "not_in_pool"


def test_new_rest_template_validates_once_filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(tmp_path / "syncs"))
    created = CliRunner().invoke(main, ["new", "api_users", "--source", "rest", "--target", "sql"])
    assert created.exit_code == 0, created.output
    path = tmp_path / "syncs" / "api_users.yaml"
    assert "${API_USERS_API_TOKEN}" in path.read_text(encoding="utf-8")
    unfilled = CliRunner().invoke(main, ["validate"])
    assert unfilled.exit_code == 1 and "source.url" in unfilled.output
    values = {
        "one sentence": "Users of the directory API.",
        "API endpoint": "https://directory.example.com/api/v1/users",
        "target SQLAlchemy URL": "sqlite:///users.db",
        "target table": "users",
    }
    fill_template(path, values)
    ok = CliRunner().invoke(main, ["validate"])
    assert ok.exit_code == 0, ok.output
    cfg = parse_config(path)[0]
    assert cfg is not None and kind_of(cfg).name == "rest_api" and kind_of(cfg).pipeline is Pipeline.TABLE


def test_each_kind_summarises_its_source_without_credentials(tmp_path: Path, es: Elasticsearch) -> None:
    built = configs(tmp_path, es_url(es))
    summaries = {kind: kind_of(cfg).summary(cfg) for kind, cfg in built.items()}
    assert (summaries["sql"].what, summaries["sql"].label, summaries["sql"].system) == ("orders", "orders", "sqlite")
    assert summaries["elasticsearch"].what == "elasticsearch: logs-*"
    assert summaries["elasticsearch_hosts"].system == "elasticsearch"
    rest = summaries["rest"]
    assert (rest.url, rest.system) == ("http://127.0.0.1:9/api/users", "rest")
    assert rest.what == "rest: GET http://127.0.0.1:9/api/users (data)"
    # Only the kinds whose records go through the ledger's baselines keep conflicts for a person.
    assert {k for k, cfg in built.items() if kind_of(cfg).keeps_conflicts} == {"sql", "rest"}
