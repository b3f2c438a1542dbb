"""``sync-pipelines run`` for host-metrics syncs: host lists, host files, time ranges, group full sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from sync_pipelines.cli import main
from sync_pipelines_tests.factories import host_sync_config, write_config
from sync_pipelines_tests.support.hosts import register_pool, resources, seed_metrics

pytestmark = pytest.mark.slow  # every test here takes seconds (Dagster, CLI or server runs)


@pytest.fixture
def folder(tmp_path: Path, es: Elasticsearch, index_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    seed_metrics(es, index_prefix)
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    register_pool(target, ["10.1.1.1", "10.1.1.2"])
    write_config(
        tmp_path / "syncs", host_sync_config(es.transport.node_pool.get().base_url, target, f"{index_prefix}-*")
    )
    return tmp_path / "syncs"


def cli(folder: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config-dir", str(folder), *args])
    return result.exit_code, result.stdout, result.stderr


def test_run_for_a_host_list_and_a_file(folder: Path, tmp_path: Path) -> None:
    code, out, _ = cli(
        folder, "run", "host_metrics", "--host", "10.1.1.1", "--host", "10.1.1.99", "--time-range", "60d"
    )
    assert code == 0, out
    assert "host_metrics: completed" in out
    lines = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.startswith("  10.")}
    assert lines == {"10.1.1.1": ["success", "created"], "10.1.1.99": ["not_in_pool", "skipped"]}
    assert [r["cpu_load"] for r in resources(f"sqlite:///{tmp_path / 'cmdb.db'}").values()] == [99.0]

    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# pool hosts\n10.1.1.2\nbogus\n\n", encoding="utf-8")
    code, out, err = cli(folder, "run", "host_metrics", "--hosts-file", str(hosts), "--json")
    assert code == 0
    assert f"{hosts}: line 3: 'bogus' is not an IP address; skipped" in err
    report = json.loads(out)
    assert report["status"] == "completed" and report["counts"]["skipped"] == 1  # 10.1.1.2: no data in 30d


def test_group_full_sync_and_usage_errors(folder: Path, tmp_path: Path) -> None:
    code, out, _ = cli(folder, "run", "host_metrics", "--full-sync")
    assert code == 0, out
    assert "10.1.2.1" in out and len(resources(f"sqlite:///{tmp_path / 'cmdb.db'}")) == 5
    new = "10.1.1.3, 10.1.1.99, 10.1.2.1, 10.1.2.2"
    assert f"  registered 4 new host(s) in hosts_pool: {new}" in out.splitlines()
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  10.")}
    assert lines["10.1.2.1"] == ["success", "created", "registered"] and lines["10.1.1.1"] == ["success", "created"]

    for bad in ("10.9.0.1:22", "not-an-ip", "# comment"):
        code, _, err = cli(folder, "run", "host_metrics", "--host", "10.1.1.1", "--host", bad)
        assert code == 2, err
        assert f"Invalid value for --host: {bad!r} is not an IP address" in err

    code, _, err = cli(folder, "run", "host_metrics", "--time-range", "7x")
    assert code == 2 and "invalid time range '7x'" in err


def test_a_dry_run_on_a_fresh_cmdb_predicts_what_the_run_then_does(folder: Path, tmp_path: Path) -> None:
    """hosts_pool filled, server_resources not created yet: the dry run predicts the creations, per host."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cmdb.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE server_resources"))
    engine.dispose()
    args = ("run", "host_metrics", "--host", "10.1.1.1", "--host", "10.1.1.2", "--host", "10.1.1.99")

    code, dry_out, _ = cli(folder, *args, "--dry-run", "--time-range", "60d")
    code_real, real_out, _ = cli(folder, *args, "--time-range", "60d")

    assert (code, code_real) == (0, 0)
    assert "(dry run, nothing written)" in dry_out

    def hosts(out: str) -> dict[str, list[str]]:
        return {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.startswith("  10.")}

    expected = {
        "10.1.1.1": ["success", "created"],
        "10.1.1.2": ["success", "created"],
        "10.1.1.99": ["not_in_pool", "skipped"],
    }
    assert hosts(dry_out) == hosts(real_out) == expected
    assert len(resources(f"sqlite:///{tmp_path / 'cmdb.db'}")) == 2


def test_a_host_run_keeps_each_host_in_the_run_history(folder: Path, tmp_path: Path) -> None:
    """Host outcomes are records of the run like a table sync's: `show` lists them, with the changed figures."""
    args = ("run", "host_metrics", "--host", "10.1.1.1", "--host", "10.1.1.99", "--time-range", "60d", "--json")
    code, out, _ = cli(folder, *args)
    assert code == 0, out
    first = json.loads(out)["run_id"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cmdb.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE server_resources SET cpu_load = 1.5"))
    code, out, _ = cli(folder, *args)
    assert code == 0, out
    second = json.loads(out)["run_id"]

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, record_key, entity, action, changes, error FROM _sync_records ORDER BY id")
        ).all()
    engine.dispose()
    by_run = {run: [(r.record_key, r.entity, r.action) for r in rows if r.run_id == run] for run in (first, second)}
    assert by_run[first] == [
        ('{"host_ip":"10.1.1.1"}', "server_resources", "created"),
        ('{"host_ip":"10.1.1.99"}', "server_resources", "skipped"),
    ]
    assert by_run[second] == [
        ('{"host_ip":"10.1.1.1"}', "server_resources", "updated"),
        ('{"host_ip":"10.1.1.99"}', "server_resources", "skipped"),
    ]
    updated = next(r for r in rows if r.run_id == second and r.action == "updated")
    assert json.loads(updated.changes)["cpu_load"] == [1.5, 99.0]

    code, out, _ = cli(folder, "show", second)
    assert code == 0, out
    assert "10.1.1.1" in out and "cpu_load" in out and "1.5" in out and "99.0" in out
    assert "10.1.1.99" in out and "host is not in the host pool" in out
