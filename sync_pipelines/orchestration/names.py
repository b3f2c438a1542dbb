"""Names of the Dagster objects built for a sync, and the tags they carry, in one place."""

from __future__ import annotations

from enum import StrEnum

GROUP_NAME = "syncs"
"""Asset group of every sync asset."""

CODE_LOCATION_NAME = "sync_pipelines"
"""Code location name used by ``workspace.yaml`` (and ``[tool.dagster]`` in pyproject.toml)."""

REPOSITORY_NAME = "__repository__"
"""Repository name Dagster gives to a ``Definitions`` object."""

DEFINITIONS_MODULE = "sync_pipelines.definitions"

CONFLICT_CHECK_NAME = "no_open_conflicts"
"""Asset check on every sync's asset, failing while conflicts wait for a person."""

FAILED_RECORDS_CHECK_NAME = "no_failed_records"
"""Asset check on every sync's asset, warning while the last run left failed records."""

RESOLVE_JOB_NAME = "resolve_conflicts"
"""The job that resolves conflicts of any sync."""


class Stage(StrEnum):
    """The three ops of a sync, in execution order."""

    EXTRACT = "extract"
    TRANSFORM = "transform"
    LOAD = "load"


class Tag(StrEnum):
    """Run tags written by sync_pipelines."""

    SYNC_NAME = "sync/name"
    """The sync a run belongs to (set on every run of a sync job)."""
    STATUS = "sync/status"
    """running, completed, partial, failed or cancelled, kept current by the ops."""
    TRIGGER = "sync/trigger"
    """Who started the run when Dagster cannot tell: ``cli`` (set by the CLI) or ``api`` (set by a GraphQL launch)."""
    TRIGGERED_BY = "sync/triggered_by"
    """What started the run as the ledger records it: manual, schedule, sensor, backfill, retry or api."""
    USER = "sync/user"
    """Who launched the run (the CLI's ``--user`` or the OS user, the launchpad's ``user``, or set by hand
    in a GraphQL launch)."""
    DRY_RUN = "sync/dry_run"
    """``true`` on a dry run: it wrote nothing, and statistics and "last status" leave it out."""
    PID = "sync/pid"
    """The process executing the run's steps: the CLI's for a CLI run, the run worker's for a run launched
    by the daemon or the UI with the in-process executor."""
    HOST = "sync/host"
    """The machine of that process."""
    PROCESS_START = "sync/process_start"
    """When that process started (clock ticks since boot), so that a reused pid is not taken for it."""
    PLAIN_RUN = "sync/plain_run"
    """The sync of a run that moves its watermark (a schedule's, the sensor's, a CLI run without ``--partition``):
    the queue starts one such run per sync at a time (a tag limit), while partition runs share the sync's pool."""
    PROCESS_RUN = "sync/process_run"
    """The run the process tags were written for: a retry copies its parent's tags, which name a process
    that never ran the retry."""


def job_name(sync: str) -> str:
    """``sync_<name>``: the job that materializes one sync's asset."""
    return f"sync_{sync}"


def dry_run_job_name(sync: str) -> str:
    """``dry_run_<name>``: the job that plans one sync's run and writes nothing (no checks, tagged ``sync/dry_run``)."""
    return f"dry_run_{sync}"


def schedule_name(sync: str) -> str:
    """``<name>_schedule``."""
    return f"{sync}_schedule"


def source_sensor_name(sync: str) -> str:
    """``<name>_source_sensor``: starts a run of the sync when its source's high-water mark moves."""
    return f"{sync}_source_sensor"


"""The sensor that records every failed sync run."""


def op_name(sync: str, stage: Stage) -> str:
    """``<name>_extract``, ``<name>_transform`` or ``<name>_load``."""
    return f"{sync}_{stage.value}"


def step_key(sync: str, stage: Stage) -> str:
    """Step key of one op inside the sync's graph asset, e.g. ``customers.customers_load``."""
    return f"{sync}.{op_name(sync, stage)}"


def pool_name(sync: str) -> str:
    """Concurrency pool shared by the ops of one sync: ``sync/<name>`` (limit: see
    :func:`~sync_pipelines.orchestration.pools.pool_limit`)."""
    return f"sync/{sync}"
