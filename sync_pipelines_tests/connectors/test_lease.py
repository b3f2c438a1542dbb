"""The per-sync lease on SQLite, PostgreSQL and MariaDB, shared by the SQL and the CMDB writers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.connectors.dialects import sync_lease
from sync_pipelines.errors import ConcurrentRunError
from sync_pipelines_tests.support.databases import Databases, make_databases


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


def test_partition_runs_share_the_lease_up_to_their_limit_and_a_plain_run_waits_for_them(dbs: Databases) -> None:
    """Shared holders (partition runs) load side by side up to ``slots``; an exclusive one (a plain run) waits
    for every shared holder, and none enters while it holds the lease. SQLite takes one writer at a time."""
    engines = [dbs.target() for _ in range(4)]
    told: list[str] = []
    try:
        with sync_lease(engines[0], "orders", slots=2):
            if dbs.backend == "sqlite":
                with (
                    pytest.raises(ConcurrentRunError),
                    sync_lease(engines[1], "orders", timeout_s=0.5, slots=2, on_wait=told.append),
                ):
                    pass
                assert told == [
                    "sync orders: waiting for the lease: sqlite allows one writer at a time, so the sync's "
                    "partition runs load one after the other"
                ]
                return
            with sync_lease(engines[1], "orders", slots=2, timeout_s=0.5):
                with (
                    pytest.raises(ConcurrentRunError),
                    sync_lease(engines[2], "orders", timeout_s=0.5, slots=2, on_wait=told.append),
                ):
                    pass  # a third partition run beyond max_parallel waits
                with pytest.raises(ConcurrentRunError), sync_lease(engines[3], "orders", timeout_s=0.5):
                    pass  # a plain run waits for the partition runs
            assert told == [
                "sync orders: waiting for the lease: 2 partition run(s) of the sync are loading, "
                "the most allowed at once"
            ]
            with (
                pytest.raises(ConcurrentRunError),
                sync_lease(engines[3], "orders", timeout_s=0.5, on_wait=told.append),
            ):
                pass
            assert told[-1] == (
                "sync orders: waiting for the lease: partition runs of the sync are loading; a plain run loads "
                "alone, after them"
            )
        with (
            sync_lease(engines[3], "orders", timeout_s=0.5),
            pytest.raises(ConcurrentRunError),
            sync_lease(engines[0], "orders", timeout_s=0.5, slots=2),
        ):
            pass  # no partition run beside a plain run
        with sync_lease(engines[0], "orders", timeout_s=0.5, slots=2):
            pass  # every slot and the gate were released
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])  # SQLite has no shared holders (see above)
def test_a_plain_run_behind_partition_runs_waits_for_them_but_not_behind_another_plain_run(
    server: str, tmp_path: Path
) -> None:
    """``behind_shared_s`` lengthens an exclusive holder's wait for shared holders only."""
    gen = make_databases(server, tmp_path)
    dbs = next(gen)
    engines = [dbs.target() for _ in range(3)]
    released = threading.Event()

    def partition_run() -> None:
        with sync_lease(engines[0], "orders", slots=2):
            time.sleep(1.5)  # longer than the plain run's own timeout below
        released.set()

    try:
        loader = threading.Thread(target=partition_run)
        loader.start()
        time.sleep(0.3)
        with sync_lease(engines[1], "orders", timeout_s=0.5, behind_shared_s=60):
            assert released.is_set()  # it got the lease once the partition run left, not before
        loader.join()
        with (
            sync_lease(engines[1], "orders"),
            pytest.raises(ConcurrentRunError),
            sync_lease(engines[2], "orders", timeout_s=0.5, behind_shared_s=60),
        ):
            pass  # another plain run holds it: the usual timeout
    finally:
        for engine in engines:
            engine.dispose()
        for _ in gen:
            pass
