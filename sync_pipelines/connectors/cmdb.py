"""The CMDB target: `hosts_pool` (registered hosts) and `server_resources` (latest resources per host).

``server_resources`` is upserted by ``pool_id`` with the maxima of the range, as the seed says:
``cpu_load`` <- max cpu, ``used_memory`` <- max memory, ``total_disk`` <- max disk. Each host's
outcome is kept in ``_sync_host_results`` (the seed's execution details), written in the same
transaction as the rows it describes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.config.elasticsearch import CmdbTarget
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.dialects import backend_of_error, sync_lease
from sync_pipelines.connectors.es_hosts import HostMetrics
from sync_pipelines.connectors.sql import classify, create_sql_engine, translate_errors
from sync_pipelines.errors import PermanentConnectorError, TransientConnectorError
from sync_pipelines.types import HostStatus, RecordAction, RecordOutcome

RESOURCE_COLUMNS = {"cpu_load": "max_cpu", "used_memory": "max_memory", "total_disk": "max_disk"}
"""Resources column <- host metric (the seed's mapping)."""
RESULTS_TABLE = bookkeeping.HOST_RESULTS_TABLE
_IN_CHUNK = 500


@dataclass
class HostResult:
    """What a run did for one host: its metrics, pool id, write action, and whether it was registered."""

    metrics: HostMetrics
    status: HostStatus
    action: RecordAction
    pool_id: int | None = None
    registered: bool = False
    error: str | None = None
    changes: dict[str, list[Any]] | None = None

    def outcome(self) -> RecordOutcome:
        """The host's record outcome in the run history: keyed by IP, with the changed figures."""
        return RecordOutcome({"host_ip": self.metrics.host_ip}, self.action, self.changes or {}, self.error or None)


def _listed(hosts: Sequence[HostMetrics], most: int = 10) -> str:
    """The IPs of a batch for an error message (the first ``most`` of them, and how many more)."""
    ips = [h.host_ip for h in hosts]
    shown = ", ".join(ips[:most])
    return shown if len(ips) <= most else f"{shown} and {len(ips) - most} more"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))


def hosts_pool_table(metadata: sa.MetaData, name: str = "hosts_pool") -> sa.Table:
    """The registered hosts: ``id`` (the ``pool_id`` of resources), unique ``host_ip``, ``host_name``."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("host_ip", sa.String(64), nullable=False, unique=True),
        sa.Column("host_name", sa.String(255)),
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
    )


class CmdbWriter:
    """Reads the host pool and writes resources and per-host results into the CMDB database."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.target, CmdbTarget)
        self.config = config
        self.target: CmdbTarget = config.target
        self.engine, self.endpoint = create_sql_engine(self.target.url, where=f"{config.name}: target.url")
        metadata = sa.MetaData(schema=self.target.db_schema)
        self.hosts = hosts_pool_table(metadata, self.target.hosts_table)
        self.resources = sa.Table(
            self.target.table,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("pool_id", sa.Integer, nullable=False, unique=True),
            sa.Column("ip", sa.String(64)),
            *[sa.Column(name, sa.Float) for name in RESOURCE_COLUMNS],
            sa.Column("created_at", sa.DateTime),
            sa.Column("updated_at", sa.DateTime),
        )
        self.results = bookkeeping.host_results_table(metadata)
        self.records = bookkeeping.records_table(metadata)

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold the sync's lease (see :func:`sync_pipelines.connectors.dialects.sync_lease`) while writing the CMDB."""
        with translate_errors(self.endpoint, "taking the sync lease"), sync_lease(self.engine, self.config.name):
            yield

    def prepare(self) -> None:
        """Create missing tables (when ``create``) and check that existing ones have the needed columns."""
        with translate_errors(self.endpoint, "preparing the CMDB tables"), self.engine.begin() as conn:
            inspector = sa.inspect(conn)
            for table in (self.hosts, self.resources):
                if inspector.has_table(table.name, schema=self.target.db_schema):
                    present = {c["name"] for c in inspector.get_columns(table.name, schema=self.target.db_schema)}
                    missing = [c.name for c in table.columns if c.name not in present]
                    if missing:
                        raise PermanentConnectorError(
                            f"table {table.name} lacks column(s) {', '.join(missing)} (sync {self.config.name})",
                            endpoint=self.endpoint,
                        )
                elif not self.target.create:
                    raise PermanentConnectorError(
                        f"table {table.name} does not exist and `create` is off (sync {self.config.name})",
                        endpoint=self.endpoint,
                    )
            self.hosts.metadata.create_all(conn, checkfirst=True)

    def pool(self, host_ips: Iterable[str] | None = None) -> dict[str, int]:
        """``host_ip -> pool id`` of the registered hosts (all of them, or those of ``host_ips``)."""
        with translate_errors(self.endpoint, "reading the host pool"), self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(self.hosts.name, schema=self.target.db_schema):
                return {}
            return self._pool(conn, host_ips)

    def _pool(self, conn: Connection, host_ips: Iterable[str] | None) -> dict[str, int]:
        query = sa.select(self.hosts.c.host_ip, self.hosts.c.id)
        if host_ips is None:
            return {str(ip): int(pk) for ip, pk in conn.execute(query)}
        wanted = sorted(set(host_ips))
        found: dict[str, int] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            found.update({str(ip): int(pk) for ip, pk in conn.execute(query.where(self.hosts.c.host_ip.in_(chunk)))})
        return found

    def write(
        self,
        conn: Connection,
        hosts: Sequence[HostMetrics],
        *,
        run_id: str,
        register: bool,
        query_time_range: str,
        batch: int = 0,
        dry_run: bool = False,
    ) -> list[HostResult]:
        """Write the resources of ``hosts`` and their outcomes in ``conn``'s transaction (or only plan them).

        A host missing from the pool is registered when ``register`` (a group sync) and its metrics
        were found; otherwise it is ``not_in_pool``. Failed and no-data hosts write no resources.
        Every host's outcome also goes to the run history ``_sync_records`` (batch number ``batch``),
        keyed by ``host_ip``, like the records of a table sync (unchanged hosts only with
        ``history.store_unchanged``).

        Raises:
            TransientConnectorError: another sync registered the same host or created the same resources
                row meanwhile, and a unique constraint refused the write; replaying the transaction on the
                fresh rows succeeds.
            ConnectorError: any other database error, transient or not by its driver class (a check constraint,
                a foreign key or a trigger refusing a row is permanent); the message names the host being written.
        """
        # A dry run may come before either table exists (a fresh CMDB often has its hosts_pool but no
        # server_resources yet): a missing pool registers nobody, missing resources make every row new.
        current: str | None = None  # the host being written, named by an error
        try:
            has_pool, has_resources = (not dry_run or self._exists(conn, t) for t in (self.hosts, self.resources))
            pool = self._pool(conn, [h.host_ip for h in hosts]) if has_pool else {}
            existing = self._resources(conn, list(pool.values())) if has_resources else {}
            results = []
            for host in hosts:
                current = host.host_ip
                results.append(self._apply_one(conn, host, pool, existing, register=register, write=not dry_run))
            current = None
            if results and not dry_run:
                conn.execute(sa.insert(self.results), [self._result_row(r, run_id, query_time_range) for r in results])
                self._record_history(conn, results, run_id, batch)
        except sa_exc.DBAPIError as exc:
            original = exc.orig or exc
            if isinstance(exc, sa_exc.IntegrityError) and backend_of_error(original).is_unique_violation(original):
                raced = classify(exc, self.endpoint, "writing the CMDB (another sync wrote the same host meanwhile)")
                message = str(raced).removeprefix(f"{self.endpoint}: ")
                raise TransientConnectorError(message, endpoint=self.endpoint) from None
            # A lost connection stays transient; a check, a foreign key or a trigger refusing a row is permanent.
            what = f"the rows of host {current}" if current else f"the batch of hosts {_listed(hosts)}"
            raise classify(exc, self.endpoint, f"writing {what} to the CMDB") from None
        return results

    def _record_history(self, conn: Connection, results: Sequence[HostResult], run_id: str, batch: int) -> None:
        keep_unchanged = self.config.history.store_unchanged
        outcomes = [r.outcome() for r in results if keep_unchanged or r.action is not RecordAction.UNCHANGED]
        if outcomes:
            rows = bookkeeping.outcome_rows(self.config.name, self.config.history_entity, run_id, batch, outcomes)
            conn.execute(sa.insert(self.records), rows)

    def recorded(self, run_id: str, host_ips: Sequence[str]) -> list[HostResult]:
        """The outcomes ``run_id`` recorded for ``host_ips`` (a batch committed by an earlier attempt of the run)."""
        found: list[HostResult] = []
        figures = ("max_cpu", "avg_cpu", "max_memory", "avg_memory", "max_disk", "avg_disk")
        with translate_errors(self.endpoint, "reading host results"), self.engine.connect() as conn:
            for start in range(0, len(host_ips), _IN_CHUNK):
                chunk = list(host_ips[start : start + _IN_CHUNK])
                query = sa.select(self.results).where(
                    self.results.c.run_id == run_id, self.results.c.host_ip.in_(chunk)
                )
                for row in conn.execute(query.order_by(self.results.c.id)).mappings():
                    status = HostStatus(row["status"])
                    metrics = HostMetrics(
                        row["host_ip"],
                        status,
                        host_name=row["host_name"],
                        error=row["error"],
                        data_points=int(row["data_points"] or 0),
                        **{name: row[name] for name in figures},
                    )
                    action = RecordAction(row["action"])
                    found.append(
                        HostResult(metrics, status, action, row["pool_id"], bool(row["registered"]), row["error"])
                    )
        return found

    def _exists(self, conn: Connection, table: sa.Table) -> bool:
        return sa.inspect(conn).has_table(table.name, schema=self.target.db_schema)

    def _resources(self, conn: Connection, pool_ids: list[int]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        columns = [self.resources.c.pool_id, *[self.resources.c[c] for c in RESOURCE_COLUMNS]]
        for start in range(0, len(pool_ids), _IN_CHUNK):
            chunk = pool_ids[start : start + _IN_CHUNK]
            rows = conn.execute(sa.select(*columns).where(self.resources.c.pool_id.in_(chunk))).mappings()
            found.update({int(row["pool_id"]): dict(row) for row in rows})
        return found

    def _apply_one(
        self,
        conn: Connection,
        host: HostMetrics,
        pool: dict[str, int],
        existing: dict[int, dict[str, Any]],
        *,
        register: bool,
        write: bool,
    ) -> HostResult:
        pool_id = pool.get(host.host_ip)
        if host.status is HostStatus.FAILED:
            return HostResult(host, HostStatus.FAILED, RecordAction.FAILED, pool_id, error=host.error)
        if pool_id is None and not (register and host.status is HostStatus.SUCCESS):
            if register:
                return HostResult(host, host.status, RecordAction.SKIPPED, error=host.error)
            return HostResult(host, HostStatus.NOT_IN_POOL, RecordAction.SKIPPED, error="host is not in the host pool")
        if host.status is HostStatus.NO_DATA:
            return HostResult(host, HostStatus.NO_DATA, RecordAction.SKIPPED, pool_id, error=host.error)
        now = _now()
        registered = False
        if pool_id is None:
            registered = True
            if write:
                inserted = conn.execute(
                    sa.insert(self.hosts).values(
                        host_ip=host.host_ip, host_name=host.host_name, created_at=now, updated_at=now
                    )
                )
                pool_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        values = {column: getattr(host, metric) for column, metric in RESOURCE_COLUMNS.items()}
        before = existing.get(pool_id) if pool_id is not None else None
        if before is None:
            if write:
                conn.execute(
                    sa.insert(self.resources).values(
                        pool_id=pool_id, ip=host.host_ip, created_at=now, updated_at=now, **values
                    )
                )
            return HostResult(host, HostStatus.SUCCESS, RecordAction.CREATED, pool_id, registered)
        changes = {c: [before[c], v] for c, v in values.items() if not _same(before[c], v)}
        if not changes:
            return HostResult(host, HostStatus.SUCCESS, RecordAction.UNCHANGED, pool_id, registered)
        if write:
            conn.execute(
                sa.update(self.resources)
                .where(self.resources.c.pool_id == pool_id)
                .values(ip=host.host_ip, updated_at=now, **values)
            )
        return HostResult(host, HostStatus.SUCCESS, RecordAction.UPDATED, pool_id, registered, changes=changes)

    def _result_row(self, result: HostResult, run_id: str, query_time_range: str) -> dict[str, Any]:
        metrics = result.metrics.row()
        return {
            **{k: v for k, v in metrics.items() if k not in ("status", "error")},
            "run_id": run_id,
            "sync": self.config.name,
            "status": result.status.value,
            "action": result.action.value,
            "registered": result.registered,
            "pool_id": result.pool_id,
            "error": (result.error or "")[:4000] or None,
            "query_time_range": query_time_range,
            "recorded_at": _now(),
        }

    def host_results(self, run_id: str) -> list[dict[str, Any]]:
        """The per-host rows a run recorded (for reports and tests)."""
        with translate_errors(self.endpoint, "reading host results"), self.engine.connect() as conn:
            query = sa.select(self.results).where(self.results.c.run_id == run_id).order_by(self.results.c.id)
            return [dict(row) for row in conn.execute(query).mappings()]


__all__ = ["RESOURCE_COLUMNS", "RESULTS_TABLE", "CmdbWriter", "HostResult", "hosts_pool_table"]
