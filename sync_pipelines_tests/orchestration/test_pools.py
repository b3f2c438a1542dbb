"""The queue's rules per sync: a partitioned sync's pool takes ``partitions.max_parallel`` runs (one on SQLite),
every other pool one; the runs that move the watermark carry the tag limited to one per sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dagster import instance_for_test

from sync_pipelines.config import SyncConfig
from sync_pipelines.orchestration import build_definitions
from sync_pipelines.orchestration.names import Tag, schedule_name
from sync_pipelines.orchestration.pools import apply_pool_limits, pool_limit, pool_limits

ROOT = Path(__file__).resolve().parents[2]


def sync(name: str, target: str, **extra: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": name,
        "source": {"kind": "sql", "url": "postgresql://u@h/src", "table": "orders"},
        "target": {"kind": "sql", "url": target, "table": "orders", "key": ["id"]},
        "mode": "incremental",
        "cursor": "updated_at",
        **extra,
    }
    return SyncConfig.model_validate(data)


PARTITIONS = {"granularity": "daily", "start": "2024-01-01", "max_parallel": 3}


def test_only_partitioned_syncs_on_a_database_of_several_writers_get_more_than_one_slot() -> None:
    configs = [
        sync("pg_days", "postgresql+psycopg://u@h/dst", partitions=PARTITIONS),
        sync("maria_days", "mariadb+pymysql://u@h/dst", partitions={**PARTITIONS, "max_parallel": 2}),
        sync("lite_days", "sqlite:///t.db", partitions=PARTITIONS),
        sync("plain", "postgresql://u@h/dst"),
        sync("no_cursor", "postgresql://u@h/dst", partitions=PARTITIONS, mapping={"id": "id", "name": "name"}),
    ]
    assert [pool_limit(c) for c in configs] == [3, 2, 1, 1, 1]
    assert pool_limits(configs) == {"sync/pg_days": 3, "sync/maria_days": 2}
    assert sync("d", "postgresql://u@h/dst", partitions={"granularity": "daily", "start": "2024-01-01"}).partitions
    assert (
        pool_limit(sync("d", "postgresql://u@h/dst", partitions={"granularity": "daily", "start": "2024-01-01"})) == 2
    )


def test_the_limits_are_written_to_the_instance_and_set_back_to_one() -> None:
    with instance_for_test() as instance:
        days = sync("days", "postgresql://u@h/dst", partitions=PARTITIONS)
        assert apply_pool_limits(instance, [days, sync("plain", "postgresql://u@h/dst")]) == {"sync/days": 3}
        assert instance.event_log_storage.get_concurrency_info("sync/days").slot_count == 3
        apply_pool_limits(instance, [sync("days", "postgresql://u@h/dst")])  # partitions removed
        assert instance.event_log_storage.get_concurrency_info("sync/days").slot_count == 1


def test_schedule_runs_carry_the_plain_run_tag_and_the_instance_limits_it(tmp_path: Path) -> None:
    cfg = sync("days", "postgresql://u@h/dst", partitions=PARTITIONS, schedule={"cron": "0 0 2 * * ?"})
    schedule = build_definitions([cfg]).resolve_schedule_def(schedule_name("days"))
    assert schedule.tags[Tag.PLAIN_RUN.value] == "days"
    for path in (ROOT / "dagster.local.yaml", ROOT / "deploy" / "dagster.yaml"):
        limits = yaml.safe_load(path.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
        assert limits == [{"key": Tag.PLAIN_RUN.value, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
