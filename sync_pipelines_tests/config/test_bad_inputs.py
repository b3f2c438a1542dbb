"""Bad-input corpus, part 1: configuration files and host list files, hand-written and generated.

Every broken configuration gives an error naming its file and the field (or YAML line); every bad
host-list line is reported with its line number while the valid IPs of the same file are kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.config.loader import load_configs, parse_config
from sync_pipelines.connectors.es_hosts import is_ip
from sync_pipelines.engine.host_files import parse_host_list
from sync_pipelines.errors import ConfigError
from sync_pipelines_tests.config import bad_inputs as corpus

HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HOST_BASE: dict[str, Any] = {
    "name": "host_metrics",
    "source": {"kind": "elasticsearch_hosts", "endpoint": "http://es:9200", "index": "metrics-*"},
    "target": {"kind": "cmdb", "url": "sqlite:///cmdb.db"},
}


def problems_of(folder: Path, case: str, text: str | bytes) -> list[str]:
    """Write ``text`` as ``<case>.yaml`` and parse it; the config must be refused."""
    path = folder / f"{case}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    config, problems = parse_config(path)
    assert config is None, f"{case}: accepted"
    assert problems, f"{case}: refused without a message"
    for problem in problems:
        assert problem.startswith(str(path)) or problem.startswith(f"{case}.yaml"), problem
    return problems


def assert_mentions(problems: list[str], fragment: str) -> None:
    assert any(fragment in p for p in problems), f"{fragment!r} not in {problems}"


@pytest.mark.parametrize(("case", "text", "expected"), corpus.MALFORMED_YAML, ids=[c[0] for c in corpus.MALFORMED_YAML])
def test_malformed_yaml(tmp_path: Path, case: str, text: str, expected: str) -> None:
    assert_mentions(problems_of(tmp_path, case, text), expected)


CASES = corpus.WRONG_TYPES + corpus.UNKNOWN_FIELDS + corpus.MISSING


@pytest.mark.parametrize(("case", "path", "value", "expected"), CASES, ids=[c[0] for c in CASES])
def test_wrong_unknown_and_missing_fields(tmp_path: Path, case: str, path: str, value: Any, expected: str) -> None:
    assert_mentions(problems_of(tmp_path, case, corpus.mutated(path, value)), expected)


@pytest.mark.parametrize("cron", corpus.BAD_CRON)
def test_bad_cron(tmp_path: Path, cron: str) -> None:
    problems = problems_of(tmp_path, "cron", corpus.mutated("schedule", {"cron": cron}))
    assert_mentions(problems, "schedule.cron")


@pytest.mark.parametrize("value", corpus.BAD_TIME_RANGES)
def test_bad_time_range(tmp_path: Path, value: str) -> None:
    data = {**HOST_BASE, "source": {**HOST_BASE["source"], "query_time_range": value}}
    problems = problems_of(tmp_path, "range", yaml.safe_dump(data, allow_unicode=True))
    assert_mentions(problems, "source.query_time_range")
    assert_mentions(problems, "invalid time range")


@pytest.mark.parametrize(("case", "path", "value"), corpus.SQL_IN_NAMES, ids=[c[0] for c in corpus.SQL_IN_NAMES])
def test_sql_in_names_is_data_not_sql(tmp_path: Path, case: str, path: str, value: Any) -> None:
    """Names carrying SQL are accepted as names: they are quoted when used (see test_secrets_leak)."""
    file = tmp_path / f"{case}.yaml"
    file.write_text(corpus.mutated(path, value), encoding="utf-8")
    config, problems = parse_config(file)
    assert problems == [] and config is not None
    if path == "target.table":
        assert config.target.table == value  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("case", "field", "value"), corpus.CMDB_SQL_IN_NAMES, ids=[c[0] for c in corpus.CMDB_SQL_IN_NAMES]
)
def test_cmdb_names_follow_the_same_rule(tmp_path: Path, case: str, field: str, value: str) -> None:
    """A CMDB target takes the names a SQL target takes: the same rule for every target kind."""
    file = tmp_path / f"{case}.yaml"
    file.write_text(yaml.safe_dump({**HOST_BASE, "target": {**HOST_BASE["target"], field: value}}), encoding="utf-8")
    config, problems = parse_config(file)
    assert problems == [] and config is not None


@pytest.mark.parametrize(("case", "path", "value", "expected"), corpus.BAD_NAMES, ids=[c[0] for c in corpus.BAD_NAMES])
def test_names_outside_the_identifier_rule_are_refused(
    tmp_path: Path, case: str, path: str, value: Any, expected: str
) -> None:
    problems = problems_of(tmp_path, case, corpus.mutated(path, value))
    assert_mentions(problems, expected)
    assert_mentions(problems, path.split(".")[0])


def test_cmdb_target_refuses_what_a_sql_target_refuses(tmp_path: Path) -> None:
    data = {**HOST_BASE, "target": {**HOST_BASE["target"], "hosts_table": "hosts`pool"}}
    assert_mentions(problems_of(tmp_path, "cmdb", yaml.safe_dump(data)), "target.hosts_table: name 'hosts`pool'")


@pytest.mark.parametrize(("case", "path", "value", "expected"), corpus.BAD_URLS, ids=[c[0] for c in corpus.BAD_URLS])
def test_urls_are_parsed_with_their_port(tmp_path: Path, case: str, path: str, value: str, expected: str) -> None:
    assert_mentions(problems_of(tmp_path, case, corpus.mutated(path, value)), expected)


def test_a_port_reference_is_valid_until_the_run(tmp_path: Path) -> None:
    file = tmp_path / "port_ref.yaml"
    file.write_text(corpus.mutated("target.url", "postgresql://u:${PW}@h:${PGPORT}/db"), encoding="utf-8")
    assert parse_config(file)[1] == []


def test_cmdb_url_port_is_checked(tmp_path: Path) -> None:
    data = {**HOST_BASE, "target": {"kind": "cmdb", "url": "mysql+pymysql://u@h:33o6/cmdb"}}
    assert_mentions(problems_of(tmp_path, "cmdb_port", yaml.safe_dump(data)), "target.url: port '33o6'")


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://es:92x0", "port '92x0'"),
        ("https://u:p@es:0", "port '0'"),
        ("http://[::1]:${P}x", "port '${P}x'"),
        ("https://u:p#ss@es:9200", "an endpoint takes no query or fragment"),
        ("https://es:9200/?pretty", "an endpoint takes no query or fragment"),
        ("https://:9200", "the endpoint names no host"),
    ],
)
def test_elasticsearch_endpoints_are_checked(tmp_path: Path, endpoint: str, expected: str) -> None:
    data = {**HOST_BASE, "source": {**HOST_BASE["source"], "endpoint": endpoint}}
    assert_mentions(problems_of(tmp_path, "es_port", yaml.safe_dump(data)), f"source.endpoint: {expected}")


def test_elasticsearch_credentials_are_given_once(tmp_path: Path) -> None:
    source = {**HOST_BASE["source"], "endpoint": "https://u:${ES_PW}@es:9200", "username": "u", "password": "x"}
    problems = problems_of(tmp_path, "es_twice", yaml.safe_dump({**HOST_BASE, "source": source}))
    assert_mentions(problems, "source: the endpoint holds a user and password")
    assert not any("${ES_PW}" in p for p in problems)


def test_elasticsearch_endpoint_port_references_wait_for_the_run(tmp_path: Path) -> None:
    file = tmp_path / "es_ref.yaml"
    data = {**HOST_BASE, "source": {**HOST_BASE["source"], "endpoint": "https://es.example.com:${ES_PORT}"}}
    file.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert parse_config(file)[1] == []


def test_dangling_and_looping_symlinks_are_errors(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(corpus.BASE), encoding="utf-8")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing" / "orders.yaml")
    (tmp_path / "loop.yml").symlink_to(tmp_path / "loop.yml")
    with pytest.raises(ConfigError) as caught:
        load_configs(tmp_path)
    text = "\n".join(caught.value.problems)
    assert f"gone.yaml: broken symbolic link to {tmp_path / 'missing' / 'orders.yaml'}" in text
    assert "loop.yml: broken symbolic link" in text
    assert "good.yaml" not in text


def test_a_folder_holding_only_a_broken_link_is_not_valid(tmp_path: Path) -> None:
    (tmp_path / "only.yaml").symlink_to(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigError, match=r"only\.yaml: broken symbolic link"):
        load_configs(tmp_path)


WITHOUT_DAC_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
"""Runs a command without the capabilities that let root read any file: file permissions apply, as to any user."""


def make_unreadable(folder: Path, case: str) -> None:
    path = folder / f"{case}.yaml"
    if case == "no-permission":
        path.write_text(yaml.safe_dump({**corpus.BASE, "name": "locked"}), encoding="utf-8")
        path.chmod(0)
    elif case == "invalid-utf8":
        path.write_bytes(b"name: \xff\xfe\n")
    elif case == "folder":
        path.mkdir()
    elif case == "link-to-folder":
        (folder / "elsewhere").mkdir()
        path.symlink_to(folder / "elsewhere")
    elif case == "fifo":
        os.mkfifo(path)
    else:
        raise AssertionError(f"no way to make {case!r}")


@pytest.mark.slow
@pytest.mark.parametrize(("case", "expected"), corpus.UNREADABLE_ENTRIES, ids=[c[0] for c in corpus.UNREADABLE_ENTRIES])
def test_unreadable_entries_are_errors_naming_the_file(tmp_path: Path, case: str, expected: str) -> None:
    """``validate`` as a process that file permissions apply to; the valid file beside it still counts."""
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "good.yaml").write_text(yaml.safe_dump(corpus.BASE), encoding="utf-8")
    make_unreadable(folder, case)
    command = [*WITHOUT_DAC_OVERRIDE, str(Path(sys.executable).parent / "sync-pipelines"), "--config-dir", "syncs"]
    result = subprocess.run(
        [*command, "validate"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result
    assert f"syncs/{case}.yaml: {expected}" in result.stderr, result.stderr
    assert "good.yaml" not in result.stderr
    assert "1 sync configuration(s) valid, 1 file(s) invalid" in result.stdout


def test_duplicate_names_across_files_name_both_files(tmp_path: Path) -> None:
    for stem in ("a_orders", "b_orders", "c_orders"):
        (tmp_path / f"{stem}.yaml").write_text(yaml.safe_dump(corpus.BASE), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_configs(tmp_path)
    problems = caught.value.problems
    assert len(problems) == 2
    for stem in ("b_orders", "c_orders"):
        assert any(p.startswith(str(tmp_path / f"{stem}.yaml")) and "a_orders.yaml" in p for p in problems)


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(corpus.BASE), encoding="utf-8")
    (tmp_path / "bad_yaml.yaml").write_text("name: [\n", encoding="utf-8")
    (tmp_path / "bad_field.yaml").write_text(corpus.mutated("batch_size", "x"), encoding="utf-8")
    (tmp_path / "not_utf8.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_configs(tmp_path)
    text = "\n".join(caught.value.problems)
    for stem in ("bad_yaml", "bad_field", "not_utf8"):
        assert f"{stem}.yaml" in text
    assert "good.yaml" not in text


FIELDS = ["name", "batch_size", "mode", "cursor", "source", "source.url", "source.table", "target.key", "target.table"]
FIELDS += ["mapping", "mapping.customer", "filter", "schedule", "timezone", "max_failure_ratio", "retry", "history"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


@pytest.mark.slow
@HYPOTHESIS
@given(path=st.sampled_from(FIELDS), value=VALUES)
def test_generated_configs_are_accepted_or_refused_by_field(tmp_path: Path, path: str, value: Any) -> None:
    file = tmp_path / "generated.yaml"
    file.write_text(corpus.mutated(path, value), encoding="utf-8")
    config, problems = parse_config(file)
    if config is None:
        assert problems and all(p.startswith(str(file)) or p.startswith("generated.yaml") for p in problems)
        top = path.split(".")[0]
        assert any(top in p or "target.key" in p or "cursor" in p for p in problems), problems
    else:
        assert problems == []


@HYPOTHESIS
@given(text=st.text(max_size=300))
def test_generated_yaml_text_never_crashes_the_loader(tmp_path: Path, text: str) -> None:
    file = tmp_path / "any.yaml"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    config, problems = parse_config(file)
    assert (config is None) == bool(problems)
    assert all("any.yaml" in p for p in problems)


@pytest.mark.parametrize(("case", "content", "invalid"), corpus.HOST_FILES, ids=[c[0] for c in corpus.HOST_FILES])
def test_host_files(case: str, content: bytes, invalid: list[tuple[int, str]]) -> None:
    parsed = parse_host_list(content.decode("utf-8", errors="replace"))
    assert [(line.number, line.text) for line in parsed.invalid] == invalid
    assert all(is_ip(ip) for ip in parsed.ips)
    assert len(parsed.ips) == len(set(parsed.ips))
    for line in parsed.invalid:
        assert f"line {line.number}:" in str(line)


def test_non_utf8_host_file_reports_the_line() -> None:
    parsed = parse_host_list(b"10.0.0.1\n\xff\xfe10.0.0.2\n10.0.0.3\n".decode("utf-8", errors="replace"))
    assert parsed.ips == ["10.0.0.1", "10.0.0.3"]
    assert [(line.number, line.text) for line in parsed.invalid] == [(2, "\ufffd\ufffd10.0.0.2")]


HOST_LINE = st.one_of(
    st.ip_addresses().map(str),
    st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
    st.just(""),
    st.just("# comment"),
)


@HYPOTHESIS
@given(lines=st.lists(HOST_LINE, max_size=30))
def test_generated_host_files_keep_valid_ips_and_number_bad_lines(lines: list[str]) -> None:
    text = "\n".join(lines)
    parsed = parse_host_list(text)
    numbered = dict(enumerate(text.splitlines(), start=1))
    for line in parsed.invalid:
        assert line.text in numbered[line.number]
        assert not is_ip(line.text)
    expected = []
    for raw in numbered.values():
        value = raw.split("#", 1)[0].strip()
        if value and is_ip(value) and value not in expected:
            expected.append(value)
    assert parsed.ips == expected
