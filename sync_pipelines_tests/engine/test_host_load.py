"""Host-metrics loads on the one load driver: resume of a re-executed run, replay of a batch after a
transient error, on the real CMDB databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from elasticsearch import Elasticsearch

from sync_pipelines import engine
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.connectors.es_hosts import HOST_SCHEMA, HostMetrics, hosts_table
from sync_pipelines.connectors.values import type_name
from sync_pipelines.engine import RunOptions
from sync_pipelines.engine.host_metrics import HostSource
from sync_pipelines.engine.manifest import BatchFile, Manifest
from sync_pipelines.engine.plan import HostPlan
from sync_pipelines.engine.staging import write_batch
from sync_pipelines.errors import PermanentConnectorError
from sync_pipelines.types import HostStatus, RecordAction, RunStatus
from sync_pipelines_tests.factories import host_config
from sync_pipelines_tests.support.databases import Databases, make_databases, terminate
from sync_pipelines_tests.support.hosts import register_pool, resources, seed_metrics


def staged(tmp_path: Path, run_id: str, batches: list[list[HostMetrics]], source: HostSource) -> Manifest:
    """A transformed host manifest of ``batches``, as extract and transform stage them."""
    manifest = Manifest(
        sync="host_metrics",
        run_id=run_id,
        stage="transform",
        full_sync=source is HostSource.GROUP,
        types={f.name: type_name(f.type) for f in HOST_SCHEMA},
        plan=HostPlan(source, "30d", "DB组"),
    )
    for index, hosts in enumerate(batches):
        path = tmp_path / f"batch-{index:06d}.arrow"
        write_batch(hosts_table(hosts), path)
        manifest.batches.append(BatchFile(index, str(path), len(hosts)))
        manifest.rows += len(hosts)
    return manifest


def found(ip: str, cpu: float) -> HostMetrics:
    return HostMetrics(ip, HostStatus.SUCCESS, max_cpu=cpu, max_memory=cpu + 1, max_disk=cpu + 2, data_points=1)


def recorded_ips(config: Any, run_id: str) -> list[str]:
    return sorted(r["host_ip"] for r in CmdbWriter(config).host_results(run_id))


def test_a_reexecuted_host_run_skips_the_batch_committed_before_its_failure(
    sqlite_dbs: Databases, es: Elasticsearch, index_prefix: str
) -> None:
    seed_metrics(es, index_prefix)
    pool = register_pool(sqlite_dbs.target_url, ["10.1.1.1", "10.1.1.3", "10.1.2.1", "10.1.2.2"])
    config = host_config(es.transport.node_pool.get().base_url, sqlite_dbs.target_url, f"{index_prefix}-*").model_copy(
        update={"batch_size": 2}
    )
    target = sa.create_engine(sqlite_dbs.target_url)
    with target.begin() as conn:  # the CMDB refuses the second batch's last host until the trigger goes
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse_host BEFORE INSERT ON server_resources WHEN NEW.ip = '10.1.2.2' "
                "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"
            )
        )
    options = RunOptions(run_id="host-run")
    manifest = engine.transform(config, engine.extract(config, options), options)
    assert [b.rows for b in manifest.batches] == [2, 2]

    # A trigger refusing a row is no race: the batch is not replayed, and the error names the host.
    with pytest.raises(
        PermanentConnectorError, match=r"rows of host 10\.1\.2\.2 to the CMDB failed: .*disk quota exceeded"
    ):
        engine.load(config, manifest, options)

    # The first batch is committed whole (resources, outcomes, resume record); the second left nothing.
    assert sorted(resources(sqlite_dbs.target_url)) == sorted([pool["10.1.1.1"], pool["10.1.1.3"]])
    assert recorded_ips(config, "host-run") == ["10.1.1.1", "10.1.1.3"]
    with target.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse_host"))
        # Edited after the failure: a re-written first batch would set it back.
        conn.execute(sa.text("UPDATE server_resources SET cpu_load = -1 WHERE ip = '10.1.1.1'"))
    target.dispose()

    result = engine.load(config, manifest, RunOptions(run_id="host-run"))

    assert result.status is RunStatus.COMPLETED
    assert result.counts.processed == 4 and result.counts.created == 4
    assert recorded_ips(config, "host-run") == ["10.1.1.1", "10.1.1.3", "10.1.2.1", "10.1.2.2"]
    assert resources(sqlite_dbs.target_url)[pool["10.1.1.1"]]["cpu_load"] == -1
    assert resources(sqlite_dbs.target_url)[pool["10.1.2.2"]]["cpu_load"] == pytest.approx(41.0)
    # The report covers every host of the run, those of the skipped batch included.
    hosts = {h["host_ip"]: h for h in result.details["hosts"]}
    assert sorted(hosts) == ["10.1.1.1", "10.1.1.3", "10.1.2.1", "10.1.2.2"]
    assert hosts["10.1.1.1"]["status"] == HostStatus.SUCCESS and hosts["10.1.1.1"]["max_cpu"] == pytest.approx(85.5)
    assert result.details["updated_host_ip_list"] == ["10.1.1.1", "10.1.1.3", "10.1.2.1", "10.1.2.2"]


@pytest.mark.slow
def test_a_host_batch_whose_connection_drops_is_replayed_whole(
    pg: Databases,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = register_pool(pg.target_url, ["10.1.1.1", "10.1.1.2"])
    config = host_config("http://127.0.0.1:1", pg.target_url, "unused-*")
    manifest = staged(tmp_path, "dropped", [[found("10.1.1.1", 1.0)], [found("10.1.1.2", 2.0)]], HostSource.POOL)
    real_pool = CmdbWriter._pool
    reads: list[int] = []

    def pool_read_then_dropped(self: CmdbWriter, conn: Any, host_ips: Any) -> dict[str, int]:
        found = real_pool(self, conn, host_ips)
        reads.append(len(found))
        if len(reads) == 2:  # the server drops the second batch's connection in the middle of its transaction
            assert terminate(pg.target_url) >= 1
        return found

    monkeypatch.setattr(CmdbWriter, "_pool", pool_read_then_dropped)

    result = engine.load(config, manifest, RunOptions(run_id="dropped"))

    assert reads == [1, 1, 1]  # the second batch was tried again, on a new connection
    assert result.status is RunStatus.COMPLETED and result.counts.created == 2
    assert resources(pg.target_url)[pool["10.1.1.2"]]["cpu_load"] == pytest.approx(2.0)
    assert recorded_ips(config, "dropped") == ["10.1.1.1", "10.1.1.2"]  # each host recorded once


@pytest.mark.slow
def test_a_host_registered_meanwhile_by_another_run_is_replayed_not_lost(
    dbs: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_pool(dbs.target_url, ["10.1.1.1"])
    config = host_config("http://127.0.0.1:1", dbs.target_url, "unused-*")
    manifest = staged(tmp_path, "race", [[found("10.1.1.1", 1.0), found("10.1.2.1", 4.0)]], HostSource.GROUP)
    real_pool = CmdbWriter._pool
    reads: list[int] = []

    def pool_read_then_raced(self: CmdbWriter, conn: Any, host_ips: Any) -> dict[str, int]:
        found = real_pool(self, conn, host_ips)
        reads.append(len(found))
        if len(reads) == 1:  # another group sync registers 10.1.2.1 right after this read
            other = sa.create_engine(dbs.target_url)
            with other.begin() as other_conn:
                other_conn.execute(sa.text("INSERT INTO hosts_pool (host_ip) VALUES ('10.1.2.1')"))
            other.dispose()
        return found

    monkeypatch.setattr(CmdbWriter, "_pool", pool_read_then_raced)

    result = engine.load(config, manifest, RunOptions(run_id="race"))

    assert reads == [1, 2]  # the first attempt hit the unique host_ip and was replayed on fresh rows
    hosts = {h["host_ip"]: h for h in result.details["hosts"]}
    assert [(ip, h["status"], h["registered"]) for ip, h in sorted(hosts.items())] == [
        ("10.1.1.1", HostStatus.SUCCESS, False),
        ("10.1.2.1", HostStatus.SUCCESS, False),
    ]
    writer = CmdbWriter(config)
    pool = writer.pool()
    assert sorted(pool) == ["10.1.1.1", "10.1.2.1"]
    assert resources(dbs.target_url)[pool["10.1.2.1"]]["cpu_load"] == pytest.approx(4.0)
    assert len(writer.host_results("race")) == 2
    assert result.counts.created == 2 and not [s for s in result.samples if s.action is RecordAction.FAILED]
    writer.engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_cmdb_check_constraint_refusing_a_host_fails_the_run_once_naming_the_host(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = make_databases(backend, tmp_path)
    dbs = next(gen)
    try:
        pool = register_pool(dbs.target_url, ["10.1.1.1", "10.1.1.2", "10.1.1.3"])
        target = sa.create_engine(dbs.target_url)
        with target.begin() as conn:
            conn.execute(sa.text("ALTER TABLE server_resources ADD CONSTRAINT cpu_in_range CHECK (cpu_load <= 100)"))
        target.dispose()
        config = host_config("http://127.0.0.1:1", dbs.target_url, "unused-*")
        manifest = staged(
            tmp_path,
            "refused",
            [[found("10.1.1.1", 10.0)], [found("10.1.1.2", 20.0), found("10.1.1.3", 250.0)]],
            HostSource.POOL,
        )
        real_pool = CmdbWriter._pool
        reads: list[int] = []

        def counted(self: CmdbWriter, conn: Any, host_ips: Any) -> dict[str, int]:
            reads.append(len(host_ips))
            return real_pool(self, conn, host_ips)

        monkeypatch.setattr(CmdbWriter, "_pool", counted)

        with pytest.raises(
            PermanentConnectorError, match=r"rows of host 10\.1\.1\.3 to the CMDB failed: .*cpu_in_range"
        ):
            engine.load(config, manifest, RunOptions(run_id="refused"))

        assert reads == [1, 2]  # the refused batch was tried once, not replayed
        # The first batch stays committed; nothing of the refused batch was written.
        assert list(resources(dbs.target_url)) == [pool["10.1.1.1"]]
        assert recorded_ips(config, "refused") == ["10.1.1.1"]
    finally:
        for _ in gen:
            pass
