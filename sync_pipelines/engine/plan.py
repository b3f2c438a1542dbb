"""What an extract decided that the later stages follow: a run's plan, carried in its manifest.

A parallel full read records a :class:`ChunkPlan` (how many key ranges, how many workers); a
host-metrics run records a :class:`HostPlan` (where its hosts came from, over which time range).
A serial SQL run has no plan. Plans are JSON-friendly through :func:`plan_to_dict` and
:func:`plan_from_dict`, tagged with their ``type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from sync_pipelines.errors import StagingError


class HostSource(StrEnum):
    """Where a run's host list came from."""

    HOST_LIST = "host_list"
    POOL = "pool"
    GROUP = "group"


@dataclass(frozen=True)
class ChunkPlan:
    """A parallel full read: the source split into ``chunks`` key ranges, run by ``workers`` processes."""

    TYPE: ClassVar[str] = "chunks"

    chunks: int
    workers: int
    key_boundaries: tuple[Any, ...] = ()
    """The ranges' inner boundaries, encoded (:func:`sync_pipelines.connectors.values.encode`)."""


@dataclass(frozen=True)
class HostPlan:
    """A host-metrics run: where its hosts came from, the time range queried, the group discovered."""

    TYPE: ClassVar[str] = "hosts"

    host_source: HostSource
    query_time_range: str
    group: str | None = None


Plan = ChunkPlan | HostPlan


def plan_to_dict(plan: Plan | None) -> dict[str, Any] | None:
    """A JSON-ready form of ``plan``, tagged with its ``type``; None for no plan."""
    if plan is None:
        return None
    if isinstance(plan, ChunkPlan):
        return {
            "type": plan.TYPE,
            "chunks": plan.chunks,
            "workers": plan.workers,
            "key_boundaries": list(plan.key_boundaries),
        }
    return {
        "type": plan.TYPE,
        "host_source": plan.host_source.value,
        "query_time_range": plan.query_time_range,
        "group": plan.group,
    }


def plan_from_dict(data: Mapping[str, Any] | None) -> Plan | None:
    """The plan :func:`plan_to_dict` wrote; a :class:`StagingError` for a type this version does not know."""
    if data is None:
        return None
    kind = data.get("type")
    if kind == ChunkPlan.TYPE:
        return ChunkPlan(int(data["chunks"]), int(data["workers"]), tuple(data.get("key_boundaries") or ()))
    if kind == HostPlan.TYPE:
        return HostPlan(HostSource(data["host_source"]), str(data["query_time_range"]), data.get("group"))
    raise StagingError(
        f"a staged manifest has a plan of unknown type {kind!r} (known: {ChunkPlan.TYPE}, {HostPlan.TYPE})"
    )


def plan_from_details(details: Mapping[str, Any]) -> Plan | None:
    """The plan of a manifest written before plans were typed, from its ``details`` dict.

    A run staged by the previous version and re-executed after an upgrade still loads.
    """
    if details.get("chunks"):
        return plan_from_dict({"type": ChunkPlan.TYPE, **details})
    if details.get("host_source"):
        return plan_from_dict({"type": HostPlan.TYPE, **details})
    return None


__all__ = ["ChunkPlan", "HostPlan", "HostSource", "Plan", "plan_from_details", "plan_from_dict", "plan_to_dict"]
