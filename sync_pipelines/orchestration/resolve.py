"""The ``resolve_conflicts`` job: a person settles conflicts of one sync from the launchpad.

No postponed annotations here: Dagster reads the op's `Config` class from its annotation.
"""

from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any

from dagster import Config, Failure, JobDefinition, MetadataValue, OpExecutionContext, Out, Output, job, op
from pydantic import Field

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.engine.conflicts import resolve_conflicts
from sync_pipelines.errors import SyncError, UnknownSyncError
from sync_pipelines.orchestration.checks import record_conflict_check
from sync_pipelines.orchestration.names import CONFLICT_CHECK_NAME, RESOLVE_JOB_NAME
from sync_pipelines.types import ConflictChoice


class ResolveChoice(Enum):
    """The launchpad's choices. Dagster names enum config values after the members, hence lower case."""

    keep_source = ConflictChoice.KEEP_SOURCE.value
    """Write the source's values to the target."""
    keep_target = ConflictChoice.KEEP_TARGET.value
    """Keep the target's values."""


class ResolveConflictsConfig(Config):
    """Launchpad config of ``resolve_conflicts``."""

    sync: str = Field(description="Name of the sync whose conflicts are resolved.")
    conflict_ids: list[int] = Field(
        default_factory=list, description="Ids of the conflicts to resolve (see the check's table). Or set `all`."
    )
    all: bool = Field(default=False, description="Resolve every open conflict of the sync instead of `conflict_ids`.")
    choice: ResolveChoice = Field(
        description="One of `keep_source` or `keep_target`, checked when the run is launched. "
        "`keep_source` writes the source's values to the target; `keep_target` keeps the target's "
        "values (later runs leave the record alone until the source changes it again)."
    )
    resolved_by: str = Field(description="Who resolves the conflicts; stored with each of them.")


def _ids(config: ResolveConflictsConfig) -> list[int] | None:
    if config.all and config.conflict_ids:
        raise Failure(description="set either `conflict_ids` or `all: true`, not both")
    if not config.all and not config.conflict_ids:
        raise Failure(description="give the `conflict_ids` to resolve, or `all: true`")
    return None if config.all else list(config.conflict_ids)


def build_resolve_job(configs: Sequence[SyncConfig]) -> JobDefinition:
    """``resolve_conflicts``: apply a choice to conflicts of one sync and record the check's new state.

    The choice is applied to the target and the baselines updated in one transaction, the conflicts
    are marked resolved (by whom, when, which choice), and ``no_open_conflicts`` is evaluated again,
    so it turns green when none remain.
    """
    by_name = {cfg.name: cfg for cfg in configs}
    known = ", ".join(sorted(by_name)) or "(none)"

    @op(
        name="resolve_selected_conflicts",
        description="Apply `keep_source` or `keep_target` to the chosen conflicts of one sync, mark them "
        f"resolved and evaluate `{CONFLICT_CHECK_NAME}` again.",
        out=Out(dict, description="What was resolved: ids, choice, who, and how many conflicts remain open."),
    )
    def _resolve(context: OpExecutionContext, config: ResolveConflictsConfig) -> Iterator[Output[dict[str, Any]]]:
        cfg = by_name.get(config.sync)
        if cfg is None:
            raise Failure(description=str(UnknownSyncError(config.sync, by_name)))
        try:
            resolution = resolve_conflicts(
                cfg, _ids(config), ConflictChoice(config.choice.value), config.resolved_by, run_id=context.run_id
            )
        except SyncError as exc:
            raise Failure(description=redact(str(exc))) from None
        passed = record_conflict_check(context.instance, cfg)
        context.log.info(
            f"sync {cfg.name}: resolved conflict(s) {resolution.resolved} with {resolution.choice.value}; "
            f"{resolution.remaining_open} open"
        )
        yield Output(
            {
                "sync": cfg.name,
                "resolved": resolution.resolved,
                "choice": resolution.choice.value,
                "resolved_by": resolution.resolved_by,
                "remaining_open": resolution.remaining_open,
            },
            metadata={
                "sync": MetadataValue.text(cfg.name),
                "resolved": MetadataValue.int(len(resolution.resolved)),
                "resolved_ids": MetadataValue.text(", ".join(map(str, resolution.resolved))),
                "choice": MetadataValue.text(resolution.choice.value),
                "resolved_by": MetadataValue.text(resolution.resolved_by),
                "remaining_open": MetadataValue.int(resolution.remaining_open),
                "check_passed": MetadataValue.bool(passed),
            },
        )

    @job(
        name=RESOLVE_JOB_NAME,
        description="Resolve conflicts of a sync (records changed both by the source and on the target): keep "
        f"the source's or the target's values. Syncs: {known}.",
    )
    def _resolve_job() -> None:
        _resolve()

    return _resolve_job
