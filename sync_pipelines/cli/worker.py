"""``sync-pipelines worker``: a Celery worker executing the steps of sync runs (``SYNC_PIPELINES_EXECUTOR=celery``).

The command replaces itself with ``celery -A dagster_celery.app worker`` on the broker of
``SYNC_PIPELINES_CELERY_BROKER`` (the same variable the runs read, so both always agree), consuming
the queue of ``SYNC_PIPELINES_CELERY_QUEUE`` (default ``dagster``). The broker and result backend
URLs reach Celery through its environment variables, never the command line, so a password in them
does not show in ``ps``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import click

from sync_pipelines.cli.shared import ExitCode, given_config_dir
from sync_pipelines.config.loader import CONFIG_DIR_ENV
from sync_pipelines.orchestration.executors import celery_backend, celery_broker, celery_queue

CELERY_APP = "dagster_celery.app"


def worker_command(name: str, concurrency: int, loglevel: str, queues: tuple[str, ...]) -> list[str]:
    """The ``celery worker`` command line of one worker named ``<name>@<host name>``."""
    command = [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker"]
    command += ["-n", f"{name}@%h", "-c", str(concurrency), "--prefetch-multiplier", "1", "-l", loglevel]
    for queue in queues or (celery_queue(),):
        command += ["-Q", queue]
    return command


def worker_environment(config_dir: Path | None) -> dict[str, str]:
    """This process's environment plus the broker, the result backend and (if given) the config folder."""
    env = dict(os.environ)
    env["CELERY_BROKER_URL"] = celery_broker()
    env["CELERY_RESULT_BACKEND"] = celery_backend()
    if config_dir is not None:
        env[CONFIG_DIR_ENV] = str(config_dir.resolve())
    return env


@click.command()
@click.option(
    "--name",
    default=None,
    help="Worker name; the node is <name>@<host name>, shown on each step it executes [default: sync-<random>].",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Steps this worker executes at once (child processes).",
)
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="Celery log level.")
@click.option(
    "--queue",
    "-Q",
    "queues",
    multiple=True,
    help="Queue to consume (repeatable) [default: $SYNC_PIPELINES_CELERY_QUEUE or dagster, where steps go].",
)
@click.pass_context
def worker(ctx: click.Context, name: str | None, concurrency: int, loglevel: str, queues: tuple[str, ...]) -> None:
    """Start a Celery worker executing the steps of sync runs sent by the Celery executor.

    Runs use that executor when SYNC_PIPELINES_EXECUTOR=celery. The broker is
    $SYNC_PIPELINES_CELERY_BROKER (default pyamqp://guest@127.0.0.1:5672//, RabbitMQ on this
    machine), results go back through $SYNC_PIPELINES_CELERY_BACKEND (default rpc://). Every worker
    needs the same sync configurations, PostgreSQL-backed Dagster instance and staging store as the
    runs. Stop it with Ctrl-C or SIGTERM: it finishes the step at hand first.
    """
    if importlib.util.find_spec("dagster_celery") is None:
        click.echo("sync-pipelines worker needs dagster-celery: pip install 'sync_pipelines[celery]'", err=True)
        ctx.exit(ExitCode.FAILED)
    command = worker_command(name or f"sync-{uuid.uuid4().hex[:6]}", concurrency, loglevel, queues)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, worker_environment(given_config_dir(ctx)))  # noqa: S606  # our own interpreter
