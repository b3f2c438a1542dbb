"""Enums and small result types shared by every layer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """Final (or current) status of one sync run."""

    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RecordAction(StrEnum):
    """What a run did (or, in a dry run, would do) with one record."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    FAILED = "failed"
    SKIPPED = "skipped"
    CONFLICT = "conflict"
    """Both the source and the target changed the record; it waits for a person (policy ``manual``)."""
    TARGET_MODIFIED = "target_modified"
    """Someone edited the record on the target and the source did not change it: left alone."""
    SOURCE_WON = "source_won"
    """Both sides changed the record; the source values overwrote the target (policy ``source_wins``)."""
    TARGET_WON = "target_won"
    """Both sides changed the record; the target's values were kept (policy ``target_wins``)."""
    SOURCE_CREATED = "source_created"
    """Bidirectional: a record created on the target was created in the source."""
    SOURCE_UPDATED = "source_updated"
    """Bidirectional: a record changed on the target was written back to the source."""
    SOURCE_DELETED = "source_deleted"
    """Bidirectional: a record deleted from the target was deleted from the source."""


class SyncDirection(StrEnum):
    """Which way changes flow."""

    ONE_WAY = "one_way"
    """Source to target only; edits on the target are detected and reported."""
    BIDIRECTIONAL = "bidirectional"
    """Both ways: changes on either side reach the other; changes on both sides are conflicts."""


class ConflictPolicy(StrEnum):
    """What a sync does with a record that both the source and the target changed."""

    MANUAL = "manual"
    SOURCE_WINS = "source_wins"
    TARGET_WINS = "target_wins"


class SyncMode(StrEnum):
    """How a sync decides which source rows to read."""

    FULL = "full"
    INCREMENTAL = "incremental"


class DeleteScan(StrEnum):
    """How often an incremental sync with ``delete_missing`` scans the source's keys for deletes."""

    EVERY_RUN = "every_run"
    """Every run that reads after the watermark (partition runs never scan)."""
    HOURLY = "hourly"
    """The first run in each clock hour (UTC) since the last scan."""
    DAILY = "daily"
    """The first run on each calendar day (in the sync's ``timezone``) since the last scan."""


class ConflictStatus(StrEnum):
    """Whether a conflict still waits for a person."""

    OPEN = "open"
    RESOLVED = "resolved"


class ConflictChoice(StrEnum):
    """How a person resolved a conflict."""

    KEEP_SOURCE = "keep_source"
    """Write the source's values to the target."""
    KEEP_TARGET = "keep_target"
    """Keep the target's values; later runs leave the record alone until the source changes it again."""


COUNT_KEYS: tuple[str, ...] = (
    "processed",
    "succeeded",
    "failed",
    "created",
    "updated",
    "unchanged",
    "deleted",
    "skipped",
    "conflicted",
    "target_modified",
)

_COUNTED_AS: dict[str, str] = {
    "conflict": "conflicted",
    "source_won": "conflicted",
    "target_won": "conflicted",
    "source_created": "created",
    "source_updated": "updated",
    "source_deleted": "deleted",
}
"""Actions counted under another name: every record that both sides changed counts as ``conflicted``."""


READ_FROM_SOURCE: frozenset[RecordAction] = frozenset(RecordAction) - {
    RecordAction.DELETED,
    RecordAction.SOURCE_CREATED,
    RecordAction.SOURCE_UPDATED,
    RecordAction.SOURCE_DELETED,
}
"""The actions of records the run read from its source, each counted once in ``processed``; the others are
target rows (deleted, or written back to the source by a bidirectional sync)."""


@dataclass
class Counts:
    """Record counts of one run. ``processed`` counts every record read from the source."""

    processed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    conflicted: int = 0
    target_modified: int = 0

    @property
    def succeeded(self) -> int:
        """Records that reached the state the source asked for."""
        return self.created + self.updated + self.unchanged

    def add(self, action: RecordAction, n: int = 1) -> None:
        """Count ``n`` records with ``action``."""
        attr = _COUNTED_AS.get(action.value, action.value)
        setattr(self, attr, getattr(self, attr) + n)

    def merge(self, other: Counts) -> None:
        """Add every count of ``other`` to this one."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        """All counts, including ``succeeded``, keyed as in :data:`COUNT_KEYS`."""
        return {key: int(getattr(self, key)) for key in COUNT_KEYS}

    @classmethod
    def of_actions(cls, actions: Iterable[tuple[str, int]]) -> Counts:
        """The counts of recorded actions (``(action, how many)``); ``processed`` is what was read from the source."""
        counts = cls()
        known = {a.value: a for a in RecordAction}
        for name, n in actions:
            action = known.get(name)
            if action is None:  # a word this release does not record: counted nowhere
                continue
            counts.add(action, int(n))
            if action in READ_FROM_SOURCE:
                counts.processed += int(n)
        return counts

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counts:
        return cls(**{k: int(v) for k, v in data.items() if k != "succeeded" and k in cls.__dataclass_fields__})


@dataclass
class RecordOutcome:
    """One record's outcome: its key, the action, field changes (field -> [before, after]) and error."""

    key: dict[str, Any]
    action: RecordAction
    changes: dict[str, list[Any]] = field(default_factory=dict)
    error: str | None = None


class HostStatus(StrEnum):
    """Outcome of one host in a host-metrics sync (the seed's per-host `sync_status`)."""

    SUCCESS = "success"
    """Metrics found and written to the resources table."""
    FAILED = "failed"
    """The Elasticsearch query (or the write) failed; the error says why."""
    NO_DATA = "no_data"
    """The query succeeded but found no data point in the time range."""
    NOT_IN_POOL = "not_in_pool"
    """A host of a given host list that is not registered in `hosts_pool` (never written)."""
