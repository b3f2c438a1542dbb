"""The demo's host-metrics syncs: a seeded local Elasticsearch-API server, the CMDB, and clean shutdown."""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines.demo.hosts import POOL

pytestmark = pytest.mark.slow  # every test here takes seconds (Dagster, CLI or server runs)

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_runs_the_host_metrics_syncs_and_stops_its_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "syncs", tmp_path / "syncs")

    result = CliRunner().invoke(main, ["--config-dir", "syncs", "demo"])

    assert result.exit_code == 0, result.output
    progress = result.stdout.split("\n== demo summary\n")[0]
    lines = {line.split()[0]: line for line in progress.splitlines() if line.strip()}
    # 25 pool hosts with metrics; the 2 retired ones have none (no_data, skipped).
    assert "completed" in lines["host_metrics"] and "processed=27 created=25" in lines["host_metrics"]
    # The group sync finds 30 hosts of DB组 and registers the 5 the pool lacked.
    assert "processed=30 created=5 updated=0 unchanged=25" in lines["host_metrics_group"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo' / 'cmdb.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hosts_pool")).scalar_one() == len(POOL) + 5
        assert conn.execute(sa.text("SELECT count(*) FROM server_resources")).scalar_one() == 30
        statuses = dict(
            conn.execute(
                sa.text("SELECT status, count(*) FROM _sync_host_results WHERE sync = 'host_metrics' GROUP BY status")
            ).all()
        )
    engine.dispose()
    assert statuses == {"success": 25, "no_data": 2}
    [url] = re.findall(r"server at (http://\S+):", result.stdout)
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)  # the demo stopped its server
