"""What one kind of sync declares: :class:`SyncKind`, and the neutral values its result metadata is made of.

A kind is plain data and functions, with no Dagster: the engine asks it for connectors and for the
pipeline that runs it, the orchestration layer for its run options, launchpad form, step descriptions
and result metadata (converted to Dagster's types there), the CLI for its ``new`` template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from sync_pipelines.config.elasticsearch import HostFileDrop
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.check import EndpointCheckFunction


class Pipeline(StrEnum):
    """Which of the engine's stage sets runs a kind (see :mod:`sync_pipelines.engine.runner`)."""

    TABLE = "table"
    """Rows of a source into a SQL table: batches, watermark, conflicts, deletes."""
    HOSTS = "hosts"
    """Per-host metrics into the CMDB."""


class KindOptions(BaseModel):
    """Run options of a kind beyond ``full_sync`` and ``dry_run`` (none for table kinds).

    Its fields become the kind's run config and launchpad fields in Dagster, with their descriptions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


STEPS = ("extract", "transform", "load")
"""The three steps every kind runs, the keys of :attr:`SyncKind.descriptions`."""


@dataclass(frozen=True)
class ResultColumn:
    """One column of a :class:`ResultTable`."""

    name: str
    type: str
    """``string``, ``int``, ``float`` or ``bool``."""
    description: str


@dataclass(frozen=True)
class ResultTable:
    """A table of a run's result (e.g. one row per host), shown as a table by the orchestration layer."""

    columns: Sequence[ResultColumn]
    rows: Sequence[Mapping[str, Any]]


ResultValue = int | float | str | bool | list[Any] | ResultTable
"""A value of a kind's result metadata: numbers and text, a list (shown as JSON) or a table."""


@dataclass(frozen=True)
class SourceSummary:
    """How one sync's source is shown: in the asset's metadata and description, and as its UI kind (icon)."""

    url: str
    """The endpoint without credentials, ``${VAR}`` references as written."""
    what: str
    """What is read there, e.g. ``public.orders``, ``query: SELECT ...``, ``elasticsearch: app-logs-*``."""
    label: str
    """The source in a sentence (``Sync of <label> into ...``)."""
    system: str
    """The source system, shown as the asset's kind: a SQL dialect (``postgresql``), ``elasticsearch``, ``http``."""


R = TypeVar("R")
W = TypeVar("W")


def _no_metadata(details: Mapping[str, Any]) -> dict[str, ResultValue]:
    return {}


def _no_host_files(cfg: SyncConfig) -> HostFileDrop | None:
    return None


@dataclass(frozen=True)
class SyncKind(Generic[R, W]):
    """Everything about one kind of sync, keyed by its source kind.

    ``R`` and ``W`` are the connector protocols of its pipeline (see :mod:`sync_pipelines.connectors.base`).
    """

    name: str
    """Identifier of the kind, e.g. ``sql_table``."""
    title: str
    """What it syncs, for people."""
    source_model: type[BaseModel]
    """The config model of its ``source:`` section; its ``kind`` literal is the registry key."""
    target_model: type[BaseModel]
    """The config model of its ``target:`` section."""
    reader: Callable[[SyncConfig], R]
    writer: Callable[[SyncConfig], W]
    pipeline: Pipeline
    source_check: EndpointCheckFunction
    """The connection check of its source (``sync-pipelines check``, the Dagster check job)."""
    target_check: EndpointCheckFunction
    source_template: str
    """The ``source:`` block ``new`` writes; ``{ENV}`` becomes the upper-cased sync name."""
    target_template: str
    body_template: str
    """What ``new`` writes after the endpoints (mapping, mode, batches, schedule...)."""
    descriptions: Callable[[SyncConfig], Mapping[str, str]]
    """What each step (:data:`STEPS`) does for one sync, shown on the ops."""
    summary: Callable[[SyncConfig], SourceSummary]
    """How the source of one sync is shown (asset metadata, description and kind)."""
    options: type[KindOptions] = KindOptions
    """The run options model (no fields: the kind takes only ``full_sync`` and ``dry_run``)."""
    launchpad: Callable[[SyncConfig], type[KindOptions]] | None = None
    """The launchpad form of one sync: a subclass of ``options`` whose defaults come from the config.
    None: ``options`` itself."""
    full_sync_description: str | None = None
    """What ``full_sync`` means for this kind, when it differs from a table's full read."""
    result_metadata: Callable[[Mapping[str, Any]], dict[str, ResultValue]] = field(default=_no_metadata)
    """Metadata of a run's result computed from its ``details``, beyond counts, watermarks and samples."""
    supports_parallel_read: bool = False
    """Whether a full read can be split into key ranges read by worker processes (``parallel:``)."""
    keeps_conflicts: bool = False
    """Whether its runs keep baselines and conflicts that a person resolves (the history view's conflict pages)."""
    host_files: Callable[[SyncConfig], HostFileDrop | None] = field(default=_no_host_files)
    """The folder of host list files a sensor watches for one sync; None: no such sensor."""

    @property
    def source_kind(self) -> str:
        """The ``source.kind`` value of its configs."""
        return _kind_literal(self.source_model)

    @property
    def target_kind(self) -> str:
        """The ``target.kind`` value of its configs."""
        return _kind_literal(self.target_model)

    def launchpad_form(self, cfg: SyncConfig) -> type[KindOptions]:
        """The launchpad form of ``cfg``."""
        return self.options if self.launchpad is None else self.launchpad(cfg)

    def run_options(self, values: Mapping[str, Any]) -> KindOptions | None:
        """The typed options of a run from launchpad or run-config ``values`` (unknown keys ignored);
        None for a kind without options."""
        if not self.options.model_fields:
            return None
        return self.options.model_validate({k: v for k, v in values.items() if k in self.options.model_fields})


def _kind_literal(model: type[BaseModel]) -> str:
    default = model.model_fields["kind"].default
    assert isinstance(default, str), f"{model.__name__}.kind has no literal default"
    return default


__all__ = [
    "STEPS",
    "KindOptions",
    "Pipeline",
    "ResultColumn",
    "ResultTable",
    "ResultValue",
    "SourceSummary",
    "SyncKind",
]
