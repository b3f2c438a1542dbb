"""The run ledger ``_sync_runs``: one row per run of a sync, kept in the sync's target database.

A run opens its row (``running``) when its first step starts and closes it with the outcome when the
load step ends or a step fails. Runs that end outside the ops (a crash, a cancel before a step, a
killed process) are closed by the run status sensors, and :func:`close_run` is idempotent so that a
sweep can close any row still ``running`` whose Dagster run has finished.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping, record_sets
from sync_pipelines.connectors.sql import create_sql_engine, release_engine, translate_errors
from sync_pipelines.types import COUNT_KEYS, Counts, RunStatus

LEDGER_TABLE = bookkeeping.RUNS_TABLE
RECORDS_TABLE = bookkeeping.RECORDS_TABLE
RECORD_SETS_TABLE = record_sets.RECORD_SETS_TABLE
BATCHES_TABLE = bookkeeping.BATCHES_TABLE


class Trigger(enum.StrEnum):
    """What started a run."""

    MANUAL = "manual"
    """Launched by a person from the UI or the CLI."""
    SCHEDULE = "schedule"
    SENSOR = "sensor"
    BACKFILL = "backfill"
    RETRY = "retry"
    """A re-execution of an earlier run (its parent)."""
    API = "api"
    """Launched through Dagster's GraphQL API with the tag ``sync/trigger=api``."""


FINISHED = (RunStatus.COMPLETED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED)


def ledger_table(metadata: sa.MetaData) -> sa.Table:
    """The definition of ``_sync_runs`` in ``metadata``."""
    return bookkeeping.runs_table(metadata)


@dataclass
class RunEntry:
    """One row of the ledger."""

    run_id: str
    sync: str
    trigger: Trigger
    mode: str
    status: RunStatus = RunStatus.RUNNING
    user: str | None = None
    parent_run_id: str | None = None
    records_run_id: str | None = None
    backfill_id: str | None = None
    """The Dagster backfill (``dagster/backfill`` tag) that launched the run, if any."""
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    started_at: dt.datetime = field(default_factory=lambda: utcnow())
    finished_at: dt.datetime | None = None
    duration_s: float | None = None
    error: str | None = None
    error_details: str | None = None

    @property
    def success(self) -> bool:
        """A run that reached every record it could (completed, or partial within its failure ratio)."""
        return self.status in (RunStatus.COMPLETED, RunStatus.PARTIAL)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "run_id": self.run_id,
            "sync": self.sync,
            "trigger": self.trigger.value,
            "user": self.user,
            "parent_run_id": self.parent_run_id,
            "records_run_id": self.records_run_id,
            "backfill_id": self.backfill_id,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "status": self.status.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "error": self.error,
            "error_details": self.error_details,
        }
        row.update({key: int(self.counts.get(key, 0)) for key in COUNT_KEYS})
        return row

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunEntry:
        return cls(
            run_id=row["run_id"],
            sync=row["sync"],
            trigger=Trigger(row["trigger"]),
            mode=row["mode"],
            status=RunStatus(row["status"]),
            user=row["user"],
            parent_run_id=row["parent_run_id"],
            records_run_id=row["records_run_id"],
            backfill_id=row.get("backfill_id"),
            dry_run=bool(row["dry_run"]),
            counts={key: int(row[key] or 0) for key in COUNT_KEYS},
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            duration_s=row["duration_s"],
            error=row["error"],
            error_details=row["error_details"],
        )


@dataclass(frozen=True)
class RunFilter:
    """Conditions on ledger rows; a field left at None does not filter."""

    syncs: list[str] | None = None
    status: RunStatus | None = None
    trigger: Trigger | None = None
    user: str | None = None
    dry_run: bool | None = None
    since: dt.datetime | None = None
    """Runs started at or after this time (naive UTC)."""
    until: dt.datetime | None = None
    """Runs started before this time (naive UTC)."""
    backfill_id: str | None = None

    def clauses(self, runs: sa.Table) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of this filter on the ledger table ``runs``."""
        c = runs.c
        found: list[sa.ColumnElement[bool]] = []
        if self.status is not None:
            found.append(c.status == self.status.value)
        if self.trigger is not None:
            found.append(c.trigger == self.trigger.value)
        if self.user is not None:
            found.append(c.user == self.user)
        if self.dry_run is not None:
            found.append(c.dry_run == self.dry_run)
        if self.since is not None:
            found.append(c.started_at >= self.since)
        if self.until is not None:
            found.append(c.started_at < self.until)
        if self.backfill_id is not None:
            found.append(c.backfill_id == self.backfill_id)
        if self.syncs is not None:
            found.append(c.sync.in_(self.syncs))
        return found


@dataclass
class BackfillSummary:
    """The runs of one sync launched by one Dagster backfill (one run per partition, or one for a range)."""

    backfill_id: str
    sync: str
    runs: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    by_status: dict[RunStatus, int]
    counts: dict[str, int]

    @classmethod
    def from_row(cls, row: Any) -> BackfillSummary:
        """From a row of :meth:`Ledger.backfills`."""
        backfill_id, sync, runs, started, finished, *rest = row
        statuses = dict(zip(RunStatus, (int(n or 0) for n in rest[: len(RunStatus)]), strict=True))
        counts = dict(zip(COUNT_KEYS, (int(n or 0) for n in rest[len(RunStatus) :]), strict=True))
        return cls(backfill_id, sync, int(runs), started, finished, statuses, counts)


def utcnow() -> dt.datetime:
    """The current UTC time, naive (as every ``_sync_*`` table stores it)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Ledger:
    """The ledger and per-record history in one target database (``target.url`` and ``target.schema``)."""

    def __init__(self, engine: Engine, endpoint: str, schema: str | None):
        self.engine = engine
        self.endpoint = endpoint
        self.metadata = sa.MetaData(schema=schema)
        self.runs = ledger_table(self.metadata)
        self._records: sa.Table | None = None
        self._record_sets: sa.Table | None = None

    def ensure(self) -> None:
        """Create ``_sync_runs`` when missing; add the columns (and their indexes) an older ledger lacks."""
        with translate_errors(self.endpoint, f"creating {LEDGER_TABLE}"), self.engine.begin() as conn:
            self.metadata.create_all(conn, tables=[self.runs])
            present = {c["name"] for c in sa.inspect(conn).get_columns(LEDGER_TABLE, schema=self.metadata.schema)}
            for column in self.runs.columns:
                if column.name not in present and column.nullable:
                    _add_column(conn, self.runs, column)

    @property
    def missing_database(self) -> bool:
        """True for a SQLite target whose file does not exist yet (no run wrote it): nothing to read."""
        url = self.engine.url
        return (
            url.get_backend_name() == "sqlite"
            and bool(url.database)
            and url.database != ":memory:"
            and (not Path(str(url.database)).exists())
        )

    def _exists(self, conn: Connection, table: str) -> bool:
        return sa.inspect(conn).has_table(table, schema=self.metadata.schema)

    def records(self, conn: Connection) -> sa.Table | None:
        """``_sync_records`` as it is in the database (reflected), or None before any run wrote one."""
        if self._records is None and self._exists(conn, RECORDS_TABLE):
            self._records = sa.Table(RECORDS_TABLE, sa.MetaData(schema=self.metadata.schema), autoload_with=conn)
        return self._records

    def record_sets(self, conn: Connection) -> sa.Table | None:
        """``_sync_record_sets``, or None before any run wrote one."""
        if self._record_sets is None and self._exists(conn, RECORD_SETS_TABLE):
            self._record_sets = record_sets.record_sets_table(sa.MetaData(schema=self.metadata.schema))
        return self._record_sets

    # -- writing

    def open_run(self, entry: RunEntry) -> None:
        """Insert the row of a starting run; keep an existing row (a later step of the same run)."""
        self.ensure()
        where = f"opening run {entry.run_id} in {LEDGER_TABLE}"
        with translate_errors(self.endpoint, where), self.engine.begin() as conn:
            found = conn.execute(sa.select(self.runs.c.run_id).where(self.runs.c.run_id == entry.run_id)).first()
            if found is None:
                conn.execute(sa.insert(self.runs), [entry.to_row()])

    def finish_run(self, entry: RunEntry) -> None:
        """Write the final row of a run (insert or replace), with its counts and outcome."""
        self.ensure()
        where = f"finishing run {entry.run_id} in {LEDGER_TABLE}"
        with translate_errors(self.endpoint, where), self.engine.begin() as conn:
            old = conn.execute(sa.select(self.runs).where(self.runs.c.run_id == entry.run_id)).mappings().first()
            row = entry.to_row()
            if old is None:
                conn.execute(sa.insert(self.runs), [row])
                return
            row["started_at"] = old["started_at"]
            row["duration_s"] = _duration(old["started_at"], entry.finished_at, entry.duration_s)
            conn.execute(sa.update(self.runs).where(self.runs.c.run_id == entry.run_id).values(row))

    def close_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: str | None,
        error_details: str | None = None,
        finished_at: dt.datetime | None = None,
    ) -> bool:
        """Close a row that is still ``running`` (failed or cancelled outside the load step).

        Counts are taken from the records the run committed. Returns False (and changes nothing)
        when the row is missing or already closed, so sensors and sweeps may call it again.
        """
        self.ensure()
        finished = finished_at or utcnow()
        with translate_errors(self.endpoint, f"closing run {run_id} in {LEDGER_TABLE}"), self.engine.begin() as conn:
            old = conn.execute(sa.select(self.runs).where(self.runs.c.run_id == run_id)).mappings().first()
            if old is None or old["status"] != RunStatus.RUNNING.value:
                return False
            values: dict[str, Any] = {
                "status": status.value,
                "finished_at": finished,
                "duration_s": _duration(old["started_at"], finished, None),
                "error": old["error"] or error,
                "error_details": old["error_details"] or error_details,
            }
            values.update(self._committed_counts(conn, old["records_run_id"] or run_id, run_id))
            conn.execute(
                sa.update(self.runs)
                .where(self.runs.c.run_id == run_id, self.runs.c.status == RunStatus.RUNNING.value)
                .values(values)
            )
        return True

    def _committed_counts(self, conn: Connection, records_run_id: str, run_id: str) -> dict[str, int]:
        """Counts of the records ``run_id`` committed. Its records are filed under ``records_run_id`` (the
        run whose batches it resumed, or itself); when several attempts committed batches of that run (a
        failed run and its re-execution), only the batches this attempt committed are counted.

        Records are counted one per ``_sync_records`` row, plus the size of each ``_sync_record_sets`` set
        (created and unchanged records), so the counts add up: ``processed`` is every record of the
        committed batches read from the source, ``succeeded`` those created, updated or unchanged.
        """
        records, sets = self.records(conn), self.record_sets(conn)
        if records is None and sets is None:
            return {}
        own = self._own_batches(conn, records_run_id, run_id)
        queries: list[sa.Select[Any]] = []
        if records is not None:
            queries.append(
                sa.select(records.c.action, sa.func.count())
                .where(records.c.run_id == records_run_id, *([records.c.batch.in_(own)] if own is not None else []))
                .group_by(records.c.action)
            )
        if sets is not None:
            queries.append(
                sa.select(sets.c.action, sa.func.sum(sets.c.count))
                .where(sets.c.run_id == records_run_id, *([sets.c.batch.in_(own)] if own is not None else []))
                .group_by(sets.c.action)
            )
        rows = [(str(action), int(n or 0)) for query in queries for action, n in conn.execute(query).all()]
        return Counts.of_actions(rows).as_dict()

    def _own_batches(self, conn: Connection, records_run_id: str, run_id: str) -> sa.Select[Any] | None:
        """The batches of ``records_run_id`` that ``run_id`` committed, when another attempt committed some too;
        None when ``run_id`` committed them all (or the resume record no longer tells)."""
        if not self._exists(conn, BATCHES_TABLE):
            return None
        batches = sa.Table(BATCHES_TABLE, sa.MetaData(schema=self.metadata.schema), autoload_with=conn)
        if "attempt" not in batches.c:
            return None
        mine = batches.c.run_id == records_run_id
        # A row an earlier release wrote has no attempt: the records run committed it itself.
        attempt = sa.func.coalesce(batches.c.attempt, batches.c.run_id)
        others = conn.execute(sa.select(sa.func.count()).where(mine, attempt != run_id)).scalar()
        if not others:
            return None
        return sa.select(batches.c.batch).where(mine, attempt == run_id)

    # -- reading

    def get(self, run_id: str) -> RunEntry | None:
        """The ledger row of one run."""
        if self.missing_database:
            return None
        with translate_errors(self.endpoint, f"reading {LEDGER_TABLE}"), self.engine.connect() as conn:
            if not self._exists(conn, LEDGER_TABLE):
                return None
            row = conn.execute(sa.select(self.runs).where(self.runs.c.run_id == run_id)).mappings().first()
        return RunEntry.from_row(row) if row else None

    def get_by_prefix(self, prefix: str) -> RunEntry | None:
        """The row whose run id starts with ``prefix`` when exactly one does."""
        if self.missing_database:
            return None
        with translate_errors(self.endpoint, f"reading {LEDGER_TABLE}"), self.engine.connect() as conn:
            if not self._exists(conn, LEDGER_TABLE):
                return None
            rows = (
                conn.execute(
                    sa.select(self.runs).where(self.runs.c.run_id.startswith(prefix, autoescape=True)).limit(2)
                )
                .mappings()
                .all()
            )
        return RunEntry.from_row(rows[0]) if len(rows) == 1 else None

    def live_counts(self, entry: RunEntry) -> dict[str, int]:
        """The counts of the records a run still ``running`` has committed so far (its row holds zeros until the
        load step ends): created, updated, deleted, failed, skipped and conflicted."""
        if self.missing_database:
            return {}
        with (
            translate_errors(self.endpoint, f"reading the records of run {entry.run_id}"),
            self.engine.connect() as conn,
        ):
            return self._committed_counts(conn, entry.records_run_id or entry.run_id, entry.run_id)

    def running(self) -> list[RunEntry]:
        """Rows still marked ``running``."""
        return self.select(status=RunStatus.RUNNING)

    def select(
        self,
        *,
        syncs: list[str] | None = None,
        status: RunStatus | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
        where: RunFilter | None = None,
    ) -> list[RunEntry]:
        """Rows, newest first, filtered by sync names, status, start time and ``where``."""
        if self.missing_database:
            return []
        query = sa.select(self.runs).order_by(self.runs.c.started_at.desc(), self.runs.c.run_id.desc())
        query = query.where(*RunFilter(syncs=syncs, status=status, since=since).clauses(self.runs))
        if where is not None:
            query = query.where(*where.clauses(self.runs))
        if limit is not None:
            query = query.limit(limit)
        with translate_errors(self.endpoint, f"reading {LEDGER_TABLE}"), self.engine.connect() as conn:
            if not self._exists(conn, LEDGER_TABLE):
                return []
            return [RunEntry.from_row(row) for row in conn.execute(query).mappings()]

    def count(
        self, *, syncs: list[str] | None = None, status: RunStatus | None = None, where: RunFilter | None = None
    ) -> int:
        """Number of rows matching the filters."""
        if self.missing_database:
            return 0
        query = sa.select(sa.func.count()).select_from(self.runs)
        query = query.where(*RunFilter(syncs=syncs, status=status).clauses(self.runs))
        if where is not None:
            query = query.where(*where.clauses(self.runs))
        with translate_errors(self.endpoint, f"reading {LEDGER_TABLE}"), self.engine.connect() as conn:
            if not self._exists(conn, LEDGER_TABLE):
                return 0
            return int(conn.execute(query).scalar_one())

    def backfills(self, syncs: list[str], limit: int = 200) -> list[BackfillSummary]:
        """The backfills that ran syncs of ``syncs``, newest first: runs, statuses and record counts."""
        if self.missing_database:
            return []
        c = self.runs.c
        query = (
            sa.select(
                c.backfill_id,
                c.sync,
                sa.func.count(),
                sa.func.min(c.started_at),
                sa.func.max(c.finished_at),
                *(sa.func.sum(sa.case((c.status == s.value, 1), else_=0)) for s in RunStatus),
                *(sa.func.sum(c[key]) for key in COUNT_KEYS),
            )
            .where(c.backfill_id.is_not(None), c.sync.in_(syncs))
            .group_by(c.backfill_id, c.sync)
            .order_by(sa.func.min(c.started_at).desc())
            .limit(limit)
        )
        with translate_errors(self.endpoint, f"reading {LEDGER_TABLE}"), self.engine.connect() as conn:
            if not self._exists(conn, LEDGER_TABLE):
                return []
            rows = conn.execute(query).all()
        return [BackfillSummary.from_row(row) for row in rows]


def _add_column(conn: Connection, table: sa.Table, column: sa.Column[Any]) -> None:
    preparer = conn.dialect.identifier_preparer
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.quote(column.name)} {kind}"))
    for index in table.indexes:
        if [c.name for c in index.columns] == [column.name]:
            index.create(conn, checkfirst=True)


def _duration(started: dt.datetime | None, finished: dt.datetime | None, given: float | None) -> float | None:
    if given is not None:
        return round(given, 3)
    if started is None or finished is None:
        return None
    return round(max(0.0, (finished - started).total_seconds()), 3)


@contextmanager
def open_ledger(config: SyncConfig) -> Iterator[Ledger]:
    """The ledger in the target database of ``config``; its engine is released afterwards."""
    engine, endpoint = create_sql_engine(config.target.url, where=f"{config.name}: target.url")
    try:
        yield Ledger(engine, endpoint, config.target.db_schema)
    finally:
        release_engine(engine)


def ledger_groups(configs: list[SyncConfig]) -> list[list[SyncConfig]]:
    """Syncs grouped by the database (target URL and schema) that holds their ledger."""
    groups: dict[tuple[str, str | None], list[SyncConfig]] = {}
    for cfg in configs:
        groups.setdefault((cfg.target.url, cfg.target.db_schema), []).append(cfg)
    return list(groups.values())
