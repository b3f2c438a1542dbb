"""The per-sync lease on SQLite, PostgreSQL and MariaDB, shared by the SQL and the CMDB writers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.connectors.dialects import sync_lease
from sync_pipelines.errors import ConcurrentRunError
from sync_pipelines_tests.support.databases import Databases


@pytest.mark.slow
def test_a_held_lease_refuses_a_second_holder_and_is_free_again_after(dbs: Databases) -> None:
    first, second = dbs.target(), dbs.target()  # two engines: two sessions, as two processes would have
    try:
        with sync_lease(first, "orders"):
            with (
                pytest.raises(ConcurrentRunError, match="sync orders: another run is loading it"),
                sync_lease(second, "orders", timeout_s=0.5),
            ):
                pass
            with sync_lease(second, "customers", timeout_s=0.5):
                pass  # another sync's lease is independent
        with sync_lease(second, "orders", timeout_s=0.5):
            pass
    finally:
        first.dispose()
        second.dispose()


def test_the_cmdb_writer_takes_the_sync_lease(sqlite_dbs: Databases) -> None:
    host_sync = SyncConfig.model_validate(
        {
            "name": "host_metrics",
            "source": {"kind": "elasticsearch_hosts", "endpoint": "http://127.0.0.1:9", "index": "metrics-*"},
            "target": {"kind": "cmdb", "url": sqlite_dbs.target_url},
        }
    )
    writer = CmdbWriter(host_sync)
    other = sa.create_engine(sqlite_dbs.target_url)
    try:
        with writer.lease(), pytest.raises(ConcurrentRunError), sync_lease(other, "host_metrics", timeout_s=0.5):
            pass
    finally:
        other.dispose()
        writer.engine.dispose()
