"""Enums and small result types shared by every layer."""

from __future__ import annotations

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


class SyncMode(StrEnum):
    """How a sync decides which source rows to read."""

    FULL = "full"
    INCREMENTAL = "incremental"


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
)


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

    @property
    def succeeded(self) -> int:
        """Records that reached the state the source asked for."""
        return self.created + self.updated + self.unchanged

    def add(self, action: RecordAction, n: int = 1) -> None:
        """Count ``n`` records with ``action``."""
        attr = "conflicted" if action is RecordAction.CONFLICT else action.value
        setattr(self, attr, getattr(self, attr) + n)

    def merge(self, other: Counts) -> None:
        """Add every count of ``other`` to this one."""
        for name in ("processed", "created", "updated", "unchanged", "deleted", "failed", "skipped", "conflicted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        """All counts, including ``succeeded``, keyed as in :data:`COUNT_KEYS`."""
        return {key: int(getattr(self, key)) for key in COUNT_KEYS}

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
