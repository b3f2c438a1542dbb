"""The three ops of a sync of any kind (``<name>_extract -> <name>_transform -> <name>_load``): thin calls into
the engine. What differs between kinds is declared by the kind (:mod:`sync_pipelines.kinds`)
and adapted to Dagster in :mod:`sync_pipelines.orchestration.kinds`.

Only small manifest dicts travel between the ops (the engine stages the rows as Arrow IPC files), so
the IO manager stores a few hundred bytes per step and a re-execution from a failed step reuses the
staged batches instead of reading the source again; except after a run that failed because its records
failed: its re-execution's load step reads the source again, so that a fix of the data is loaded
(see :mod:`~sync_pipelines.orchestration.retries`).
"""

import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
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

from sync_pipelines import engine
from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.connectors.sql import shared_engines
from sync_pipelines.engine.guards import check_failures
from sync_pipelines.engine.manifest import Manifest, RunOptions, SyncResult
from sync_pipelines.errors import FailureRatioExceeded, SyncError, TransientConnectorError
from sync_pipelines.kinds import kind_of
from sync_pipelines.orchestration import audit
from sync_pipelines.orchestration.dead_runs import claim_run
from sync_pipelines.orchestration.dry_runs import keep_real_verdicts
from sync_pipelines.orchestration.executors import ExecutorKind, executor_kind
from sync_pipelines.orchestration.interrupts import run_interruptible
from sync_pipelines.orchestration.kinds import SyncRunConfig, kind_options, load_metadata, run_config_class
from sync_pipelines.orchestration.metadata import result_metadata, stage_metadata
from sync_pipelines.orchestration.names import Stage, Tag, op_name, pool_name
from sync_pipelines.orchestration.partitions import log_covered_partitions, run_window, window_text
from sync_pipelines.orchestration.retries import RECORDS_FAILED_ERROR_TYPE, failed_for_records, retry_wait
from sync_pipelines.types import RunStatus

CANCELLED_ERROR_TYPE = "cancelled"
"""``error_type`` of the step failure that ends a terminated step."""


def run_options(
    context: OpExecutionContext, cfg: SyncConfig, config: SyncRunConfig, manifest: Manifest | None = None
) -> RunOptions:
    """Engine options of the current step: run id, run config options (the kind's typed) and Dagster's logger.

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
        dry_run=config.dry_run or is_dry_run_tagged(context),
        logger=context.log,
        window=run_window(context),
        kind_options=kind_options(cfg, config),
        process_run_id=context.run_id if run_id != context.run_id else None,
    )


def is_dry_run_tagged(context: OpExecutionContext) -> bool:
    """Whether the run carries ``sync/dry_run=true``: every run of a sync's dry-run job does from its launch (a job
    tag), whatever its run config says."""
    return context.run.tags.get(Tag.DRY_RUN.value) == "true"


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


def build_sync_ops(cfg: SyncConfig) -> tuple[OpDefinition, OpDefinition, OpDefinition]:
    """The extract, transform and load ops of one sync, of any kind (see :mod:`~sync_pipelines.orchestration.kinds`).

    Each op is a thin call into the engine, run so that a run termination stops it at a batch
    boundary (:func:`run_interruptible`). The load step records the outcome as metadata (the kind adds
    its own) and the ``sync/status`` tag; a dry run writes nothing, so it records its metadata as an
    asset observation instead of a materialization, and a ``failed`` result fails the step with its
    metadata attached.
    """
    kind = kind_of(cfg)
    run_config = run_config_class(kind)
    describe = kind.descriptions(cfg)

    def step(stage: Stage, **kwargs: Any) -> Callable[[Callable[..., Any]], OpDefinition]:
        return op(
            name=op_name(cfg.name, stage),
            description=describe[stage],
            pool=pool_name(cfg.name),
            tags={Tag.SYNC_NAME.value: cfg.name},
            **kwargs,
        )

    @step(Stage.EXTRACT, out=Out(dict, description="Manifest of the staged source batches."))
    def _extract(context: OpExecutionContext, config: run_config) -> Output[dict[str, Any]]:  # type: ignore[valid-type]
        with engine_step(context, cfg, Stage.EXTRACT):
            options = run_options(context, cfg, config)
            manifest = run_interruptible(context, options, lambda: engine.extract(cfg, options))
        return Output(manifest.to_dict(), metadata=stage_metadata(manifest))

    @step(
        Stage.TRANSFORM,
        ins={"manifest": _MANIFEST_IN},
        out=Out(dict, description="Manifest of the transformed batches."),
    )
    def _transform(
        context: OpExecutionContext,
        config: run_config,  # type: ignore[valid-type]
        manifest: dict[str, Any],
    ) -> Output[dict[str, Any]]:
        with engine_step(context, cfg, Stage.TRANSFORM):
            staged = Manifest.from_dict(manifest)
            options = run_options(context, cfg, config, staged)
            result = run_interruptible(context, options, lambda: engine.transform(cfg, staged, options))
        return Output(result.to_dict(), metadata=stage_metadata(result))

    @step(
        Stage.LOAD,
        ins={"manifest": _MANIFEST_IN},
        out=Out(
            dict,
            is_required=False,
            description="The run's result: status, counts, watermarks and sample record outcomes "
            "(not produced by a dry run).",
        ),
    )
    def _load(
        context: OpExecutionContext,
        config: run_config,  # type: ignore[valid-type]
        manifest: dict[str, Any],
    ) -> Iterator[Output[dict[str, Any]]]:
        # One engine per database for the whole step: ledger row, writes, metadata and the closing row.
        with shared_engines():
            with engine_step(context, cfg, Stage.LOAD):
                staged = Manifest.from_dict(manifest)
                if rereads_source(context, cfg, staged):
                    staged = reread_source(context, cfg, config)
                options = run_options(context, cfg, config, staged)
                result = run_interruptible(context, options, lambda: engine.load(cfg, staged, options))
            extra: dict[str, Any] = load_metadata(context, cfg, result)
            if options.window is not None:
                extra["window"] = window_text(options.window)
            yield from report_load(context, cfg, result, extra)

    return _extract, _transform, _load


def rereads_source(context: OpExecutionContext, cfg: SyncConfig, staged: Manifest) -> bool:
    """Whether this load step, a re-execution given the batches an earlier run staged, reads the source again:
    the run it re-executes failed because its records failed (see :mod:`~sync_pipelines.orchestration.retries`)."""
    if staged.run_id == context.run_id:
        return False
    step = context.get_step_execution_context().step.key  # the same step of the run it re-executes
    return failed_for_records(context.instance, context.run.parent_run_id, step)


def reread_source(context: OpExecutionContext, cfg: SyncConfig, config: SyncRunConfig) -> Manifest:
    """Extract and transform again under this run's own id (a retry after a data fix), instead of the staged batches."""
    context.log.info(
        f"run {context.run.parent_run_id} failed because its records failed: this retry reads the source again "
        "(a fix of the data is read), instead of loading the batches that run staged"
    )
    options = run_options(context, cfg, config)
    fresh = run_interruptible(context, options, lambda: engine.extract(cfg, options))
    return run_interruptible(context, options, lambda: engine.transform(cfg, fresh, options))


def records_failed(cfg: SyncConfig, result: SyncResult) -> bool:
    """Whether a failed result failed because too many of its records failed (a data error)."""
    try:
        check_failures(cfg, result.counts)
    except FailureRatioExceeded:
        return True
    return False


RETRY_AFTER_FIX = (
    " Fix the records' data at the source, then re-execute the run (from failure, or all steps): the retry reads "
    "the source again."
)
"""What a run that failed on its records tells about a retry (the failure's description)."""


def dry_run_description(result: SyncResult) -> str:
    """The description of a dry run's observation: what it would have done, and that it wrote nothing."""
    counts = result.counts.as_dict()
    planned = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in PLAN_KEYS if counts.get(k))
    return (
        f"Dry run (plan only, nothing was written): {planned or 'no change'} of {counts['processed']} record(s) read. "
        "The planned records are on the run's page in the history view; the checks keep the last real run's verdict."
    )


PLAN_KEYS = ("created", "updated", "deleted", "failed", "conflicted", "target_modified", "skipped")
"""The counts a dry run's description names (what a real run would change or hold back)."""


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
        if records_failed(cfg, result):
            metadata["error_type"] = RECORDS_FAILED_ERROR_TYPE
            reason = reason.rstrip(".") + "." + RETRY_AFTER_FIX
        raise Failure(description=redact(f"sync {cfg.name!r}: {reason}"), metadata=metadata)
    if result.dry_run:
        context.log_event(
            AssetObservation(asset_key=AssetKey(cfg.name), description=dry_run_description(result), metadata=metadata)
        )
        # A dry run of the sync's own job planned its checks: their last real verdicts are stated again.
        for key in keep_real_verdicts(context.instance, cfg, context.run_id):
            context.log.info(f"check {key.name}: the last real run's verdict is kept (a dry run judges nothing)")
        return
    # The partitions first: the run's own materialization, with its counts and samples, is then the asset's latest.
    log_covered_partitions(context, cfg, result)
    yield Output(result.to_dict(), metadata=metadata)


__all__ = ["CANCELLED_ERROR_TYPE", "SyncRunConfig", "build_sync_ops", "engine_step", "report_load", "run_options"]
