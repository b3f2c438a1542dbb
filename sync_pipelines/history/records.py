"""Paged, filtered reads of the per-record history ``_sync_records`` of one run.

Every query of the history view over ``_sync_records`` lives here, so that a change of the table's
storage is adapted in one place. The queries stay fast on runs of millions of records: they filter
on the run first and use the index :data:`RECORDS_RUN_INDEX` (run, action, entity, id), created by
:func:`ensure_record_indexes`; a page reads its ids from the index and then only its own rows.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.sql import translate_errors
from sync_pipelines.history.ledger import RECORDS_TABLE, Ledger, RunEntry
from sync_pipelines.history.queries import Paged
from sync_pipelines.types import RecordAction

RECORDS_RUN_INDEX = bookkeeping.RECORDS_RUN_INDEX
MAX_PAGE_SIZE = 500


class RecordStatus(enum.StrEnum):
    """Whether one record reached the state the source asked for."""

    SUCCESS = "success"
    """Created, updated, unchanged or deleted (either way of a bidirectional sync), or settled by policy."""
    FAILED = "failed"
    """The record could not be cast or written; its error says why."""
    NOT_WRITTEN = "not_written"
    """Skipped, in conflict, or edited on the target only: left as it was."""


_NOT_WRITTEN = (RecordAction.SKIPPED, RecordAction.CONFLICT, RecordAction.TARGET_MODIFIED)


def status_of(action: RecordAction) -> RecordStatus:
    """The status of a record from its action."""
    if action is RecordAction.FAILED:
        return RecordStatus.FAILED
    if action in _NOT_WRITTEN:
        return RecordStatus.NOT_WRITTEN
    return RecordStatus.SUCCESS


def actions_of(status: RecordStatus) -> list[RecordAction]:
    """Every action whose records have ``status``."""
    return [action for action in RecordAction if status_of(action) is status]


@dataclass(frozen=True)
class RecordFilter:
    """Which records of a run to show; a field left at None does not filter."""

    entity: str | None = None
    action: tuple[RecordAction, ...] = ()
    """Keep records with one of these actions (none given: every action)."""
    status: RecordStatus | None = None

    def actions(self) -> list[RecordAction] | None:
        """The actions this filter keeps, or None for every action."""
        chosen = set(self.action or RecordAction)
        if self.status is not None:
            chosen &= set(actions_of(self.status))
        return None if len(chosen) == len(RecordAction) else sorted(chosen, key=list(RecordAction).index)

    def keeps(self, entity: str | None, action: RecordAction) -> bool:
        """Whether a record of ``entity`` with ``action`` passes this filter."""
        wanted = self.actions()
        return (self.entity is None or entity == self.entity) and (wanted is None or action in wanted)


@dataclass(frozen=True)
class Change:
    """One field of a record: its value before and after the run."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class RecordRow:
    """One stored record outcome, ready to show."""

    id: int
    key: str
    entity: str
    action: RecordAction
    changes: list[Change]
    error: str | None
    batch: int
    recorded_at: Any

    @property
    def status(self) -> RecordStatus:
        """Whether the record succeeded, failed or was left as it was."""
        return status_of(self.action)


@dataclass
class EntityStatus:
    """The records of one entity type in a run: how many succeeded out of how many, per action."""

    entity: str
    by_action: dict[RecordAction, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Every record of the entity."""
        return sum(self.by_action.values())

    @property
    def success(self) -> int:
        """Records that reached the state the source asked for."""
        return sum(n for action, n in self.by_action.items() if status_of(action) is RecordStatus.SUCCESS)

    @property
    def updated(self) -> int:
        """Records updated (on either side)."""
        return self.by_action.get(RecordAction.UPDATED, 0) + self.by_action.get(RecordAction.SOURCE_UPDATED, 0)


@dataclass
class RecordPage(Paged):
    """One page of a run's records (oldest first) and how many records match the filter."""

    rows: list[RecordRow] = field(default_factory=list)


def _records_table(ledger: Ledger, conn: sa.Connection) -> sa.Table | None:
    return ledger.records(conn)


def ensure_record_indexes(ledger: Ledger) -> None:
    """Create the index of :data:`RECORDS_RUN_INDEX` on ``_sync_records`` when missing (idempotent).

    On PostgreSQL the index is built ``CONCURRENTLY``, so a sync loading meanwhile is not blocked.
    """
    if ledger.missing_database:
        return
    with (
        translate_errors(ledger.endpoint, f"indexing {RECORDS_TABLE}"),
        ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
    ):
        records = _records_table(ledger, conn)
        if records is None:
            return
        known = {ix["name"] for ix in sa.inspect(conn).get_indexes(RECORDS_TABLE, schema=records.schema)}
        if RECORDS_RUN_INDEX not in known:
            c = records.c
            sa.Index(RECORDS_RUN_INDEX, c.run_id, c.action, c.entity, c.id, postgresql_concurrently=True).create(conn)


Group = tuple[str | None, RecordAction, int]
"""``(entity, action, count)`` of a run's stored records."""


class RunRecords:
    """The stored records of one run (its ``records_run_id``: a retry lists its parent's records).

    The counts per (action, entity) are read once, with one pass over the run's index entries, and
    serve the per-entity status, the filtered totals and the filter choices.
    """

    def __init__(self, ledger: Ledger, entry: RunEntry, groups: list[Group] | None = None):
        """``groups``: the counts of an earlier read of the same finished run, when kept."""
        self.ledger = ledger
        self.entry = entry
        self.run_id = entry.records_run_id or entry.run_id
        self._groups = groups

    @property
    def groups(self) -> list[Group]:
        """``(entity, action, count)`` of the run's stored records."""
        if self._groups is None:
            self._groups = list(self._grouped_counts())
        return self._groups

    def _grouped_counts(self) -> Iterator[tuple[str | None, RecordAction, int]]:
        if self.ledger.missing_database:
            return
        with translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"), self.ledger.engine.connect() as conn:
            records = _records_table(self.ledger, conn)
            if records is None:
                return
            c = records.c
            query = (
                sa.select(c.action, c.entity, sa.func.count())
                .where(c.run_id == self.run_id)
                .group_by(c.action, c.entity)
                .order_by(c.action, c.entity)
            )
            rows = conn.execute(query).all()
        for action, entity, n in rows:
            yield entity, RecordAction(action), int(n)

    def entities(self) -> list[str]:
        """The entity types among the run's stored records."""
        return sorted({entity for entity, _, _ in self.groups if entity})

    def entity_statuses(self, default_entity: str) -> list[EntityStatus]:
        """Per entity type: counts per action.

        Unchanged records are counted in the ledger but stored only with ``history.store_unchanged``;
        when none are stored, the ledger's ``unchanged`` count is added to ``default_entity``.
        """
        found: dict[str, EntityStatus] = {}
        for entity, action, n in self.groups:
            name = entity or default_entity
            status = found.setdefault(name, EntityStatus(name))
            status.by_action[action] = status.by_action.get(action, 0) + n
        stored_unchanged = sum(s.by_action.get(RecordAction.UNCHANGED, 0) for s in found.values())
        unchanged = self.entry.counts.get("unchanged", 0)
        if unchanged and not stored_unchanged:
            status = found.setdefault(default_entity, EntityStatus(default_entity))
            status.by_action[RecordAction.UNCHANGED] = unchanged
        return [found[name] for name in sorted(found)]

    def count(self, filters: RecordFilter) -> int:
        """How many stored records pass ``filters``."""
        return sum(n for entity, action, n in self.groups if filters.keeps(entity, action))

    def page(self, filters: RecordFilter, *, page: int = 1, page_size: int = 50) -> RecordPage:
        """Page ``page`` (from 1) of the records passing ``filters``, in the order they were written."""
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page starts at 1 and page size is 1..{MAX_PAGE_SIZE}")
        total = self.count(filters)
        if total == 0:
            return RecordPage(total=total, page=page, page_size=page_size)
        with translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"), self.ledger.engine.connect() as conn:
            records = _records_table(self.ledger, conn)
            if records is None:
                return RecordPage(total=0, page=page, page_size=page_size)
            ids = sa.select(records.c.id).where(*_where(records, self.run_id, filters)).order_by(records.c.id)
            chosen = [i for (i,) in conn.execute(ids.limit(page_size).offset((page - 1) * page_size))]
            query = sa.select(records).where(records.c.id.in_(chosen)).order_by(records.c.id)
            rows = [record_row(dict(row)) for row in conn.execute(query).mappings()]
        return RecordPage(total=total, page=page, page_size=page_size, rows=rows)

    def iter_rows(self, filters: RecordFilter, chunk: int = 5000) -> Iterator[dict[str, Any]]:
        """Every stored record passing ``filters``, as raw rows, streamed ``chunk`` at a time."""
        if self.ledger.missing_database:
            return
        last_id = 0
        while True:
            with (
                translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"),
                self.ledger.engine.connect() as conn,
            ):
                records = _records_table(self.ledger, conn)
                if records is None:
                    return
                where = [*_where(records, self.run_id, filters), records.c.id > last_id]
                query = sa.select(records).where(*where).order_by(records.c.id).limit(chunk)
                rows = [dict(row) for row in conn.execute(query).mappings()]
            yield from rows
            if len(rows) < chunk:
                return
            last_id = rows[-1]["id"]


def _where(records: sa.Table, run_id: str, filters: RecordFilter) -> list[sa.ColumnElement[bool]]:
    c = records.c
    clauses: list[sa.ColumnElement[bool]] = [c.run_id == run_id]
    actions = filters.actions()
    if actions is not None:
        clauses.append(c.action.in_([a.value for a in actions]))
    if filters.entity is not None:
        clauses.append(c.entity == filters.entity)
    return clauses


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def format_key(record_key: str) -> str:
    """``id=1, region="eu"`` from the JSON key stored in ``_sync_records``."""
    try:
        key = json.loads(record_key)
    except (TypeError, ValueError):
        return str(record_key)
    if isinstance(key, dict):
        return ", ".join(f"{name}={_show(value)}" for name, value in key.items())
    return str(key)


def _changes(text: str | None) -> list[Change]:
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        return [Change("?", None, redact(text))]
    changes = []
    for name, pair in parsed.items():
        before, after = [*pair, None, None][:2]
        changes.append(Change(name, _redacted(before), _redacted(after)))
    return changes


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def record_row(row: dict[str, Any]) -> RecordRow:
    """A stored ``_sync_records`` row as shown: readable key, parsed changes, secrets removed."""
    return RecordRow(
        id=int(row["id"]),
        key=redact(format_key(row["record_key"])),
        entity=row.get("entity") or "",
        action=RecordAction(row["action"]),
        changes=_changes(row.get("changes")),
        error=redact(row["error"]) if row.get("error") else None,
        batch=int(row["batch"]),
        recorded_at=row["recorded_at"],
    )


__all__: Sequence[str] = [
    "RECORDS_RUN_INDEX",
    "Change",
    "EntityStatus",
    "Group",
    "RecordFilter",
    "RecordPage",
    "RecordRow",
    "RecordStatus",
    "RunRecords",
    "actions_of",
    "ensure_record_indexes",
    "format_key",
    "record_row",
    "status_of",
]
