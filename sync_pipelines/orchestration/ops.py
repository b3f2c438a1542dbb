"""The three ops of a sync (``<name>_extract -> <name>_transform -> <name>_load``): thin calls into the engine.

Only small manifest dicts travel between the ops (the engine stages the rows as Parquet files), so
the IO manager stores a few hundred bytes per step and a re-execution from a failed step reuses the
staged batches instead of reading the source again.
"""

import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    DagsterExecutionInterruptedError,
    Failure,
    In,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    RetryRequested,
    op,
)
from pydantic import Field

from sync_pipelines import engine
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.sql import shared_engines
from sync_pipelines.engine.manifest import Manifest, RunOptions, SyncResult
from sync_pipelines.errors import SyncError, TransientConnectorError
from sync_pipelines.orchestration import audit
from sync_pipelines.orchestration.dead_runs import claim_run
from sync_pipelines.orchestration.executors import ExecutorKind, executor_kind
from sync_pipelines.orchestration.interrupts import run_interruptible
from sync_pipelines.orchestration.metadata import result_metadata, stage_metadata
from sync_pipelines.orchestration.names import Stage, Tag, op_name, pool_name
from sync_pipelines.orchestration.partitions import log_covered_partitions, run_window, window_text
from sync_pipelines.orchestration.retries import retry_wait
from sync_pipelines.types import RunStatus

FULL_SYNC_DESCRIPTION = (
    "Ignore the watermark and read the whole source (a full sync also deletes target rows missing "
    "from the source when the sync has `delete_missing`)."
)
DRY_RUN_DESCRIPTION = "Compute the plan and the sample changes, write nothing, keep the watermark."
CANCELLED_ERROR_TYPE = "cancelled"
"""``error_type`` of the step failure that ends a terminated step."""
USER_DESCRIPTION = (
    "Who launches this run. Recorded as the run's user (tag `sync/user`, the run ledger) when Dagster "
    "knows no identity, as open-source Dagster never does."
)


class SyncRunConfig(Config):
    """Options of one sync run, given to each of its three ops."""

    full_sync: bool = Field(default=False, description=FULL_SYNC_DESCRIPTION)
    dry_run: bool = Field(default=False, description=DRY_RUN_DESCRIPTION)
    user: str = Field(default="", description=USER_DESCRIPTION)


def run_flags(config: SyncRunConfig) -> dict[str, Any]:
    """The options a config mapping hands to each op of the sync: ``full_sync``, ``dry_run`` and ``user``."""
    return {"full_sync": config.full_sync, "dry_run": config.dry_run, "user": config.user}


def run_options(context: OpExecutionContext, config: SyncRunConfig, manifest: Manifest | None = None) -> RunOptions:
    """Engine options of the current step: run id, run config flags and Dagster's logger.

    The engine identifies a sync run by the run that read the source: its staged batches, its lease
    and the batches it already committed. Extract uses the Dagster run id; transform and load use
    the run id of the manifest they receive, which differs only when Dagster re-executes a failed
    run and hands them the outputs of the original run. The engine then resumes after the batches
    that run committed instead of refusing the stale read.
    """
    run_id = manifest.run_id if manifest is not None else context.run_id
    if run_id != context.run_id:
        context.log.info(f"re-using the batches staged by run {run_id}")
    return RunOptions(
        run_id=run_id,
        full_sync=config.full_sync,
        dry_run=config.dry_run,
        logger=context.log,
        window=run_window(context),
    )


def _set_status(context: OpExecutionContext, status: RunStatus) -> None:
    context.instance.add_run_tags(context.run_id, {Tag.STATUS.value: status.value})


def _tag_sync_name(context: OpExecutionContext, cfg: SyncConfig) -> None:
    """Give ``sync/name`` to a run that materializes only this sync's asset but came from the asset graph.

    Runs of the sync's job carry the tag already; a run of several syncs' assets gets none.
    """
    run = context.run
    if Tag.SYNC_NAME.value not in run.tags and run.asset_selection == {AssetKey(cfg.name)}:
        context.instance.add_run_tags(context.run_id, {Tag.SYNC_NAME.value: cfg.name})


@contextmanager
def engine_step(context: OpExecutionContext, cfg: SyncConfig, stage: Stage) -> Iterator[None]:
    """Run one engine call: keep the ``sync/status`` tag current and turn errors into redacted failures.

    Transient connector errors are retried (``retry.max_retries`` times, waiting exponentially
    longer with jitter, see :func:`retry_wait`). Every other error sets ``sync/status=failed`` and
    fails the step at once with a :class:`dagster.Failure` (``allow_retries=False``) whose
    description has every secret removed; the original exception is not chained, so its text never
    reaches the UI. A run termination (``DagsterExecutionInterruptedError``, not an ``Exception``)
    sets ``sync/status=cancelled`` and ends the step with a Failure saying so (``error_type``
    ``cancelled``); the run still ends ``CANCELED``.
    """
    with shared_engines():
        yield from _engine_step(context, cfg, stage)


def _engine_step(context: OpExecutionContext, cfg: SyncConfig, stage: Stage) -> Iterator[None]:
    if executor_kind() is ExecutorKind.IN_PROCESS:  # every step runs in the run's process: name it
        claim_run(context.instance, context.run)
    _tag_sync_name(context, cfg)
    _set_status(context, RunStatus.RUNNING)
    audit.record_start(context, cfg)
    where = f"sync {cfg.name!r}, {stage.value}"
    try:
        yield
    except DagsterExecutionInterruptedError:
        _set_status(context, RunStatus.CANCELLED)
        audit.record_end(context, cfg, RunStatus.CANCELLED, f"{where}: the run was cancelled")
        # Dagster still ends the run CANCELED (it was asked to); a Failure shows the step's outcome as a
        # sentence instead of an interrupt's stack trace.
        raise Failure(
            description=f"{where}: cancelled at a batch boundary; every batch committed before is kept, with its "
            "watermark, and the next run resumes after it",
            metadata={"error_type": CANCELLED_ERROR_TYPE},
            allow_retries=False,
        ) from None
    except TransientConnectorError as exc:
        retries = cfg.retry.max_retries
        if context.retry_number < retries:
            wait = retry_wait(cfg.retry, context.retry_number)
            context.log.warning(
                f"{where}: {redact(str(exc))}; transient, retry {context.retry_number + 1} of {retries} in {wait:.1f} s"
            )
            raise RetryRequested(max_retries=retries, seconds_to_wait=wait) from None
        _set_status(context, RunStatus.FAILED)
        audit.record_end(context, cfg, RunStatus.FAILED, f"{where}: {exc}", type(exc).__name__)
        raise Failure(
            description=redact(f"{where}: {exc} (still failing after {retries} retries)"),
            metadata={"error_type": type(exc).__name__},
            allow_retries=False,
        ) from None
    except SyncError as exc:
        _set_status(context, RunStatus.FAILED)
        audit.record_end(context, cfg, RunStatus.FAILED, f"{where}: {exc}", type(exc).__name__)
        raise Failure(
            description=redact(f"{where}: {exc}"), metadata={"error_type": type(exc).__name__}, allow_retries=False
        ) from None
    except Exception as exc:
        _set_status(context, RunStatus.FAILED)
        context.log.error(redact(traceback.format_exc()))
        audit.record_end(
            context, cfg, RunStatus.FAILED, f"{where}: unexpected {type(exc).__name__}: {exc}", traceback.format_exc()
        )
        raise Failure(
            description=redact(f"{where}: unexpected {type(exc).__name__}: {exc}"),
            metadata={"error_type": type(exc).__name__},
            allow_retries=False,
        ) from None


def _run_seconds(context: OpExecutionContext) -> float | None:
    record = context.instance.get_run_record_by_id(context.run_id)
    return time.time() - record.start_time if record and record.start_time else None


_MANIFEST_IN = In(dict, description="Manifest of the staged batches (paths, row counts, watermark read).")


def build_extract_op(cfg: SyncConfig) -> OpDefinition:
    """``<name>_extract``: read the source in batches into run-scoped Parquet files."""

    @op(
        name=op_name(cfg.name, Stage.EXTRACT),
        description=f"Read the source of sync `{cfg.name}` in batches of {cfg.batch_size} rows into "
        "Parquet files staged for this run, from the last committed watermark (or all of it in a full sync).",
        out=Out(dict, description="Manifest of the staged source batches."),
        pool=pool_name(cfg.name),
        tags={Tag.SYNC_NAME.value: cfg.name},
    )
    def _extract(context: OpExecutionContext, config: SyncRunConfig) -> Output[dict[str, Any]]:
        with engine_step(context, cfg, Stage.EXTRACT):
            options = run_options(context, config)
            manifest = run_interruptible(context, options, lambda: engine.extract(cfg, options))
        return Output(manifest.to_dict(), metadata=stage_metadata(manifest))

    return _extract


def build_transform_op(cfg: SyncConfig) -> OpDefinition:
    """``<name>_transform``: map each staged batch to the target schema."""

    @op(
        name=op_name(cfg.name, Stage.TRANSFORM),
        description=f"Map the staged batches of sync `{cfg.name}` to the columns and types of "
        f"`{cfg.target.table}`; records that cannot be converted are kept with their reason.",
        ins={"manifest": _MANIFEST_IN},
        out=Out(dict, description="Manifest of the transformed batches."),
        pool=pool_name(cfg.name),
        tags={Tag.SYNC_NAME.value: cfg.name},
    )
    def _transform(
        context: OpExecutionContext, config: SyncRunConfig, manifest: dict[str, Any]
    ) -> Output[dict[str, Any]]:
        with engine_step(context, cfg, Stage.TRANSFORM):
            staged = Manifest.from_dict(manifest)
            options = run_options(context, config, staged)
            result = run_interruptible(context, options, lambda: engine.transform(cfg, staged, options))
        return Output(result.to_dict(), metadata=stage_metadata(result))

    return _transform


def build_load_op(cfg: SyncConfig) -> OpDefinition:
    """``<name>_load``: upsert the batches, record the outcome as metadata and the ``sync/status`` tag.

    A dry run writes nothing, so it records its metadata as an asset observation instead of a
    materialization. A ``failed`` result fails the step with its metadata attached.
    """

    @op(
        name=op_name(cfg.name, Stage.LOAD),
        description=f"Upsert the transformed batches into `{cfg.target.table}`, one transaction per batch "
        "(rows, record outcomes and watermark together), and report counts and sample changes.",
        ins={"manifest": _MANIFEST_IN},
        out=Out(
            dict,
            is_required=False,
            description="The run's result: status, counts, watermarks and sample record outcomes "
            "(not produced by a dry run).",
        ),
        pool=pool_name(cfg.name),
        tags={Tag.SYNC_NAME.value: cfg.name},
    )
    def _load(
        context: OpExecutionContext, config: SyncRunConfig, manifest: dict[str, Any]
    ) -> Iterator[Output[dict[str, Any]]]:
        # One engine per database for the whole step: ledger row, writes, metadata and the closing row.
        with shared_engines():
            with engine_step(context, cfg, Stage.LOAD):
                staged = Manifest.from_dict(manifest)
                options = run_options(context, config, staged)
                result = run_interruptible(context, options, lambda: engine.load(cfg, staged, options))
            extra = {"window": window_text(options.window)} if options.window is not None else None
            yield from report_load(context, cfg, result, extra)

    return _load


def report_load(
    context: OpExecutionContext, cfg: SyncConfig, result: SyncResult, extra: Mapping[str, Any] | None = None
) -> Iterator[Output[dict[str, Any]]]:
    """Finish a load step: metadata (plus ``extra``), the ledger row, the ``sync/status`` tag, the output.

    A ``failed`` result fails the step with its metadata attached; a dry run records an asset
    observation instead of a materialization, since nothing was written.
    """
    trigger, user = audit.attribution(context)
    run_seconds = _run_seconds(context)
    metadata = result_metadata(result, trigger=trigger.value, run_seconds=run_seconds, user=user)
    metadata.update(extra or {})
    metadata.update(audit.ledger_metadata(cfg, context.run_id, trigger, user))
    audit.record_result(context, cfg, result, run_seconds)
    _set_status(context, result.status)
    if result.status is RunStatus.FAILED:
        reason = result.error or "the run failed"
        raise Failure(description=redact(f"sync {cfg.name!r}: {reason}"), metadata=metadata)
    if result.dry_run:
        context.log_event(
            AssetObservation(
                asset_key=AssetKey(cfg.name), description="Dry run: nothing was written.", metadata=metadata
            )
        )
        return
    yield Output(result.to_dict(), metadata=metadata)
    log_covered_partitions(context, cfg, result)


def build_sync_ops(cfg: SyncConfig) -> tuple[OpDefinition, OpDefinition, OpDefinition]:
    """The extract, transform and load ops of one sync."""
    return build_extract_op(cfg), build_transform_op(cfg), build_load_op(cfg)
