"""Paged, filtered reads of the per-record history of one run: ``_sync_records`` and ``_sync_record_sets``.

Every query of the history view over the stored records lives here, so that a change of their
storage is adapted in one place. A run stores records one per ``_sync_records`` row, and those
without field-level change as sets of keys (:mod:`~sync_pipelines.connectors.record_sets`); every
reader here lists both record by record (see :class:`RunRecords` for the order).

The queries stay fast on runs of millions of records: they filter on the run first and use the
index :data:`RECORDS_RUN_INDEX` (run, action, entity, id), created by :func:`ensure_record_indexes`;
a page reads its ids from the index and then only its own rows, and decodes only the sets it shows
(the sets' sizes, read once per run, tell which ones a page touches).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.record_sets import iter_set_records
from sync_pipelines.connectors.sql import translate_errors
from sync_pipelines.history.ledger import RECORD_SETS_TABLE, RECORDS_TABLE, Ledger, RunEntry
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

    id: int | None
    """The ``_sync_records`` id; None for a record of a set (``_sync_record_sets``)."""
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


@dataclass(frozen=True)
class StoredSet:
    """One ``_sync_record_sets`` row of a run, without its keys: where it stands and how many records it holds."""

    id: int
    batch: int
    entity: str | None
    action: RecordAction
    count: int


@dataclass
class RunCounts:
    """What a run stored, counted once: rows per (entity, action), and its record sets.

    A finished run writes no more records, so the view keeps these for later pages and filters.
    """

    rows: list[Group]
    """``(entity, action, count)`` of the run's ``_sync_records`` rows."""
    sets: list[StoredSet]
    """The run's record sets, in id order."""
    rows_by_batch: dict[tuple[str | None, tuple[RecordAction, ...] | None], dict[int, int]] = field(
        default_factory=dict
    )
    """Per filter (entity, actions) that was paged: its ``_sync_records`` rows per batch."""

    @property
    def groups(self) -> list[Group]:
        """``(entity, action, count)`` of every stored record, rows and sets together."""
        found: dict[tuple[str | None, RecordAction], int] = {}
        for entity, action, n in self.rows:
            found[entity, action] = found.get((entity, action), 0) + n
        for s in self.sets:
            found[s.entity, s.action] = found.get((s.entity, s.action), 0) + s.count
        order = list(RecordAction).index
        return [(e, a, n) for (e, a), n in sorted(found.items(), key=lambda i: (order(i[0][1]), i[0][0] or ""))]


@dataclass(frozen=True)
class _Segment:
    """A run of consecutive records in the listing order: one set, or the rows of one batch (or of all)."""

    count: int
    stored_set: StoredSet | None = None
    batch: int | None = None
    """The batch of a segment of rows; None: the rows of every batch, by id."""


def _batch_order(batch: int) -> tuple[bool, int]:
    # Batch -1 holds what a run writes after its last batch (the deletes of a full sync): it comes last.
    return batch < 0, batch


class RunRecords:
    """The stored records of one run (its ``records_run_id``: a retry lists its parent's records).

    A run stores records one per ``_sync_records`` row, and those without field-level change
    (created, and unchanged ones with ``history.store_unchanged``) as sets: one
    ``_sync_record_sets`` row per batch, action and entity, holding their keys. Every method lists
    both, record by record.

    **Order.** Records are listed in the order the run wrote them: batch by batch (batch -1, what is
    written after the last batch such as the deletes of a full sync, at the end); within a batch,
    the records of its sets first (set by set, each in the order it holds its keys, the order of the
    batch), then its one-by-one records by id. When no set passes the filter, the rows are listed by
    id alone, which is the same order when batches commit one after another.

    The counts per (action, entity) and the sets' sizes are read once, with one pass over the run's
    index entries, and serve the per-entity status, the filtered totals, the filter choices and the
    paging: a page decodes only the sets it shows.
    """

    def __init__(self, ledger: Ledger, entry: RunEntry, counts: RunCounts | None = None):
        """``counts``: the counts of an earlier read of the same finished run, when kept."""
        self.ledger = ledger
        self.entry = entry
        self.run_id = entry.records_run_id or entry.run_id
        self._counts = counts

    @property
    def counts(self) -> RunCounts:
        """The run's rows per (entity, action) and its record sets (read on first use)."""
        if self._counts is None:
            self._counts = self._read_counts()
        return self._counts

    @property
    def groups(self) -> list[Group]:
        """``(entity, action, count)`` of the run's stored records (rows and sets)."""
        return self.counts.groups

    def _read_counts(self) -> RunCounts:
        counts = RunCounts([], [])
        if self.ledger.missing_database:
            return counts
        with translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"), self.ledger.engine.connect() as conn:
            records = _records_table(self.ledger, conn)
            if records is not None:
                c = records.c
                query = (
                    sa.select(c.action, c.entity, sa.func.count())
                    .where(c.run_id == self.run_id)
                    .group_by(c.action, c.entity)
                    .order_by(c.action, c.entity)
                )
                counts.rows = [(entity, RecordAction(a), int(n)) for a, entity, n in conn.execute(query).all()]
            sets = self.ledger.record_sets(conn)
            if sets is not None:
                c = sets.c
                query = sa.select(c.id, c.batch, c.entity, c.action, c.count).where(c.run_id == self.run_id)
                counts.sets = [
                    StoredSet(int(i), int(batch), entity, RecordAction(action), int(n))
                    for i, batch, entity, action, n in conn.execute(query.order_by(c.id)).all()
                ]
        return counts

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

    def _segments(self, filters: RecordFilter) -> list[_Segment]:
        """The records passing ``filters`` as consecutive segments, in the listing order (see the class)."""
        counts = self.counts
        sets = [s for s in counts.sets if filters.keeps(s.entity, s.action)]
        rows = sum(n for entity, action, n in counts.rows if filters.keeps(entity, action))
        if not sets:
            return [_Segment(rows)] if rows else []
        by_batch = self._rows_by_batch(filters) if rows else {}
        segments: list[_Segment] = []
        for batch in sorted({s.batch for s in sets} | set(by_batch), key=_batch_order):
            segments.extend(_Segment(s.count, stored_set=s) for s in sets if s.batch == batch)
            if by_batch.get(batch):
                segments.append(_Segment(by_batch[batch], batch=batch))
        return segments

    def _rows_by_batch(self, filters: RecordFilter) -> dict[int, int]:
        """How many ``_sync_records`` rows passing ``filters`` each batch holds (kept in :attr:`counts`)."""
        actions = filters.actions()
        key = (filters.entity, None if actions is None else tuple(actions))
        found = self.counts.rows_by_batch.get(key)
        if found is not None:
            return found
        with translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"), self.ledger.engine.connect() as conn:
            records = _records_table(self.ledger, conn)
            if records is None:
                return {}
            query = (
                sa.select(records.c.batch, sa.func.count())
                .where(*_where(records, self.run_id, filters))
                .group_by(records.c.batch)
            )
            found = {int(batch): int(n) for batch, n in conn.execute(query).all()}
        self.counts.rows_by_batch[key] = found
        return found

    def page(self, filters: RecordFilter, *, page: int = 1, page_size: int = 50) -> RecordPage:
        """Page ``page`` (from 1) of the records passing ``filters``, in the order they were written."""
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page starts at 1 and page size is 1..{MAX_PAGE_SIZE}")
        total = self.count(filters)
        if total == 0:
            return RecordPage(total=total, page=page, page_size=page_size)
        skip, wanted = (page - 1) * page_size, page_size
        segments = self._segments(filters)
        found: list[dict[str, Any]] = []
        with translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"), self.ledger.engine.connect() as conn:
            for segment in segments:
                if skip >= segment.count:
                    skip -= segment.count
                    continue
                take = min(wanted, segment.count - skip)
                found.extend(self._read(conn, segment, filters, skip, take))
                skip, wanted = 0, wanted - take
                if wanted == 0:
                    break
        return RecordPage(total=total, page=page, page_size=page_size, rows=[record_row(row) for row in found])

    def _read(
        self, conn: sa.Connection, segment: _Segment, filters: RecordFilter, skip: int, take: int
    ) -> list[dict[str, Any]]:
        """Records ``skip`` to ``skip + take`` of ``segment``."""
        if segment.stored_set is not None:
            sets = self.ledger.record_sets(conn)
            assert sets is not None
            row = conn.execute(sa.select(sets).where(sets.c.id == segment.stored_set.id)).mappings().first()
            return [] if row is None else list(iter_set_records(row, skip, skip + take))
        records = _records_table(self.ledger, conn)
        if records is None:
            return []
        where = _where(records, self.run_id, filters, segment.batch)
        ids = sa.select(records.c.id).where(*where).order_by(records.c.id).limit(take).offset(skip)
        chosen = [i for (i,) in conn.execute(ids)]
        query = sa.select(records).where(records.c.id.in_(chosen)).order_by(records.c.id)
        return [dict(row) for row in conn.execute(query).mappings()]

    def iter_rows(self, filters: RecordFilter, chunk: int = 5000) -> Iterator[dict[str, Any]]:
        """Every stored record passing ``filters`` as a ``_sync_records`` row, in the listing order.

        Rows are read ``chunk`` at a time and sets one at a time, each on a connection of its own, so
        a long export holds no connection while it writes. A set's records have no ``id`` (None).
        """
        if self.ledger.missing_database:
            return
        for segment in self._segments(filters):
            if segment.stored_set is None:
                yield from self._iter_segment_rows(filters, segment.batch, chunk)
                continue
            with (
                translate_errors(self.ledger.endpoint, f"reading {RECORD_SETS_TABLE}"),
                self.ledger.engine.connect() as conn,
            ):
                sets = self.ledger.record_sets(conn)
                assert sets is not None
                row = conn.execute(sa.select(sets).where(sets.c.id == segment.stored_set.id)).mappings().first()
            if row is not None:
                yield from iter_set_records(row)

    def _iter_segment_rows(self, filters: RecordFilter, batch: int | None, chunk: int) -> Iterator[dict[str, Any]]:
        last_id = 0
        while True:
            with (
                translate_errors(self.ledger.endpoint, f"reading {RECORDS_TABLE}"),
                self.ledger.engine.connect() as conn,
            ):
                records = _records_table(self.ledger, conn)
                if records is None:
                    return
                where = [*_where(records, self.run_id, filters, batch), records.c.id > last_id]
                query = sa.select(records).where(*where).order_by(records.c.id).limit(chunk)
                rows = [dict(row) for row in conn.execute(query).mappings()]
            yield from rows
            if len(rows) < chunk:
                return
            last_id = rows[-1]["id"]


def _where(
    records: sa.Table, run_id: str, filters: RecordFilter, batch: int | None = None
) -> list[sa.ColumnElement[bool]]:
    c = records.c
    clauses: list[sa.ColumnElement[bool]] = [c.run_id == run_id]
    if batch is not None:
        clauses.append(c.batch == batch)
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


def record_row(row: Mapping[str, Any]) -> RecordRow:
    """A stored ``_sync_records`` row (or a record of a set) as shown: readable key, parsed changes, secrets removed."""
    return RecordRow(
        id=None if row.get("id") is None else int(row["id"]),
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
    "RunCounts",
    "RunRecords",
    "StoredSet",
    "actions_of",
    "ensure_record_indexes",
    "format_key",
    "record_row",
    "status_of",
]
