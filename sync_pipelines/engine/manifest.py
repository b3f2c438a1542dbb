"""Small, JSON-friendly descriptions of staged data and of a run's result, passed between the stages."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from upath import UPath

from sync_pipelines.engine.plan import ChunkPlan, Plan, plan_from_details, plan_from_dict, plan_to_dict
from sync_pipelines.engine.staging import StagingPath, staging_path
from sync_pipelines.errors import StagingError
from sync_pipelines.kinds.base import KindOptions
from sync_pipelines.types import Counts, RecordAction, RecordOutcome, RunStatus

STAGING_DIR_ENV = "SYNC_PIPELINES_STAGING_DIR"


def default_staging_root() -> UPath:
    """``$SYNC_PIPELINES_STAGING_DIR``, else ``$DAGSTER_HOME/sync_staging``, else ``.sync_pipelines/staging``.

    ``$SYNC_PIPELINES_STAGING_DIR`` may be a plain path or a URL (``file:///nfs/sync``, ``s3://bucket/prefix``,
    ``memory://name``): see :mod:`sync_pipelines.engine.staging`.
    """
    if os.environ.get(STAGING_DIR_ENV):
        return staging_path(os.environ[STAGING_DIR_ENV])
    if os.environ.get("DAGSTER_HOME"):
        return staging_path(Path(os.environ["DAGSTER_HOME"]) / "sync_staging")
    return staging_path(Path(".sync_pipelines") / "staging")


@dataclass
class RunOptions:
    """How one run of a sync is executed.

    ``stop_requested`` is checked at every batch boundary: set it to stop a run cleanly between
    two committed batches. ``window`` (a partitioned run) reads the rows whose cursor is in
    ``[start, end)`` instead of those after the watermark, and leaves the watermark where it is.
    """

    run_id: str
    full_sync: bool = False
    dry_run: bool = False
    staging_root: StagingPath = field(default_factory=default_staging_root)
    """Where the run's batches are staged: a local folder or a URL of a shared store."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("sync_pipelines"))
    sample_size: int = 20
    stop_requested: threading.Event = field(default_factory=threading.Event)
    kind_options: KindOptions | None = None
    """The options of the sync's kind beyond ``full_sync`` and ``dry_run`` (e.g. a host-metrics run's host
    list and time range); None: the configured defaults."""
    window: tuple[dt.datetime, dt.datetime] | None = None
    process_run_id: str | None = None
    """The run whose process executes this step, when it differs from ``run_id``: a re-execution of a failed
    run resumes that run's batches (``run_id``) and records the batches it commits as its own."""

    def staging_dir(self, sync: str) -> UPath:
        """The run-scoped staging folder of one sync (a local path or a URL on a shared store)."""
        return staging_path(self.staging_root) / self.run_id / sync


@dataclass
class BatchFile:
    """One staged batch (an Arrow IPC file)."""

    index: int
    path: str
    rows: int
    failed: int = 0
    position: dict[str, Any] | None = None
    chunk: int | None = None
    """The key-range chunk of a parallel full read (see :mod:`sync_pipelines.engine.chunks`); None when serial."""


@dataclass
class Manifest:
    """What a stage produced: staged batch files plus what the next stage needs to know."""

    sync: str
    run_id: str
    stage: str
    full_sync: bool
    batches: list[BatchFile] = field(default_factory=list)
    watermark_before: dict[str, Any] | None = None
    state_version: int = 0
    rows: int = 0
    failed: int = 0
    types: dict[str, str] = field(default_factory=dict)
    final_position: dict[str, Any] | None = None
    plan: Plan | None = None
    """What the extract decided that the later stages follow (a parallel read's chunks, a host-metrics
    run's host selection); None for a serial SQL run."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (it crosses op boundaries and worker processes); :meth:`from_dict` reads it back."""
        return {**asdict(self), "plan": plan_to_dict(self.plan)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The manifest :meth:`to_dict` wrote, or one of the previous version (untyped ``details``)."""
        values = dict(data)
        details = values.pop("details", None)
        values["plan"] = plan_from_dict(values.get("plan")) if details is None else plan_from_details(details)
        values["batches"] = [BatchFile(**b) for b in values.get("batches", [])]
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise StagingError(
                f"sync {values.get('sync')}: a staged manifest has unknown fields {', '.join(unknown)} "
                "(written by another version of sync_pipelines?)"
            )
        return cls(**values)


@dataclass
class SyncResult:
    """The outcome of one run: status, counts, watermarks and a sample of record outcomes."""

    sync: str
    run_id: str
    status: RunStatus
    counts: Counts
    dry_run: bool
    full_sync: bool
    duration_s: float = 0.0
    watermark_before: dict[str, Any] | None = None
    watermark_after: dict[str, Any] | None = None
    samples: list[RecordOutcome] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """Source-specific results (e.g. per-host outcomes of a host-metrics run)."""

    @classmethod
    def begin(
        cls, sync: str, options: RunOptions, *, full_sync: bool, watermark: dict[str, Any] | None = None
    ) -> SyncResult:
        """The result of a load about to start: completed until something says otherwise, nothing counted,
        the watermark where the run found it."""
        return cls(
            sync=sync,
            run_id=options.run_id,
            status=RunStatus.COMPLETED,
            counts=Counts(),
            dry_run=options.dry_run,
            full_sync=full_sync,
            watermark_before=watermark,
            watermark_after=watermark,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the shape the CLI's ``--json`` prints, plus details)."""
        return {
            "run_id": self.run_id,
            "sync": self.sync,
            "status": self.status.value,
            "counts": self.counts.as_dict(),
            "watermark": self.watermark_after,
            "watermark_before": self.watermark_before,
            "dry_run": self.dry_run,
            "full_sync": self.full_sync,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            **({"details": self.details} if self.details else {}),
            "samples": [
                {"key": s.key, "action": s.action.value, "changes": s.changes, "error": s.error} for s in self.samples
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncResult:
        return cls(
            sync=data["sync"],
            run_id=data["run_id"],
            status=RunStatus(data["status"]),
            counts=Counts.from_dict(data["counts"]),
            dry_run=data["dry_run"],
            full_sync=data["full_sync"],
            duration_s=data.get("duration_s", 0.0),
            watermark_before=data.get("watermark_before"),
            watermark_after=data.get("watermark"),
            samples=[
                RecordOutcome(s["key"], RecordAction(s["action"]), s.get("changes") or {}, s.get("error"))
                for s in data.get("samples", [])
            ],
            error=data.get("error"),
            details=data.get("details") or {},
        )


def is_chunked(manifest: Manifest) -> bool:
    """Whether a manifest comes from a parallel extract (its later stages then run per chunk too)."""
    return isinstance(manifest.plan, ChunkPlan)


def chunk_workers(manifest: Manifest) -> int:
    """The worker processes of a parallel run's stages (those its extract used)."""
    assert isinstance(manifest.plan, ChunkPlan), f"sync {manifest.sync}: not a parallel run"
    return manifest.plan.workers


def by_chunk(batches: list[BatchFile]) -> dict[int, list[BatchFile]]:
    """Batches grouped by chunk, each group in batch order (the jobs of a parallel stage)."""
    chunks: dict[int, list[BatchFile]] = {}
    for batch in sorted(batches, key=lambda b: b.index):
        chunks.setdefault(batch.chunk or 0, []).append(batch)
    return chunks
