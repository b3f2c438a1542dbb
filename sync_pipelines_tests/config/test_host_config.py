"""Configuration of Elasticsearch sources and the CMDB target: defaults and every refused combination."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipelines.config import load_configs
from sync_pipelines.config.elasticsearch import (
    DEFAULT_GROUP,
    ElasticsearchHostsSource,
    HostSelection,
    check_time_range,
    time_range_delta,
)
from sync_pipelines.errors import ConfigError

HOSTS = """
name: hm
source: {kind: elasticsearch_hosts, endpoint: "http://es:9200", index: "m-*"%s}
target: {kind: cmdb, url: "sqlite:///cmdb.db"}
%s
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "hm.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_configs(tmp_path)
    return caught.value.problems


def test_defaults_follow_the_seed(tmp_path: Path) -> None:
    (tmp_path / "hm.yaml").write_text(HOSTS % ("", ""), encoding="utf-8")
    [cfg] = load_configs(tmp_path)
    assert isinstance(cfg.source, ElasticsearchHostsSource)
    assert cfg.source.query_time_range == "30d" and cfg.source.max_concurrency == 10
    assert cfg.source.group == DEFAULT_GROUP == "DB组" and cfg.source.hosts is HostSelection.POOL
    assert (cfg.source.fields.host, cfg.source.fields.cpu) == ("hostIp", "cpu")
    assert (cfg.target.table, cfg.target.hosts_table, cfg.target.key) == ("server_resources", "hosts_pool", ["pool_id"])


@pytest.mark.parametrize(("value", "hours"), [("7d", 168), ("30d", 720), ("1h", 1), ("24h", 24), ("2w", 336)])
def test_time_ranges(value: str, hours: int) -> None:
    assert time_range_delta(value).total_seconds() == hours * 3600
    assert check_time_range(value) == value


@pytest.mark.parametrize(
    ("source_extra", "sync_extra", "expected"),
    [
        (", query_time_range: 30days", "", "hm.yaml: source.query_time_range"),
        (", max_concurrency: 0", "", "source.max_concurrency"),
        (", endpoint2: x", "", "source.endpoint2: extra inputs are not permitted"),
        ("", "mapping: {a: b}", "mapping: not used by a host-metrics sync"),
        ("", "mode: incremental\ncursor: ts", "not used by a host-metrics sync"),
        ("", "schedule: {cron: '0 0 2 L * ?'}", "schedule.cron"),
    ],
)
def test_refused_host_configurations(tmp_path: Path, source_extra: str, sync_extra: str, expected: str) -> None:
    found = problems(tmp_path, HOSTS % (source_extra, sync_extra))
    assert any(expected in line for line in found), found


def test_a_cmdb_target_needs_host_metrics_and_back(tmp_path: Path) -> None:
    sql_to_cmdb = """
name: hm
source: {kind: sql, url: "sqlite:///a.db", table: t}
target: {kind: cmdb, url: "sqlite:///cmdb.db"}
"""
    assert any(
        "a `cmdb` target goes with an `elasticsearch_hosts` source" in p for p in problems(tmp_path, sql_to_cmdb)
    )
    hosts_to_sql = """
name: hm
source: {kind: elasticsearch_hosts, endpoint: "http://es:9200", index: "m-*"}
target: {kind: sql, url: "sqlite:///b.db", table: t, key: [id]}
"""
    assert any("goes with an `elasticsearch_hosts` source" in p for p in problems(tmp_path, hosts_to_sql))
    bad_endpoint = HOSTS.replace('"http://es:9200"', '"es:9200"') % ("", "")
    assert any("must start with http:// or https://" in p for p in problems(tmp_path, bad_endpoint))
