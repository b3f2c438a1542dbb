"""The host-metrics part of the demo: a CMDB with a host pool, and a local Elasticsearch-API server
seeded with three days of hourly metrics for two groups of hosts.

The pool holds 25 of the 30 hosts of group `DB组` plus 2 retired hosts that send no metrics any
more: the scheduled sync reports those `no_data`, and the group full sync registers the 5 others.
The server lives only while the demo runs; the configurations find it through ``$SYNC_DEMO_ES_URL``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from elasticsearch import Elasticsearch, helpers

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.cmdb import hosts_pool_table
from sync_pipelines.demo import local_es
from sync_pipelines.kinds import Pipeline, kind_of

ES_URL_ENV = "SYNC_DEMO_ES_URL"
INDEX = "data-zabbix-host-monitor-demo"
SEED = 20250101
HOURS = 72
DB_HOSTS = [f"10.1.1.{i}" for i in range(1, 31)]
WEB_HOSTS = [f"10.2.1.{i}" for i in range(1, 11)]
RETIRED_HOSTS = ["10.1.9.1", "10.1.9.2"]
POOL = [*DB_HOSTS[:25], *RETIRED_HOSTS]
MAPPING = {
    "properties": {
        "hostIp": {"type": "keyword"},
        "hostName": {"type": "keyword"},
        "group": {"type": "keyword"},
        "@timestamp": {"type": "date"},
        "cpu": {"type": "float"},
        "memory": {"type": "float"},
        "disk": {"type": "float"},
    }
}


def build_cmdb(path: Path) -> Path:
    """Create the demo CMDB (``hosts_pool`` with :data:`POOL`) unless the file exists."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{partial}")
    try:
        table = hosts_pool_table(sa.MetaData())
        table.metadata.create_all(engine)
        now = dt.datetime(2025, 1, 1)
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [{"host_ip": ip, "host_name": _name(ip), "created_at": now, "updated_at": now} for ip in POOL],
            )
    finally:
        engine.dispose()
    os.replace(partial, path)
    return path


def _name(ip: str) -> str:
    return "db-" + ip.replace(".", "-") if ip.startswith("10.1.") else "web-" + ip.replace(".", "-")


def metric_documents(now: dt.datetime) -> Iterator[dict[str, Any]]:
    """Hourly cpu / memory / disk points of every DB and web host over the last :data:`HOURS` hours."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible demo data, not secrets
    for group, hosts in (("DB组", DB_HOSTS), ("Web组", WEB_HOSTS)):
        for ip in hosts:
            base_cpu, memory_gb, disk_gb = rng.uniform(10, 60), rng.choice([32, 64, 128]), rng.choice([500, 1000])
            for hour in range(HOURS):
                at = now - dt.timedelta(hours=hour)
                yield {
                    "hostIp": ip,
                    "hostName": _name(ip),
                    "group": group,
                    "@timestamp": at.isoformat().replace("+00:00", "Z"),
                    "cpu": round(min(100.0, base_cpu + rng.uniform(-8, 30)), 2),
                    "memory": round(memory_gb * rng.uniform(0.4, 0.95), 2),
                    "disk": float(disk_gb),
                }


def seed_metrics(url: str) -> int:
    """Create the demo index on the server at ``url`` and bulk-load the metrics; returns the count."""
    client = Elasticsearch(url, request_timeout=60)
    try:
        if client.indices.exists(index=INDEX):
            client.indices.delete(index=INDEX)
        client.indices.create(index=INDEX, mappings=MAPPING)
        now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        actions = ({"_index": INDEX, "_source": doc} for doc in metric_documents(now))
        count, _ = helpers.bulk(client, actions, refresh=True, chunk_size=2000)
        return int(count)
    finally:
        client.close()


@contextlib.contextmanager
def host_metrics_demo(configs: Sequence[SyncConfig], directory: Path) -> Iterator[str | None]:
    """While the demo runs: the CMDB built, a seeded local server, ``$SYNC_DEMO_ES_URL`` pointing at it.

    Yields a line describing the server, or None when no configuration is a host-metrics sync.
    """
    if not any(kind_of(cfg).pipeline is Pipeline.HOSTS for cfg in configs):
        yield None
        return
    build_cmdb(directory / "cmdb.db")
    (directory / "host_lists").mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(ES_URL_ENV)
    with tempfile.TemporaryDirectory(prefix="demo-es-") as data_dir, local_es.running(Path(data_dir)) as server:
        count = seed_metrics(server.url)
        os.environ[ES_URL_ENV] = server.url
        try:
            yield f"local Elasticsearch-API server at {server.url}: {count} metric points in {INDEX}"
        finally:
            if previous is None:
                os.environ.pop(ES_URL_ENV, None)
            else:
                os.environ[ES_URL_ENV] = previous


__all__ = ["ES_URL_ENV", "INDEX", "POOL", "build_cmdb", "host_metrics_demo", "metric_documents", "seed_metrics"]
