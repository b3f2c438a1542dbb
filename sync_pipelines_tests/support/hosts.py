"""Host-metrics test data: points in the suite's Elasticsearch-API server, a CMDB host pool, what was written."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from elasticsearch import Elasticsearch

from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines_tests.factories import host_config
from sync_pipelines_tests.support.es import point, seed_hosts


def seed_metrics(es: Elasticsearch, prefix: str) -> None:
    """Seed the index ``<prefix>-2025.01`` with points of hosts in and out of the pool, old and recent."""
    seed_hosts(
        es,
        f"{prefix}-2025.01",
        [
            point("10.1.1.1", 1, cpu=35.5, memory=60.0, disk=500.0),
            point("10.1.1.1", 30, cpu=85.5, memory=120.5, disk=480.0),
            point("10.1.1.1", 24 * 40, cpu=99.0, memory=999.0, disk=999.0),  # outside 30d
            point("10.1.1.2", 24 * 45, cpu=50.0, memory=50.0, disk=50.0),  # only old data: no_data
            point("10.1.1.3", 2, cpu=10.0, memory=10.0, disk=10.0),
            point("10.1.1.99", 2, cpu=20.0, memory=20.0, disk=20.0),
            point("10.1.2.1", 3, cpu=40.0, memory=64.0, disk=200.0),
            point("10.1.2.2", 3, cpu=41.0, memory=32.0, disk=100.0),
            point("10.9.9.9", 3, cpu=1.0, memory=1.0, disk=1.0, group="Web组"),
        ],
    )


def register_pool(url: str, ips: list[str]) -> dict[str, int]:
    """Register ``ips`` in the CMDB host pool at ``url``; returns the pool (ip -> pool id)."""
    config = host_config("http://127.0.0.1:1", url, "unused-*")
    writer = CmdbWriter(config)
    writer.prepare()
    with writer.engine.begin() as conn:
        for ip in ips:
            conn.execute(sa.insert(writer.hosts).values(host_ip=ip, host_name=f"pool-{ip}"))
    pool = writer.pool()
    writer.engine.dispose()
    return pool


def resources(url: str) -> dict[int, dict[str, Any]]:
    """The ``server_resources`` rows the CMDB at ``url`` holds, by pool id."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT pool_id, ip, cpu_load, used_memory, total_disk FROM server_resources"))
        found = {int(r.pool_id): dict(r._mapping) for r in rows}
    engine.dispose()
    return found


def by_ip(result: Any) -> dict[str, dict[str, Any]]:
    """The per-host details of a host-metrics run result, by host IP."""
    return {h["host_ip"]: h for h in result.details["hosts"]}
