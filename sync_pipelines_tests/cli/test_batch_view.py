"""The batch view (seed 002): a partitioned sync's partition is its batch; stats per partition, re-run one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines_tests.factories import SourceTable, invoke, make_source, sql_sync, write_config

DAYS = [dt.datetime(2024, 1, d) for d in (1, 2, 3)]


DAY_PEOPLE = SourceTable("people", {"age": sa.String(10), "updated_at": sa.DateTime})


def people_by_day(bad_on_day: int | None) -> list[dict[str, Any]]:
    """Four people per day; on ``bad_on_day`` one age is not a number (a failing record)."""
    return [
        {"id": d * 10 + i, "age": "n/a" if (d == bad_on_day and i == 0) else str(20 + i), "updated_at": day}
        for d, day in enumerate(DAYS)
        for i in range(4)
    ]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    config = sql_sync(
        "people",
        tmp_path / "source.db",
        tmp_path / "target.db",
        target_table="people",
        mapping={"id": {"type": "integer"}, "age": {"type": "integer"}, "updated_at": {"type": "datetime"}},
        description="People by day.",
        mode="incremental",
        cursor="updated_at",
        partitions={"granularity": "daily", "start": "2024-01-01"},
    )
    syncs = tmp_path / "syncs"
    write_config(syncs, config)
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(syncs))
    return syncs


def partitions_json() -> dict[str, dict[str, Any]]:
    result = invoke("stats", "--by-partition", "--json")
    assert result.exit_code == 0, result.output
    return {p["partition"]: p for p in json.loads(result.stdout)["partitions"]}


@pytest.mark.slow
def test_stats_by_partition_and_a_failed_partition_rerun_on_its_own(folder: Path, tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", people_by_day(1), DAY_PEOPLE, replace=True)
    assert invoke("run", "people", "--partition", "2024-01-01").exit_code == 0
    failed = invoke("run", "people", "--partition", "2024-01-02")
    assert failed.exit_code == 1  # one of four records failed, above max_failure_ratio 0

    parts = partitions_json()
    assert sorted(parts) == ["2024-01-01", "2024-01-02"]
    assert (parts["2024-01-01"]["last_status"], parts["2024-01-01"]["needs_rerun"]) == ("completed", False)
    assert (parts["2024-01-02"]["last_status"], parts["2024-01-02"]["needs_rerun"]) == ("failed", True)
    assert parts["2024-01-02"]["last_counts"]["failed"] == 1 and parts["2024-01-02"]["last_counts"]["processed"] == 4
    table = invoke("stats", "--by-partition")
    assert "re-run a failed partition on its own: sync-pipelines run people --partition 2024-01-02" in table.stdout

    make_source(tmp_path / "source.db", people_by_day(None), DAY_PEOPLE, replace=True)  # the source is fixed
    rerun = invoke("run", "people", "--partition", "2024-01-02", "--json")
    assert rerun.exit_code == 0
    assert json.loads(rerun.stdout)["counts"]["processed"] == 4
    parts = partitions_json()
    assert (parts["2024-01-02"]["runs"], parts["2024-01-02"]["failed_runs"]) == (2, 1)
    assert (parts["2024-01-02"]["last_status"], parts["2024-01-02"]["needs_rerun"]) == ("completed", False)
    assert "2024-01-03" not in parts  # never run, so not in the view
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'target.db'}")
    with engine.connect() as conn:
        ids = sorted(r[0] for r in conn.execute(sa.text("SELECT id FROM people")))
    engine.dispose()
    assert ids == [0, 1, 2, 3, 10, 11, 12, 13]  # days 1 and 2 only: a partition reads just its window


def test_partition_errors_are_usage_errors(folder: Path, tmp_path: Path) -> None:
    make_source(tmp_path / "source.db", people_by_day(None), DAY_PEOPLE, replace=True)
    unknown = CliRunner().invoke(main, ["run", "people", "--partition", "1999-01-01"])
    assert unknown.exit_code == 2
    assert "sync people has no partition '1999-01-01'" in unknown.stderr
