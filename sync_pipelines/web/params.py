"""Query parameters of the history view, read into typed filters; a bad value names the parameter."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from sync_pipelines.errors import BadQueryParameter, UnknownSyncError
from sync_pipelines.history.ledger import RunFilter, Trigger
from sync_pipelines.history.records import MAX_PAGE_SIZE, RecordFilter, RecordStatus
from sync_pipelines.types import RecordAction, RunStatus

E = TypeVar("E", bound=enum.Enum)


class RunKind(enum.StrEnum):
    """Real runs, dry runs, or both."""

    ALL = ""
    REAL = "real"
    DRY = "dry"


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    return value or None


def choice(params: Mapping[str, str], name: str, kind: type[E]) -> E | None:
    """The enum member named by parameter ``name``, None when empty."""
    value = _text(params, name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind if m.value)
        raise BadQueryParameter(f"parameter {name!r}: {value!r} is not one of {allowed}") from None


def number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer parameter within ``low..high``."""
    value = _text(params, name)
    if value is None:
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise BadQueryParameter(f"parameter {name!r}: {value!r} is not a whole number") from None
    if not low <= parsed <= high:
        raise BadQueryParameter(f"parameter {name!r}: {parsed} is not within {low}..{high}")
    return parsed


def day(params: Mapping[str, str], name: str) -> dt.datetime | None:
    """A ``YYYY-MM-DD`` parameter as midnight UTC (naive, as the ledger stores times)."""
    value = _text(params, name)
    if value is None:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise BadQueryParameter(f"parameter {name!r}: {value!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Paging:
    """The page asked for (from 1) and its size."""

    page: int
    size: int


def paging(params: Mapping[str, str], default_size: int, max_size: int = MAX_PAGE_SIZE) -> Paging:
    """``page`` and ``page_size`` parameters."""
    return Paging(number(params, "page", 1, 1, 10**9), number(params, "page_size", default_size, 1, max_size))


def run_filter(params: Mapping[str, str], known_syncs: list[str]) -> RunFilter:
    """The run history's filters: sync, status, trigger, user, real or dry runs, ``from``/``to`` dates (UTC)."""
    sync = _text(params, "sync")
    if sync is not None and sync not in known_syncs:
        raise BadQueryParameter(f"parameter 'sync': {UnknownSyncError(sync, known_syncs)}")
    kind = choice(params, "kind", RunKind) or RunKind.ALL
    until = day(params, "to")
    return RunFilter(
        syncs=[sync] if sync else None,
        status=choice(params, "status", RunStatus),
        trigger=choice(params, "trigger", Trigger),
        user=_text(params, "user"),
        dry_run=None if kind is RunKind.ALL else kind is RunKind.DRY,
        since=day(params, "from"),
        until=until + dt.timedelta(days=1) if until else None,
    )


def record_filter(params: Mapping[str, str]) -> RecordFilter:
    """The record table's filters: ``entity``, ``action`` and ``status``."""
    action = choice(params, "action", RecordAction)
    return RecordFilter(
        entity=_text(params, "entity"),
        action=(action,) if action else (),
        status=choice(params, "status", RecordStatus),
    )


def query_string(params: Mapping[str, str], **changes: object) -> str:
    """``?...`` with the non-empty current parameters, some replaced by ``changes`` (None removes one)."""
    merged: dict[str, str] = {k: v for k, v in params.items() if v}
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return "?" + urlencode(merged) if merged else ""
